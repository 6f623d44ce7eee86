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

layer(NodeContext.layer, { excludeTestServices: true })("§37 fair scheduling", (it) => {
  it.scoped("a 1 ms interval ticks at least 100 times during a scripted turn of 500,000 events", () =>
    Effect.gen(function* () {
      let ticks = 0
      const interval = setInterval(() => ticks++, 1)
      yield* Effect.addFinalizer(() => Effect.sync(() => clearInterval(interval)))
      const delegate = yield* Delegate.oneShot(Scripted.spawn(flood), userInput)
      const seen = yield* Stream.runCount(delegate.events)
      assert.strictEqual(seen, 1000 + 2) // the messages, turn_started and turn_complete (deltas are dropped)
      assert.isAtLeast(ticks, 100)
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
