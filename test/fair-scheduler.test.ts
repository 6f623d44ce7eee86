// §37: deputy never starves the process. While a delegate streams half a million events, timers still
// run every few milliseconds, and another delegate's drain bound still fires. Both failed on main
// (zero ticks of a 1 ms interval for the whole turn) before the fair scheduler.
import { type Agent, Delegate, Parent } from "@deputy/core"
import { type AgentStatus, type Event, newThreadId, Script } from "@deputy/protocol"
import { Scripted } from "@deputy/scripted"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Deferred, Effect, Fiber, Mailbox, Stream, SubscriptionRef } from "effect"

const userInput = { type: "user_input" as const, items: [{ type: "text" as const, text: "go" }] }

/** 1,000 messages of 499 deltas each: 500,000 events in one turn. */
const flood = Script.parse({
  turns: [{ repeat: 1000, steps: [{ type: "message", text: "x".repeat(499), deltas: 499 }] }]
})

const stuckAgent = Effect.gen(function* () {
  const events = yield* Mailbox.make<Event>()
  const agent: Agent = {
    threadId: newThreadId(),
    backend: "stuck",
    submit: () => Effect.void,
    events,
    status: yield* SubscriptionRef.make<AgentStatus>({ type: "running", turnId: "t1" })
  }
  return agent
})

/**
 * A 1 ms interval for the scope; `keptUp` asserts it ticked at least every 5 ms on average from
 * `start` for `elapsed` ms, with no gap of 50 ms or more.
 */
const ticking = Effect.gen(function* () {
  const ticks: Array<number> = []
  const interval = setInterval(() => ticks.push(performance.now()), 1)
  yield* Effect.addFinalizer(() => Effect.sync(() => clearInterval(interval)))
  return {
    keptUp: (start: number, elapsed: number) => {
      const gaps = ticks.map((at, i) => at - (i === 0 ? start : ticks[i - 1]!))
      assert.isAtLeast(ticks.length * 5, elapsed, `${ticks.length} ticks in ${elapsed.toFixed(0)} ms`)
      assert.isBelow(Math.max(...gaps, elapsed - (ticks.at(-1) ?? start)), 50)
    }
  }
})

layer(NodeContext.layer, { excludeTestServices: true })("§37 fair scheduling", (it) => {
  it.scoped("a 1 ms interval keeps ticking, every few milliseconds, through a scripted turn of 500,000 events", () =>
    Effect.gen(function* () {
      // §37 (issue 12 asks for 100 ticks in such a turn; how many fit depends on how fast the turn runs,
      // so this asserts the rate: a tick at least every 5 ms on average, and no gap of 50 ms or more).
      const ticks = yield* ticking
      const start = performance.now()
      const delegate = yield* Delegate.oneShot(Scripted.spawn(flood), userInput)
      const seen = yield* Stream.runCount(delegate.events)
      const elapsed = performance.now() - start
      assert.strictEqual(seen, 1000 + 2) // the messages, turn_started and turn_complete (deltas are dropped)
      ticks.keptUp(start, elapsed)
    }).pipe(Effect.provide(Parent.layerCallbacks({})))
  )

  it.scoped("a turn the caller submits from its own fiber (Effect's default scheduler) runs on the fair one too", () =>
    Effect.gen(function* () {
      // The agent's driver and turn run where the agent was made (the delegate puts it on the fair
      // scheduler), whatever scheduler the fiber that submits is on.
      const ticks = yield* ticking
      const start = performance.now()
      const delegate = yield* Delegate.interactive(Scripted.spawn(flood))
      yield* delegate.submit(userInput)
      const seen = yield* delegate.events.pipe(
        Stream.takeUntil((event) => event.msg.type === "turn_complete"),
        Stream.runCount
      )
      const elapsed = performance.now() - start
      assert.strictEqual(seen, 1000 + 2)
      ticks.keptUp(start, elapsed)
    }).pipe(Effect.provide(Parent.layerCallbacks({})))
  )

  it.scoped("a drain bound fires while another delegate streams", () =>
    Effect.gen(function* () {
      const streaming = yield* Delegate.oneShot(Scripted.spawn(flood), userInput)
      const finished = yield* Deferred.make<void>()
      const reader = yield* Effect.fork(
        Stream.runDrain(streaming.events).pipe(Effect.zipRight(Deferred.succeed(finished, undefined)))
      )
      // A sub-agent that ignores Interrupt and Shutdown: only the drain bound (a timer) ends the cancel.
      const stuck = yield* Delegate.interactive(stuckAgent, { drainTimeout: "50 millis" })
      const report = yield* stuck.cancel
      // The bound fired before the flood was over: the process was not starved.
      assert.strictEqual(report.outcome, "drain_timeout")
      assert.isFalse(yield* Deferred.isDone(finished))
      yield* Fiber.interrupt(reader)
    }).pipe(Effect.provide(Parent.layerCallbacks({})))
  )
})
