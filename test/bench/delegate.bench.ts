/**
 * The delegate benchmark (issues 2 and 12), in paired rounds with the order rotated:
 *   - forwarding: the same scripted turn (EVENTS events, 30 % of them deltas that are filtered out)
 *     read (a) through `Delegate.interactive` and (b) through the fair limit: a bare `Mailbox` pipe doing
 *     the same work as the delegate's forwarder (the agent's `takeAll` batches, the same filter,
 *     `offerAll` per batch, the same scheduler) and nothing else; the ratio delegate / limit of rates;
 *   - heap per idle thread started through `ThreadManager.start` (what an application holds), next to a
 *     bare idle delegate, ALIVE of each at once;
 *   - cancel latency under load: ALIVE delegates alive in a turn and STREAMING more streaming events
 *     to their readers, CANCELS of the idle ones cancelled one by one; a latency is the time from
 *     `cancel` to the agent receiving its `shutdown` op. p50 and p99 per round; beside it, for the
 *     record, the whole `cancel` (until the agent's turn is drained and the delegate shut down).
 *
 *   node --expose-gc --conditions=@deputy/source --import tsx test/bench/delegate.bench.ts
 */
import { type Agent, Delegate, FairScheduler, Mailboxes, Parent, RolloutStore, ThreadManager } from "@deputy/core"
import { type Event, newThreadId, type Script, userText } from "@deputy/protocol"
import { Scripted } from "@deputy/scripted"
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { Chunk, Effect, Exit, Layer, Mailbox, ManagedRuntime, Scope, Stream } from "effect"
import { compare, type Figure, knob, main, paired, quantile, rounds } from "./harness.js"

const EVENTS = knob("BENCH_EVENTS", 500_000)
const ALIVE = knob("BENCH_ALIVE", 1_000)
const STREAMING = knob("BENCH_STREAMING", 10)
const CANCELS = knob("BENCH_CANCELS", 100)
const CANCEL_ROUNDS = knob("BENCH_CANCEL_ROUNDS", 2)
const ROUNDS = rounds(7)

// One block: a message streamed as 3 deltas (3 filtered + 1 kept) and 6 plain messages = 10 events, 30 % deltas.
// Ten blocks a repetition (a script repeats at most 10,000 times).
const block = [
  { type: "message" as const, text: "abc", deltas: 3 },
  ...Array.from({ length: 6 }, () => ({ type: "message" as const, text: "x" }))
]
const script: Script = {
  turns: [{ repeat: EVENTS / 100, steps: Array.from({ length: 10 }, () => block).flat() }]
}
const EXPECTED = EVENTS * 0.7 + 2 // turn_started and turn_complete come on top

const isEnd = (e: Event) => e.msg.type === "turn_complete"

/** (b) The fair limit: the agent's batches filtered and offered whole into one Mailbox, read as a Stream. */
const fairLimit = Effect.gen(function* () {
  const agent = yield* Scripted.spawn(script)
  const out = yield* Mailbox.make<Event>({ capacity: 512 })
  yield* Effect.forkScoped(
    Effect.gen(function* () {
      while (true) {
        const [chunk, done] = yield* Mailboxes.takeAll(agent.events)
        const kept: Array<Event> = []
        for (const event of Chunk.toReadonlyArray(chunk)) if (Delegate.defaultEventFilter(event.msg)) kept.push(event)
        yield* Mailboxes.offerAll(out, kept)
        if (done) return yield* out.end
      }
    })
  )
  yield* agent.submit({ id: "t", op: userText("go") })
  return yield* Mailboxes.toStream(out).pipe(Stream.takeUntil(isEnd), Stream.runCount)
}).pipe(Effect.scoped, FairScheduler.withFairScheduler)

/** (a) The same agent through Delegate.interactive; counts what the caller receives. */
const delegated = Effect.gen(function* () {
  const delegate = yield* Delegate.interactive(Scripted.spawn(script))
  yield* delegate.submit(userText("go"))
  return yield* delegate.events.pipe(Stream.takeUntil(isEnd), Stream.runCount)
}).pipe(Effect.scoped, FairScheduler.withFairScheduler)

const gc = () => (globalThis as { gc?: () => void }).gc?.()
const heapUsed = () => {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

const idleScript: Script = { turns: [{ repeat: 1, steps: [{ type: "sleep", ms: 600_000 }] }] }

/** Heap bytes per idle bare delegate, ALIVE alive at once. */
const bareHeap = Effect.gen(function* () {
  const scope = yield* Scope.make()
  const before = heapUsed()
  yield* Effect.forEach(
    Array.from({ length: ALIVE }),
    () => Delegate.interactive(Scripted.spawn(idleScript, { threadId: newThreadId() })),
    { discard: true }
  ).pipe(Scope.extend(scope))
  const after = heapUsed()
  yield* Scope.close(scope, Exit.void)
  return (after - before) / ALIVE
})

/** Heap bytes per idle thread started through ThreadManager.start, ALIVE alive at once. */
const managedHeap = Effect.gen(function* () {
  const manager = yield* ThreadManager
  const backend = Scripted.backend(idleScript)
  const before = heapUsed()
  const threads = yield* Effect.forEach(Array.from({ length: ALIVE }), () => manager.start({ backend }))
  const after = heapUsed()
  yield* Effect.forEach(threads, (t) => manager.remove(t.threadId), { discard: true })
  return (after - before) / ALIVE
})

/** An idle agent that notes when it receives its shutdown op. */
const watched = (received: { at: number }) =>
  Effect.map(
    Scripted.spawn(idleScript),
    (agent): Agent => ({
      ...agent,
      submit: (submission) =>
        submission.op.type === "shutdown"
          ? Effect.zipRight(
              Effect.sync(() => {
                received.at = performance.now()
              }),
              agent.submit(submission)
            )
          : agent.submit(submission)
    })
  )

const flood: Script = {
  turns: [
    { repeat: 10_000, steps: Array.from({ length: 1_000 }, () => ({ type: "message", text: "streaming", deltas: 2 })) }
  ]
}

/**
 * Cancel-to-shutdown-received latencies (ms) of CANCELS delegates, with ALIVE alive and STREAMING streaming,
 * and the time each whole `cancel` took.
 */
const cancelUnderLoad = Effect.gen(function* () {
  const scope = yield* Scope.make()
  for (let i = 0; i < STREAMING; i++) {
    const d = yield* Delegate.interactive(Scripted.spawn(flood)).pipe(Scope.extend(scope))
    yield* d.submit(userText("stream"))
    yield* Effect.forkIn(Stream.runDrain(d.events), scope)
  }
  const marks = Array.from({ length: ALIVE }, () => ({ at: 0 }))
  const delegates = yield* Effect.forEach(marks, (mark) =>
    Effect.tap(Delegate.interactive(watched(mark)), (d) =>
      Effect.zipRight(d.submit(userText("wait")), Stream.runDrain(Stream.take(d.events, 1)))
    ).pipe(Scope.extend(scope))
  )
  const millis: Array<number> = []
  const whole: Array<number> = []
  for (let i = 0; i < Math.min(CANCELS, ALIVE); i++) {
    const start = performance.now()
    yield* delegates[i]!.cancel
    whole.push(performance.now() - start)
    millis.push(marks[i]!.at - start)
  }
  yield* Scope.close(scope, Exit.void)
  return { millis, whole }
})

const figures = async (): Promise<ReadonlyArray<Figure>> => {
  const layer = Layer.unwrapScoped(
    Effect.gen(function* () {
      const home = yield* (yield* FileSystem.FileSystem).makeTempDirectoryScoped({ prefix: "deputy-bench-" })
      return ThreadManager.layer.pipe(Layer.provideMerge(RolloutStore.layer({ home })))
    })
  ).pipe(Layer.provideMerge(Parent.layerCallbacks({})), Layer.provideMerge(NodeContext.layer))
  const runtime = ManagedRuntime.make(layer)
  const run = <A, E>(effect: Effect.Effect<A, E, ThreadManager | Parent | RolloutStore | NodeContext.NodeContext>) =>
    runtime.runPromise(effect)
  if (!(globalThis as { gc?: unknown }).gc) console.error("(run with --expose-gc for heap figures)")

  const rate =
    <E, R extends ThreadManager | Parent | RolloutStore | NodeContext.NodeContext>(
      effect: Effect.Effect<number, E, R>
    ) =>
    async () => {
      const start = performance.now()
      const count = await run(effect)
      if (count !== EXPECTED) throw new Error(`counted ${count} events, expected ${EXPECTED}`)
      return EVENTS / ((performance.now() - start) / 1000)
    }
  const forwarding = await paired(
    ROUNDS,
    [
      ["limit", rate(fairLimit)],
      ["delegate", rate(delegated)]
    ],
    { log: "delegate forwarding" }
  )
  const heap = await paired(
    Math.max(3, Math.ceil(ROUNDS / 2)),
    [
      ["bare", () => run(bareHeap)],
      ["managed", () => run(managedHeap)]
    ],
    { log: "delegate heap" }
  )
  const p50: Array<number> = []
  const p99: Array<number> = []
  const wholeP50: Array<number> = []
  const wholeP99: Array<number> = []
  const cancelRounds = CANCEL_ROUNDS
  for (let round = 0; round < cancelRounds; round++) {
    const { millis, whole } = await run(cancelUnderLoad)
    p50.push(quantile(millis, 0.5))
    p99.push(quantile(millis, 0.99))
    wholeP50.push(quantile(whole, 0.5))
    wholeP99.push(quantile(whole, 0.99))
    console.error(
      `delegate cancel round ${round + 1}/${cancelRounds}: p50 ${p50.at(-1)} p99 ${p99.at(-1)} ms; ` +
        `whole cancel p50 ${wholeP50.at(-1)} p99 ${wholeP99.at(-1)} ms`
    )
  }
  await runtime.dispose()
  const bench = "delegate"
  const load = `${ALIVE.toLocaleString("en-US")} alive, ${STREAMING} streaming, ${CANCELS} cancels a round, ${CANCEL_ROUNDS} rounds`
  return [
    compare(
      bench,
      `forwarding ${EVENTS.toLocaleString("en-US")} events (30 % filtered)`,
      "events/s",
      forwarding.delegate,
      { name: "bare Mailbox pipe, offerAll per batch, same filter", samples: forwarding.limit },
      { text: "ratio ≥ 0.8", met: (r) => r >= 0.8 }
    ),
    compare(
      bench,
      `heap per idle thread through ThreadManager.start (${ALIVE.toLocaleString("en-US")} alive)`,
      "bytes",
      heap.managed,
      { name: "idle bare delegate", samples: heap.bare },
      { text: "≤ 49,152 bytes", met: (_, m) => m <= 49_152 }
    ),
    compare(bench, `cancel → shutdown received, p50 (${load})`, "ms", p50, undefined),
    compare(bench, `cancel → shutdown received, p99 (${load})`, "ms", p99, undefined, {
      text: "≤ 10 ms",
      met: (_, m) => m <= 10
    }),
    compare(bench, `whole cancel (drained, shut down), p50 (${load})`, "ms", wholeP50, undefined),
    compare(bench, `whole cancel (drained, shut down), p99 (${load})`, "ms", wholeP99, undefined)
  ]
}

main(figures)
