import type { Event, Submission } from "@deputy/protocol"
import { userText } from "@deputy/protocol"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Exit, Fiber, Layer, Option, Queue, Ref, Scope, Stream, Supervisor, TestClock } from "effect"
import { type Agent, Delegate } from "../src/index.js"
import { Parent } from "../src/Parent.js"
import { makeFakeAgent, THREAD, takeUntil } from "./fixtures/FakeAgent.js"
import { HeldScheduler } from "./fixtures/HeldScheduler.js"
import { makeManualParent } from "./fixtures/ManualParent.js"

const denyAll = Parent.layerCallbacks({})
/** Lets fibers on the fair scheduler run, whatever slice they are in. */
const nextMacrotask = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
/** The supervised fibers still running once they are down to `expected`, or after 50 macrotasks. */
const settledFibers = (supervisor: Supervisor.Supervisor<ReadonlyArray<unknown>>, expected: number) =>
  Effect.gen(function* () {
    for (let i = 0; i < 50; i++) {
      const live = (yield* supervisor.value).length
      if (live <= expected) return live
      yield* nextMacrotask
    }
    return (yield* supervisor.value).length
  })
const opTypes = (subs: ReadonlyArray<Submission>) => subs.map((s) => s.op.type)
const execRequest = (extra: { approvalId?: string } = {}) => ({
  type: "exec_approval_request" as const,
  callId: "call-1",
  turnId: "turn-1",
  command: ["rm", "-rf", "build"],
  cwd: "/work",
  ...extra
})

describe("Delegate.interactive", () => {
  it.scoped("§1 forwards ops to the agent and events to the caller", () =>
    Effect.gen(function* () {
      const fake = yield* makeFakeAgent()
      const delegate = yield* Delegate.interactive(Effect.succeed(fake.agent))
      const id = yield* delegate.submit(userText("hello"))
      const submitted = yield* Queue.take(fake.submissions)
      assert.deepStrictEqual(submitted, { id, op: userText("hello") })
      yield* fake.emit(id, { type: "agent_message", message: "hi" })
      assert.deepStrictEqual(yield* delegate.take, { id, msg: { type: "agent_message", message: "hi" } })
      assert.strictEqual(delegate.threadId, THREAD)
    }).pipe(Effect.provide(denyAll))
  )

  it.effect("§1 closing the caller's scope stops both forwarders and shuts the agent down", () =>
    Effect.gen(function* () {
      const fake = yield* makeFakeAgent()
      const scope = yield* Scope.make()
      const delegate = yield* Delegate.interactive(Effect.succeed(fake.agent)).pipe(Scope.extend(scope))
      yield* Scope.close(scope, Exit.void)
      yield* delegate.awaitShutdown
      assert.deepStrictEqual(opTypes(yield* Queue.takeAll(fake.submissions).pipe(Effect.map(Chunk.toArray))), [
        "interrupt",
        "shutdown"
      ])
      assert.strictEqual((yield* Effect.flip(delegate.submit(userText("late"))))._tag, "OpsClosed")
      assert.isTrue(Option.isNone(yield* Effect.option(delegate.take)))
    }).pipe(Effect.provide(denyAll))
  )

  it.scoped("§2 drops deltas, token counts, session_configured and name updates; the rest arrives in order", () =>
    Effect.gen(function* () {
      const fake = yield* makeFakeAgent()
      const seen: Array<Event> = []
      const delegate = yield* Delegate.interactive(Effect.succeed(fake.agent), {
        onEvents: (events) => Effect.sync(() => seen.push(...events))
      })
      yield* fake.emit("t", { type: "session_configured", threadId: THREAD, backend: "fake" })
      yield* fake.emit("t", { type: "agent_message_delta", delta: "h" })
      yield* fake.emit("t", { type: "agent_reasoning_delta", delta: "r" })
      yield* fake.emit("t", { type: "token_count", inputTokens: 1, outputTokens: 2, totalTokens: 3 })
      yield* fake.emit("t", { type: "thread_name_updated", threadId: THREAD, name: "n" })
      yield* fake.emit("t", { type: "agent_message", message: "hi" })
      yield* fake.emit("t", { type: "turn_complete", turnId: "t" })
      assert.deepStrictEqual((yield* delegate.take).msg.type, "agent_message")
      assert.deepStrictEqual((yield* delegate.take).msg.type, "turn_complete")
      // Filtered events still reach onEvents (and so the rollout).
      assert.strictEqual(seen.length, 7)
    }).pipe(Effect.provide(denyAll))
  )

  it.scoped("§2 a caller's own filter replaces the default; approval requests still never reach the caller", () =>
    Effect.gen(function* () {
      const fake = yield* makeFakeAgent()
      const delegate = yield* Delegate.interactive(Effect.succeed(fake.agent), { filter: () => true })
      yield* fake.emit("t", { type: "agent_message_delta", delta: "h" })
      yield* fake.emit("t", execRequest())
      yield* fake.emit("t", { type: "turn_complete", turnId: "t" })
      assert.strictEqual((yield* delegate.take).msg.type, "agent_message_delta")
      assert.strictEqual((yield* delegate.take).msg.type, "turn_complete")
    }).pipe(Effect.provide(denyAll))
  )

  it.scoped("§3 an exec answer carries the effective approval id (approvalId, else callId) and the turn id", () =>
    Effect.gen(function* () {
      const fake = yield* makeFakeAgent()
      const parent = yield* makeManualParent
      yield* Delegate.interactive(Effect.succeed(fake.agent)).pipe(Effect.provide(parent.layer))
      yield* fake.emit("turn-1", execRequest({ approvalId: "approval-9" }))
      const first = yield* Queue.take(parent.requests)
      assert.strictEqual(first.requestId, `${THREAD}:approval-9`)
      assert.deepStrictEqual(first.path, [THREAD])
      yield* parent.answer(first.requestId, "approved")
      assert.deepStrictEqual((yield* Queue.take(fake.submissions)).op, {
        type: "exec_approval",
        id: "approval-9",
        turnId: "turn-1",
        decision: "approved"
      })
      yield* fake.emit("turn-1", execRequest())
      const second = yield* Queue.take(parent.requests)
      yield* parent.answer(second.requestId, "approved_for_session")
      assert.deepStrictEqual((yield* Queue.take(fake.submissions)).op, {
        type: "exec_approval",
        id: "call-1",
        turnId: "turn-1",
        decision: "approved_for_session"
      })
    })
  )

  it.scoped("§3 a patch answer carries the callId; a user-input answer carries the event id", () =>
    Effect.gen(function* () {
      const fake = yield* makeFakeAgent()
      const parent = yield* makeManualParent
      yield* Delegate.interactive(Effect.succeed(fake.agent)).pipe(Effect.provide(parent.layer))
      yield* fake.emit("turn-1", {
        type: "apply_patch_approval_request",
        callId: "patch-1",
        turnId: "turn-1",
        changes: { "a.txt": { type: "add", content: "a" } }
      })
      const patch = yield* Queue.take(parent.requests)
      assert.strictEqual(patch.kind, "patch")
      yield* parent.answer(patch.requestId, "denied")
      assert.deepStrictEqual((yield* Queue.take(fake.submissions)).op, {
        type: "patch_approval",
        id: "patch-1",
        decision: "denied"
      })
      yield* fake.emit("event-7", {
        type: "request_user_input",
        callId: "ask-1",
        turnId: "turn-1",
        questions: [{ id: "color", question: "Which color?" }]
      })
      const ask = yield* Queue.take(parent.requests)
      const response = { answers: { color: { answers: ["red"] } } }
      yield* parent.answer(ask.requestId, response)
      assert.deepStrictEqual((yield* Queue.take(fake.submissions)).op, {
        type: "user_input_answer",
        id: "event-7",
        response
      })
    })
  )

  it.scoped("§3 two pending requests of one agent are answered in any order", () =>
    Effect.gen(function* () {
      const fake = yield* makeFakeAgent()
      const parent = yield* makeManualParent
      yield* Delegate.interactive(Effect.succeed(fake.agent)).pipe(Effect.provide(parent.layer))
      yield* fake.emit("t", execRequest({ approvalId: "a" }))
      yield* fake.emit("t", execRequest({ approvalId: "b" }))
      const a = yield* Queue.take(parent.requests)
      const b = yield* Queue.take(parent.requests)
      yield* parent.answer(b.requestId, "approved")
      yield* parent.answer(a.requestId, "denied")
      const answers = [yield* Queue.take(fake.submissions), yield* Queue.take(fake.submissions)]
      assert.deepStrictEqual(
        answers.map((s) => s.op.type === "exec_approval" && `${s.op.id}=${s.op.decision}`),
        ["b=approved", "a=denied"]
      )
    })
  )

  it.effect(
    "§4 a cancelled exec approval withdraws the parent's request, sends abort, then interrupt and shutdown",
    () =>
      Effect.gen(function* () {
        const fake = yield* makeFakeAgent()
        const parent = yield* makeManualParent
        const delegate = yield* Effect.scoped(
          Effect.gen(function* () {
            const delegate = yield* Delegate.interactive(Effect.succeed(fake.agent)).pipe(Effect.provide(parent.layer))
            yield* fake.emit("turn-1", execRequest())
            yield* Queue.take(parent.requests)
            return delegate
          })
        )
        const shutdown = yield* delegate.awaitShutdown
        assert.deepStrictEqual(shutdown, { outcome: "aborted", withdrawn: [`${THREAD}:call-1`] })
        assert.deepStrictEqual(yield* Ref.get(parent.withdrawn), [`${THREAD}:call-1`])
        const subs = yield* takeUntil(fake.submissions, "shutdown")
        assert.deepStrictEqual(opTypes(subs), ["exec_approval", "interrupt", "shutdown"])
        assert.deepStrictEqual(subs[0]?.op, {
          type: "exec_approval",
          id: "call-1",
          turnId: "turn-1",
          decision: "abort"
        })
      })
  )

  it.effect("§4 a cancelled patch approval sends abort; a cancelled user-input request sends an empty answer set", () =>
    Effect.gen(function* () {
      const fake = yield* makeFakeAgent()
      const parent = yield* makeManualParent
      const delegate = yield* Delegate.interactive(Effect.succeed(fake.agent)).pipe(
        Effect.provide(parent.layer),
        Effect.tap(() =>
          Effect.all([
            fake.emit("t", {
              type: "apply_patch_approval_request",
              callId: "p",
              turnId: "t",
              changes: { x: { type: "delete" } }
            }),
            fake.emit("t", {
              type: "request_user_input",
              callId: "q",
              turnId: "t",
              questions: [{ id: "a", question: "?" }]
            })
          ])
        ),
        Effect.tap(() => Queue.takeBetween(parent.requests, 2, 2)),
        Effect.scoped
      )
      yield* delegate.awaitShutdown
      const subs = yield* takeUntil(fake.submissions, "shutdown")
      const answers = subs.slice(0, 2).map((s) => s.op)
      assert.deepInclude(answers, { type: "patch_approval", id: "p", decision: "abort" })
      assert.deepInclude(answers, { type: "user_input_answer", id: "t", response: { answers: {} } })
      assert.deepStrictEqual(opTypes(subs.slice(2)), ["interrupt", "shutdown"])
      assert.sameMembers([...(yield* Ref.get(parent.withdrawn))], [`${THREAD}:p`, `${THREAD}:q`])
    })
  )

  it.scoped("§5 a parent that fails yields denied, and an empty answer set for questions", () =>
    Effect.gen(function* () {
      const fake = yield* makeFakeAgent()
      const parent = yield* makeManualParent
      yield* Delegate.interactive(Effect.succeed(fake.agent)).pipe(Effect.provide(parent.layer))
      yield* fake.emit("t", execRequest())
      yield* parent.answer((yield* Queue.take(parent.requests)).requestId, "fail")
      assert.deepStrictEqual((yield* Queue.take(fake.submissions)).op, {
        type: "exec_approval",
        id: "call-1",
        turnId: "turn-1",
        decision: "denied"
      })
      yield* fake.emit("e", {
        type: "request_user_input",
        callId: "q",
        turnId: "t",
        questions: [{ id: "a", question: "?" }]
      })
      yield* parent.answer((yield* Queue.take(parent.requests)).requestId, "fail")
      assert.deepStrictEqual((yield* Queue.take(fake.submissions)).op, {
        type: "user_input_answer",
        id: "e",
        response: { answers: {} }
      })
    })
  )

  it.scoped("§5 callbacks that throw, return nothing or return garbage all yield denied", () =>
    Effect.gen(function* () {
      const fake = yield* makeFakeAgent()
      const answers = [
        () => {
          throw new Error("boom")
        },
        () => undefined,
        () => "yes please"
      ]
      let calls = 0
      const parent = Parent.layerCallbacks({ execApproval: () => answers[calls++]!() })
      yield* Delegate.interactive(Effect.succeed(fake.agent)).pipe(Effect.provide(parent))
      for (const approvalId of ["a", "b", "c"]) {
        yield* fake.emit("t", execRequest({ approvalId }))
        const op = (yield* Queue.take(fake.submissions)).op
        assert.deepStrictEqual(op, { type: "exec_approval", id: approvalId, turnId: "turn-1", decision: "denied" })
      }
    })
  )

  it.effect("§6 cancelled while blocked on a full events mailbox: interrupt and shutdown still reach the agent", () =>
    Effect.gen(function* () {
      const fake = yield* makeFakeAgent()
      const scope = yield* Scope.make()
      const delegate = yield* Delegate.interactive(Effect.succeed(fake.agent), { capacity: 1 }).pipe(
        Scope.extend(scope),
        Effect.provide(denyAll)
      )
      // One event fills the caller's mailbox; the second blocks the forwarder.
      yield* fake.emit("full", { type: "agent_message", message: "1" })
      yield* fake.emit("blocked", { type: "agent_message", message: "2" })
      // The forwarder runs on the fair scheduler: wait (a macrotask at a time) until it took both.
      while (Option.getOrElse(yield* fake.agent.events.size, () => 0) > 0) yield* nextMacrotask
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      // The bound: the drain ends by the agent's turn_aborted, so no clock time is needed at all.
      const ended = yield* Fiber.join(closing).pipe(Effect.timeout("1 second"), Effect.fork)
      yield* TestClock.adjust("1 second")
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(ended)))
      assert.deepStrictEqual(opTypes(yield* takeUntil(fake.submissions, "shutdown")), ["interrupt", "shutdown"])
      assert.strictEqual((yield* delegate.take).id, "full")
    }).pipe(Effect.provide(denyAll))
  )

  it.effect("§7 when the caller stops reading, the delegate shuts the agent down", () =>
    Effect.gen(function* () {
      const fake = yield* makeFakeAgent()
      const delegate = yield* Delegate.interactive(Effect.succeed(fake.agent))
      yield* delegate.close
      yield* fake.emit("t", { type: "agent_message", message: "nobody listens" })
      yield* delegate.awaitShutdown
      assert.deepStrictEqual(opTypes(yield* takeUntil(fake.submissions, "shutdown")), ["interrupt", "shutdown"])
    }).pipe(Effect.provide(denyAll), Effect.scoped)
  )

  it.effect("§8 drain stops at turn_aborted without waiting for the bound", () =>
    Effect.gen(function* () {
      const fake = yield* makeFakeAgent({ abortOnInterrupt: true })
      const delegate = yield* Delegate.interactive(Effect.succeed(fake.agent)).pipe(Effect.scoped)
      // No TestClock adjustment: had the drain waited for its 500 ms bound, this would never finish.
      yield* delegate.awaitShutdown
    }).pipe(Effect.provide(denyAll))
  )

  it.effect("§8 drain stops at the time bound when the agent never answers", () =>
    Effect.gen(function* () {
      const fake = yield* makeFakeAgent({ abortOnInterrupt: false })
      const scope = yield* Scope.make()
      const delegate = yield* Delegate.interactive(Effect.succeed(fake.agent), { drainTimeout: "2 seconds" }).pipe(
        Scope.extend(scope)
      )
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust("1999 millis")
      assert.isNull(yield* Fiber.poll(closing).pipe(Effect.map(Option.getOrNull)))
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(closing)
      assert.deepStrictEqual(yield* delegate.awaitShutdown, { outcome: "drain_timeout", withdrawn: [] })
    }).pipe(Effect.provide(denyAll))
  )

  it.effect("§8 errors submitting interrupt and shutdown are ignored: shutdown never fails", () =>
    Effect.gen(function* () {
      const fake = yield* makeFakeAgent({ closed: true })
      const delegate = yield* Delegate.interactive(Effect.succeed(fake.agent)).pipe(Effect.scoped, Effect.fork)
      yield* TestClock.adjust("500 millis")
      assert.strictEqual((yield* (yield* Fiber.join(delegate)).awaitShutdown).outcome, "submit_failed")
    }).pipe(Effect.provide(denyAll))
  )

  it.scoped("§8 when the agent's events end by themselves, the caller's events end too", () =>
    Effect.gen(function* () {
      const fake = yield* makeFakeAgent()
      const delegate = yield* Delegate.interactive(Effect.succeed(fake.agent))
      yield* fake.emit("t", { type: "agent_message", message: "last words" })
      yield* fake.end
      const all = yield* Stream.runCollect(delegate.events)
      assert.deepStrictEqual(
        Chunk.toArray(all).map((e) => e.msg.type),
        ["agent_message"]
      )
      yield* delegate.awaitShutdown
    }).pipe(Effect.provide(denyAll))
  )

  it.scoped(
    "issue 12: an idle delegate runs one fiber (its event forwarder); ops are forwarded by a fiber that ends once they are sent",
    () =>
      Effect.gen(function* () {
        const fake = yield* makeFakeAgent()
        const supervisor = yield* Supervisor.track
        const supervised = Effect.supervised(supervisor)
        const delegate = yield* Delegate.interactive(Effect.succeed(fake.agent)).pipe(supervised)
        assert.strictEqual(yield* settledFibers(supervisor, 1), 1)
        const first = yield* delegate.submit(userText("one")).pipe(supervised)
        const second = yield* delegate.submit(userText("two")).pipe(supervised)
        assert.deepStrictEqual(
          [yield* Queue.take(fake.submissions), yield* Queue.take(fake.submissions)].map((s) => s.id),
          [first, second]
        )
        assert.strictEqual(yield* settledFibers(supervisor, 1), 1)
        // A submit after the forwarder ended starts it again.
        const third = yield* delegate.submit(userText("three")).pipe(supervised)
        assert.strictEqual((yield* Queue.take(fake.submissions)).id, third)
        assert.strictEqual(yield* settledFibers(supervisor, 1), 1)
      }).pipe(Effect.provide(denyAll))
  )

  it.effect("issue 12: a submit made in an uninterruptible region does not keep the delegate from closing", () =>
    Effect.gen(function* () {
      const fake = yield* makeFakeAgent()
      // An agent that never takes a user input: the op forwarder waits in its submit.
      const agent: Agent = {
        ...fake.agent,
        submit: (submission) => (submission.op.type === "user_input" ? Effect.never : fake.agent.submit(submission))
      }
      const scope = yield* Scope.make()
      const delegate = yield* Delegate.interactive(Effect.succeed(agent)).pipe(Scope.extend(scope))
      yield* Effect.uninterruptible(delegate.submit(userText("stuck")))
      yield* nextMacrotask // the forwarder is now waiting in the agent's submit
      const shutdown = yield* delegate.cancel
      assert.strictEqual(shutdown.outcome, "aborted")
    }).pipe(Effect.provide(denyAll))
  )

  it.effect("issue 12: cancelling an idle delegate reaches its agent before its forwarder gets to run again", () =>
    Effect.gen(function* () {
      // Under load, the forwarder's next turn waits behind every streaming fiber's batch: the agent must
      // not wait for it to hear interrupt and shutdown (§8).
      const fake = yield* makeFakeAgent()
      const scheduler = new HeldScheduler()
      const delegate = yield* Delegate.interactive(Effect.succeed(fake.agent), { scheduler }).pipe(
        Effect.provide(denyAll)
      )
      // One event there and back: the forwarder is parked at its next take once its fibers settle.
      yield* fake.emit("e", { type: "agent_message", message: "hi" })
      assert.strictEqual((yield* delegate.take).id, "e")
      while (scheduler.pending > 0) yield* Effect.yieldNow()
      scheduler.hold()
      const cancelling = yield* Effect.fork(delegate.cancel)
      while ((yield* Fiber.status(cancelling))._tag !== "Suspended") yield* Effect.yieldNow()
      const received = opTypes(Chunk.toArray(yield* Queue.takeAll(fake.submissions)))
      scheduler.release()
      const shutdown = yield* Fiber.join(cancelling)
      assert.deepStrictEqual(received, ["interrupt", "shutdown"])
      // The forwarder stopped before the drain: the agent's turn_aborted reached the drain, not the caller.
      assert.deepStrictEqual(shutdown, { outcome: "aborted", withdrawn: [] })
      assert.isTrue(Option.isNone(yield* Effect.option(delegate.take)))
    }).pipe(Effect.scoped)
  )
})

describe("Delegate.oneShot", () => {
  for (const end of ["turn_complete", "turn_aborted"] as const) {
    it.scoped(`§9 shuts itself down after ${end} without the caller cancelling`, () =>
      Effect.gen(function* () {
        const fake = yield* makeFakeAgent()
        const delegate = yield* Delegate.oneShot(Effect.succeed(fake.agent), {
          type: "user_input",
          items: [{ type: "text", text: "review this" }]
        })
        const input = yield* Queue.take(fake.submissions)
        assert.strictEqual(input.op.type, "user_input")
        yield* fake.emit(input.id, { type: "agent_message", message: "looks fine" })
        yield* fake.emit(
          input.id,
          end === "turn_complete"
            ? { type: "turn_complete", turnId: input.id }
            : { type: "turn_aborted", reason: "interrupted" }
        )
        yield* fake.emit(input.id, { type: "agent_message", message: "after the end" })
        const events = Chunk.toArray(yield* Stream.runCollect(delegate.events))
        assert.deepStrictEqual(
          events.map((e) => e.msg.type),
          ["agent_message", end]
        )
        yield* delegate.awaitShutdown
        assert.deepStrictEqual(opTypes(yield* takeUntil(fake.submissions, "shutdown")), ["shutdown"])
      }).pipe(Effect.provide(denyAll))
    )
  }

  it.scoped("§9 refuses further ops with OpsClosed", () =>
    Effect.gen(function* () {
      const fake = yield* makeFakeAgent()
      const delegate = yield* Delegate.oneShot(Effect.succeed(fake.agent), {
        type: "user_input",
        items: [{ type: "text", text: "go" }]
      })
      const error = yield* Effect.flip(delegate.submit({ type: "interrupt" }))
      assert.strictEqual(error._tag, "OpsClosed")
      assert.match(error.message, /one-shot/)
    }).pipe(Effect.provide(denyAll))
  )
})

describe("Delegate with parents", () => {
  it.scoped("routes an exec approval through a policy parent and a recording wrapper", () =>
    Effect.gen(function* () {
      const fake = yield* makeFakeAgent()
      yield* Delegate.interactive(Effect.succeed(fake.agent))
      yield* fake.emit("t", { ...execRequest(), command: ["git", "status"] })
      assert.deepStrictEqual((yield* Queue.take(fake.submissions)).op, {
        type: "exec_approval",
        id: "call-1",
        turnId: "turn-1",
        decision: "approved"
      })
    }).pipe(
      Effect.provide(
        Parent.layerRecording.pipe(
          Layer.provide(
            Parent.layerPolicy({
              exec: [{ prefix: ["git"], decision: "approved" }],
              patch: [],
              answers: {},
              default: "denied"
            })
          )
        )
      )
    )
  )
})
