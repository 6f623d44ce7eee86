/**
 * The rollout benchmark (issue 3), in one run:
 *   - delegate forwarding of a scripted agent's 1,000,000 events with the rollout off, then on
 *     (every submission and event written through a RolloutStore writer); the ratio on/off;
 *   - append throughput: 100 concurrent threads writing events into their rollouts;
 *   - the time to read back (resume) a 100,000-line rollout.
 *
 *   node --conditions=@deputy/source --import tsx test/bench/rollout.bench.ts
 */
import { Delegate, Parent, RolloutStore } from "@deputy/core"
import { type Event, newThreadId, type Script, userText } from "@deputy/protocol"
import { Scripted } from "@deputy/scripted"
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { Effect, Layer, Option, Stream } from "effect"

const EVENTS = Number(process.env.BENCH_EVENTS ?? 1_000_000)
const THREADS = 100
const PER_THREAD = Number(process.env.BENCH_PER_THREAD ?? 2_000)
const RESUME_LINES = 100_000
const ROUNDS = 3

const script: Script = {
  turns: [
    {
      repeat: EVENTS / 10,
      steps: [
        { type: "message", text: "abc", deltas: 3 },
        ...Array.from({ length: 6 }, () => ({ type: "message" as const, text: "x" }))
      ]
    }
  ]
}

const meta = (threadId = newThreadId()) => ({
  threadId,
  createdAt: new Date().toISOString(),
  backend: "scripted",
  cwd: process.cwd(),
  source: { type: "top_level" as const }
})

const seconds = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const start = performance.now()
    const value = yield* effect
    return { value, seconds: (performance.now() - start) / 1000 }
  })

/** Forwards the whole turn through a delegate, with or without a rollout writer observing it. */
const forward = (withRollout: boolean) =>
  Effect.gen(function* () {
    const store = yield* RolloutStore
    const writer = withRollout ? Option.some(yield* store.create(meta(), { mode: "lazy" })) : Option.none()
    const delegate = yield* Delegate.interactive(
      Scripted.spawn(script),
      Option.match(writer, {
        onNone: () => ({}),
        onSome: (w) => ({ onEvents: w.events, onSubmission: w.submission })
      })
    )
    yield* delegate.submit(userText("go"))
    return yield* delegate.events.pipe(
      Stream.takeUntil((e) => e.msg.type === "turn_complete"),
      Stream.runCount
    )
  }).pipe(Effect.scoped)

const message = (i: number): Event => ({ id: "t", msg: { type: "agent_message", message: `line ${i}` } })

/** 100 threads at once, each a turn of PER_THREAD events. */
const appendConcurrently = Effect.gen(function* () {
  const store = yield* RolloutStore
  yield* Effect.forEach(
    Array.from({ length: THREADS }),
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const writer = yield* store.create(meta(), { mode: "lazy" })
          yield* writer.submission({ id: "t", op: userText("go") })
          for (let i = 0; i < PER_THREAD; i++) yield* writer.event(message(i))
          yield* writer.event({ id: "t", msg: { type: "turn_complete", turnId: "t" } })
        })
      ),
    { concurrency: "unbounded", discard: true }
  )
  return THREADS * (PER_THREAD + 2)
})

/** Writes a 100,000-line rollout, then times reading it back as a resume does. */
const resumeLarge = Effect.gen(function* () {
  const store = yield* RolloutStore
  const path = yield* Effect.scoped(
    Effect.gen(function* () {
      const writer = yield* store.create(meta(), { mode: "lazy" })
      yield* writer.submission({ id: "t", op: userText("go") })
      for (let i = 0; i < RESUME_LINES - 3; i++) yield* writer.event(message(i))
      yield* writer.event({ id: "t", msg: { type: "turn_complete", turnId: "t" } })
      return Option.getOrThrow(yield* writer.path)
    })
  )
  const read = yield* seconds(store.read(path))
  if (read.value.lines.length !== RESUME_LINES - 1) throw new Error(`read ${read.value.lines.length} lines`)
  return read.seconds
})

const fmt = (n: number) => Math.round(n).toLocaleString("en-US")

const main = Effect.gen(function* () {
  console.log(`rollout benchmark, best of ${ROUNDS}; node ${process.version}`)
  let off = 0
  let on = 0
  for (let round = 0; round < ROUNDS; round++) {
    const a = yield* seconds(forward(false))
    const b = yield* seconds(forward(true))
    off = Math.max(off, EVENTS / a.seconds)
    on = Math.max(on, EVENTS / b.seconds)
  }
  console.log(`delegate forwarding, rollout off   ${fmt(off)} events/s`)
  console.log(`delegate forwarding, rollout on    ${fmt(on)} events/s`)
  console.log(`cost of the rollout: off/on = ${(off / on).toFixed(2)}x (target <= 2)`)
  let append = 0
  for (let round = 0; round < ROUNDS; round++) {
    const run = yield* seconds(appendConcurrently)
    append = Math.max(append, run.value / run.seconds)
  }
  console.log(`append, ${THREADS} concurrent threads     ${fmt(append)} events/s`)
  let resume = Number.POSITIVE_INFINITY
  for (let round = 0; round < ROUNDS; round++) resume = Math.min(resume, yield* resumeLarge)
  console.log(`resume (read) a ${fmt(RESUME_LINES)}-line rollout: ${(resume * 1000).toFixed(0)} ms`)
})

const layer = Layer.unwrapScoped(
  Effect.gen(function* () {
    const home = yield* (yield* FileSystem.FileSystem).makeTempDirectoryScoped({ prefix: "deputy-bench-" })
    return Layer.merge(RolloutStore.layer({ home }), Parent.layerCallbacks({}))
  })
).pipe(Layer.provideMerge(NodeContext.layer))

Effect.runPromise(main.pipe(Effect.provide(layer))).catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
