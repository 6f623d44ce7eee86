/**
 * The delegate benchmark (issue 2). In one run, on the same 1,000,000 events (30 % of them deltas
 * the delegate filters out):
 *   (a) the bare limit: the events pushed through one Effect Queue into a Stream;
 *   (b) a scripted agent's events read directly from the agent;
 *   (c) the same agent read through Delegate.interactive;
 * then heap bytes per idle interactive sub-agent with 1,000 alive, and cancel-to-shutdown latency
 * (p50 / p99) with 1,000 alive. Prints figures and the ratios c/b and c/a.
 *
 *   node --expose-gc --conditions=@deputy/source --import tsx test/bench/delegate.bench.ts
 */
import { Delegate, Parent } from "@deputy/core"
import { type Event, newThreadId, type Script, userText } from "@deputy/protocol"
import { Scripted } from "@deputy/scripted"
import { NodeContext } from "@effect/platform-node"
import { Chunk, Effect, Exit, Layer, Queue, Scope, Stream } from "effect"

const EVENTS = Number(process.env.BENCH_EVENTS ?? 1_000_000)
const ALIVE = Number(process.env.BENCH_ALIVE ?? 1_000)
const ROUNDS = 3

// turn_started and turn_complete come on top. One repetition: a message streamed as 3 deltas (3 filtered + 1 kept) and 6 plain messages = 10 events, 30 % deltas.
const REPEAT = EVENTS / 10
const script: Script = {
  turns: [
    {
      repeat: REPEAT,
      steps: [
        { type: "message", text: "abc", deltas: 3 },
        ...Array.from({ length: 6 }, () => ({ type: "message" as const, text: "x" }))
      ]
    }
  ]
}

/** The same events as plain values, for the bare baseline. */
const sameEvents = (): Array<Event> => {
  const out: Array<Event> = []
  for (let r = 0; r < REPEAT; r++) {
    for (const delta of ["a", "b", "c"]) out.push({ id: "t", msg: { type: "agent_message_delta", delta } })
    out.push({ id: "t", msg: { type: "agent_message", message: "abc" } })
    for (let i = 0; i < 6; i++) out.push({ id: "t", msg: { type: "agent_message", message: "x" } })
  }
  return out
}

const time = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const start = performance.now()
    const value = yield* effect
    return { value, seconds: (performance.now() - start) / 1000 }
  })

/** (a) Every event offered into one bounded Queue and read back as a Stream. */
const bare = (events: ReadonlyArray<Event>) =>
  Effect.gen(function* () {
    const queue = yield* Queue.bounded<Event>(1024)
    yield* Effect.fork(Effect.forEach(events, (event) => Queue.offer(queue, event), { discard: true }))
    return yield* Stream.fromQueue(queue).pipe(Stream.take(events.length), Stream.runCount)
  })

/** (b) The scripted agent's mailbox read directly until the turn completes. */
const direct = Effect.gen(function* () {
  const agent = yield* Scripted.spawn(script)
  yield* agent.submit({ id: "t", op: userText("go") })
  let count = 0
  while (true) {
    const [chunk] = yield* agent.events.takeAll
    count += chunk.length
    if (Chunk.some(chunk, (e) => e.msg.type === "turn_complete")) return count
  }
}).pipe(Effect.scoped)

/** (c) The same agent through Delegate.interactive; counts what the caller receives. */
const delegated = Effect.gen(function* () {
  const delegate = yield* Delegate.interactive(Scripted.spawn(script))
  yield* delegate.submit(userText("go"))
  return yield* delegate.events.pipe(
    Stream.takeUntil((e) => e.msg.type === "turn_complete"),
    Stream.runCount
  )
}).pipe(Effect.scoped)

const gc = () => (globalThis as { gc?: () => void }).gc?.()
const heapUsed = () => {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

const idleScript: Script = { turns: [{ repeat: 1, steps: [{ type: "sleep", ms: 600_000 }] }] }

/** Heap bytes per idle interactive sub-agent, with `ALIVE` of them alive at once. */
const idleHeap = Effect.gen(function* () {
  const scope = yield* Scope.make()
  const before = heapUsed()
  const delegates = yield* Effect.forEach(
    Array.from({ length: ALIVE }),
    () => Delegate.interactive(Scripted.spawn(idleScript, { threadId: newThreadId() })),
    { concurrency: 1 }
  ).pipe(Scope.extend(scope))
  const after = heapUsed()
  yield* Scope.close(scope, Exit.void)
  return { perAgent: (after - before) / delegates.length, alive: delegates.length }
})

/** Cancel-to-shutdown latency of each of `ALIVE` delegates in a turn, cancelled one by one while the rest live. */
const cancelLatency = Effect.gen(function* () {
  const scope = yield* Scope.make()
  const delegates = yield* Effect.forEach(
    Array.from({ length: ALIVE }),
    () =>
      Effect.tap(Delegate.interactive(Scripted.spawn(idleScript)), (d) =>
        Effect.zipRight(d.submit(userText("wait")), Stream.runDrain(Stream.take(d.events, 1)))
      ),
    { concurrency: 1 }
  ).pipe(Scope.extend(scope))
  const millis: Array<number> = []
  for (const delegate of delegates) {
    const start = performance.now()
    yield* delegate.cancel
    millis.push(performance.now() - start)
  }
  yield* Scope.close(scope, Exit.void)
  millis.sort((x, y) => x - y)
  const at = (q: number) => millis[Math.min(millis.length - 1, Math.floor(q * millis.length))]!
  return { p50: at(0.5), p99: at(0.99), max: millis.at(-1)! }
})

const fmt = (n: number) => Math.round(n).toLocaleString("en-US")

const main = Effect.gen(function* () {
  console.log(
    `delegate benchmark: ${fmt(EVENTS)} events (30 % filtered deltas), best of ${ROUNDS}; node ${process.version}`
  )
  if (!(globalThis as { gc?: unknown }).gc) console.log("(run with --expose-gc for stable heap figures)")
  const events = sameEvents()
  const rates = { a: 0, b: 0, c: 0 }
  for (let round = 0; round < ROUNDS; round++) {
    const a = yield* time(bare(events))
    const b = yield* time(direct)
    const c = yield* time(delegated)
    if (a.value !== EVENTS || b.value < EVENTS || c.value !== EVENTS * 0.7 + 2) {
      throw new Error(`event counts off: bare ${a.value}, direct ${b.value}, delegated ${c.value}`)
    }
    rates.a = Math.max(rates.a, EVENTS / a.seconds)
    rates.b = Math.max(rates.b, EVENTS / b.seconds)
    rates.c = Math.max(rates.c, EVENTS / c.seconds)
  }
  console.log(`(a) bare Queue -> Stream       ${fmt(rates.a)} events/s`)
  console.log(`(b) scripted agent, direct     ${fmt(rates.b)} events/s`)
  console.log(`(c) through Delegate           ${fmt(rates.c)} events/s`)
  console.log(`c/b = ${(rates.c / rates.b).toFixed(2)} (target >= 0.5)   c/a = ${(rates.c / rates.a).toFixed(2)}`)
  const heap = yield* idleHeap
  console.log(
    `heap per idle interactive sub-agent (${fmt(heap.alive)} alive): ${fmt(heap.perAgent)} bytes (target <= 65,536)`
  )
  const latency = yield* cancelLatency
  console.log(
    `cancel-to-shutdown with ${fmt(ALIVE)} alive: p50 ${latency.p50.toFixed(2)} ms, p99 ${latency.p99.toFixed(2)} ms, max ${latency.max.toFixed(2)} ms (target p99 <= 10 ms)`
  )
})

Effect.runPromise(main.pipe(Effect.provide(Layer.merge(Parent.layerCallbacks({}), NodeContext.layer)))).catch(
  (error: unknown) => {
    console.error(error)
    process.exitCode = 1
  }
)
