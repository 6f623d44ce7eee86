/**
 * The rollout benchmark (issues 3 and 12), in paired rounds with the order rotated:
 *   - delegate forwarding of a scripted agent's EVENTS events with the rollout off and on
 *     (every submission and event written through a RolloutStore writer); the median of per-round
 *     ratios of times on / off;
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
import { Effect, Layer, Option, Runtime, Stream } from "effect"
import { main as benchMain, compare, knob, paired, rounds } from "./harness.js"

const EVENTS = knob("BENCH_EVENTS", 500_000)
const THREADS = 100
const PER_THREAD = knob("BENCH_PER_THREAD", 2_000)
const RESUME_LINES = 100_000
const ROUNDS = rounds(7)

// Ten blocks of 10 events (3 deltas) a repetition: a script repeats at most 10,000 times.
const block = [
  { type: "message" as const, text: "abc", deltas: 3 },
  ...Array.from({ length: 6 }, () => ({ type: "message" as const, text: "x" }))
]
const script: Script = {
  turns: [{ repeat: EVENTS / 100, steps: Array.from({ length: 10 }, () => block).flat() }]
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

const main = Effect.gen(function* () {
  const time = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.map(seconds(effect), (r) => r.seconds * 1000)
  const runtime = yield* Effect.runtime<RolloutStore | Parent | NodeContext.NodeContext>()
  const run =
    <A, E>(effect: Effect.Effect<A, E, RolloutStore | Parent | NodeContext.NodeContext>) =>
    () =>
      Runtime.runPromise(runtime)(time(effect))
  const forwarding = yield* Effect.promise(() =>
    paired(
      ROUNDS,
      [
        ["off", run(forward(false))],
        ["on", run(forward(true))]
      ],
      { log: "rollout forwarding" }
    )
  )
  const append: Array<number> = []
  const resume: Array<number> = []
  for (let round = 0; round < Math.max(3, Math.ceil(ROUNDS / 2)); round++) {
    const a = yield* seconds(appendConcurrently)
    append.push(a.value / a.seconds)
    resume.push((yield* resumeLarge) * 1000)
  }
  return [
    compare(
      "rollout",
      `delegate forwarding ${EVENTS.toLocaleString("en-US")} events, rollout on`,
      "ms",
      forwarding.on,
      { name: "rollout off", samples: forwarding.off },
      { text: "ratio ≤ 2.0", met: (r) => r <= 2 }
    ),
    compare("rollout", `append, ${THREADS} concurrent threads`, "events/s", append, undefined),
    compare("rollout", `read back a ${RESUME_LINES.toLocaleString("en-US")}-line rollout`, "ms", resume, undefined)
  ]
})

const layer = Layer.unwrapScoped(
  Effect.gen(function* () {
    const home = yield* (yield* FileSystem.FileSystem).makeTempDirectoryScoped({ prefix: "deputy-bench-" })
    return Layer.merge(RolloutStore.layer({ home }), Parent.layerCallbacks({}))
  })
).pipe(Layer.provideMerge(NodeContext.layer))

benchMain(() => Effect.runPromise(main.pipe(Effect.provide(layer))))
