import type { EventMsg, ThreadId } from "@deputy/protocol"
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer, Option, Queue, Scope, Stream, SubscriptionRef } from "effect"
import { ApprovalRegistry, type ApprovalRegistryService } from "../src/ApprovalRegistry.js"
import { childrenMap, firstSeenDescendants, turnOutcome } from "../src/internal/Trees.js"
import { type ExecApprovalRequest, Parent } from "../src/Parent.js"
import { policy } from "../src/Policy.js"
import { RolloutStore } from "../src/Rollout.js"
import { type ThreadLimits, ThreadManager } from "../src/ThreadManager.js"
import { makeFakeAgent } from "./fixtures/FakeAgent.js"
import { makeFakeBackend } from "./fixtures/FakeBackend.js"
import { fakeThread } from "./fixtures/fakeThread.js"

const A = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa" as ThreadId
const B = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb" as ThreadId
const C = "cccccccc-cccc-4ccc-8ccc-cccccccccccc" as ThreadId

const home = Layer.unwrapScoped(
  Effect.gen(function* () {
    const dir = yield* (yield* FileSystem.FileSystem).makeTempDirectoryScoped({ prefix: "deputy-trees-" })
    return RolloutStore.layer({ home: dir })
  })
)
/** A manager whose root Parent is the registry over a policy that asks a person about everything. */
const env = (limits: ThreadLimits = {}) =>
  ThreadManager.layerWith({ limits }).pipe(
    Layer.provideMerge(home),
    Layer.provideMerge(ApprovalRegistry.layer.pipe(Layer.provide(Parent.layerPolicy(policy({ default: "ask" }))))),
    Layer.provideMerge(NodeContext.layer)
  )

const exec = (id: string): ExecApprovalRequest => ({
  kind: "exec",
  requestId: id,
  threadId: A,
  turnId: "t",
  path: [A],
  command: ["make"],
  cwd: "/"
})

describe("ApprovalRegistry", () => {
  it.scoped("two requests pending at once are answered out of order, by id", () =>
    Effect.gen(function* () {
      const parent = yield* Parent
      const registry = yield* ApprovalRegistry
      const first = yield* Effect.fork(parent.requestExecApproval(exec("r1")))
      const second = yield* Effect.fork(parent.requestExecApproval(exec("r2")))
      yield* Effect.yieldNow()
      assert.deepStrictEqual(
        (yield* registry.pending).map((p) => p.requestId),
        ["r1", "r2"]
      )
      yield* registry.decide("r2", "approved")
      yield* registry.decide("r1", "denied")
      assert.strictEqual(yield* Fiber.join(second), "approved")
      assert.strictEqual(yield* Fiber.join(first), "denied")
      assert.deepStrictEqual(yield* registry.pending, [])
    }).pipe(Effect.provide(env()))
  )

  it.scoped("a stale answer (answered, withdrawn, never asked) is rejected with RequestNotPending", () =>
    Effect.gen(function* () {
      const parent = yield* Parent
      const registry = yield* ApprovalRegistry
      const waiting = yield* Effect.fork(parent.requestExecApproval(exec("r1")))
      yield* Effect.yieldNow()
      yield* registry.decide("r1", "approved")
      yield* Fiber.join(waiting)
      assert.strictEqual((yield* Effect.flip(registry.decide("r1", "approved")))._tag, "RequestNotPending")
      const withdrawn = yield* Effect.fork(parent.requestExecApproval(exec("r2")))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(withdrawn)
      yield* parent.withdraw("r2")
      assert.strictEqual((yield* Effect.flip(registry.decide("r2", "denied")))._tag, "RequestNotPending")
      assert.strictEqual((yield* Effect.flip(registry.decide("never", "denied")))._tag, "RequestNotPending")
    }).pipe(Effect.provide(env()))
  )

  it.scoped("an answer of the wrong kind is rejected and the request stays pending", () =>
    Effect.gen(function* () {
      const parent = yield* Parent
      const registry = yield* ApprovalRegistry
      yield* Effect.fork(parent.requestExecApproval(exec("r1")))
      yield* Effect.yieldNow()
      assert.strictEqual((yield* Effect.flip(registry.respond("r1", { answers: {} })))._tag, "AnswerMismatch")
      assert.strictEqual((yield* registry.pending).length, 1)
    }).pipe(Effect.provide(env()))
  )

  it.scoped("the root's own Parent answers first when it can; only what it leaves stays pending", () =>
    Effect.gen(function* () {
      const parent = yield* Parent
      const registry = yield* ApprovalRegistry
      assert.strictEqual(yield* parent.requestExecApproval({ ...exec("r1"), command: ["git", "status"] }), "approved")
      yield* Effect.fork(parent.requestExecApproval(exec("r2")))
      yield* Effect.yieldNow()
      assert.deepStrictEqual(
        (yield* registry.pending).map((p) => p.requestId),
        ["r2"]
      )
    }).pipe(
      Effect.provide(
        ApprovalRegistry.layer.pipe(
          Layer.provide(
            Parent.layerPolicy(policy({ exec: [{ prefix: ["git"], decision: "approved" }], default: "ask" }))
          )
        )
      )
    )
  )
})

describe("Trees", () => {
  const turnEnds: ReadonlyArray<[string, ReadonlyArray<EventMsg>, string]> = [
    ["a completed turn", [{ type: "turn_complete", turnId: "t" }], "completed"],
    [
      "an error, then completion",
      [
        { type: "error", message: "x" },
        { type: "turn_complete", turnId: "t" }
      ],
      "failed"
    ],
    [
      "a sub-agent that failed (or could not start), then completion",
      [
        { type: "sub_agent_ended", threadId: C, status: "failed" },
        { type: "turn_complete", turnId: "t" }
      ],
      "failed"
    ],
    [
      "a sub-agent cancelled, then completion",
      [
        { type: "sub_agent_ended", threadId: C, status: "aborted" },
        { type: "turn_complete", turnId: "t" }
      ],
      "completed"
    ],
    ["an aborted turn", [{ type: "turn_aborted", reason: "interrupted" }], "aborted"],
    ["events that end with no turn end", [], "aborted"],
    ["an error, then events that end", [{ type: "error", message: "x" }], "failed"]
  ]
  for (const [name, events, status] of turnEnds) {
    it.effect(`§35 a child's outcome: ${name} is ${status}`, () =>
      Effect.gen(function* () {
        const scope = yield* Scope.make()
        const fake = yield* makeFakeAgent()
        const child = yield* fakeThread(fake.agent, scope)
        for (const msg of events) yield* fake.emit("t", msg)
        yield* fake.end
        assert.strictEqual((yield* turnOutcome(child)).status, status)
        yield* Scope.close(scope, Exit.void)
      }).pipe(Effect.provide(Parent.layerCallbacks({})))
    )
  }

  it("§14 first-seen order over parents' metadata, each thread once", () => {
    const meta = (threadId: ThreadId, parentThreadId?: ThreadId) => ({
      type: "meta" as const,
      threadId,
      createdAt: "",
      backend: "fake",
      cwd: "/",
      source:
        parentThreadId === undefined
          ? { type: "top_level" as const }
          : { type: "sub_agent" as const, parentThreadId, depth: 1 }
    })
    const children = childrenMap([meta(A), meta(C, B), meta(B, A), meta(C, B)])
    assert.deepStrictEqual(firstSeenDescendants(A, children), [A, B, C])
    assert.deepStrictEqual(firstSeenDescendants(C, children), [C])
  })
})

describe("ThreadManager trees", () => {
  it.scoped("cancelling the middle thread withdraws the grandchild's pending request and reports what it ended", () =>
    Effect.gen(function* () {
      const manager = yield* ThreadManager
      const registry = yield* ApprovalRegistry
      const backend = makeFakeBackend((o) => ({ askOnInput: o.threadId === C }))
      const sub = (parentThreadId: ThreadId, depth: number) => ({ type: "sub_agent" as const, parentThreadId, depth })
      yield* manager.start({ backend, threadId: A })
      yield* manager.start({ backend, threadId: B, source: sub(A, 1), delegate: { ancestors: [A] } })
      const grandchild = yield* manager.start({
        backend,
        threadId: C,
        source: sub(B, 2),
        delegate: { ancestors: [A, B], agentName: "tester" }
      })
      yield* grandchild.submit({ type: "user_input", items: [{ type: "text", text: "test it" }] })
      const pending = yield* waitForPending(registry)
      assert.deepStrictEqual(pending.path, [A, B, C])
      assert.strictEqual(pending.agentName, "tester")
      const report = yield* manager.cancel(B)
      assert.deepStrictEqual(report, {
        threads: [
          { threadId: C, outcome: "aborted" },
          { threadId: B, outcome: "completed" }
        ],
        withdrawn: [pending.requestId]
      })
      assert.deepStrictEqual(yield* registry.pending, [])
      assert.deepStrictEqual(yield* manager.list, [A])
      assert.strictEqual((yield* Effect.flip(registry.decide(pending.requestId, "approved")))._tag, "RequestNotPending")
      // Each ended thread's rollout says how it ended.
      const store = yield* RolloutStore
      const lastLine = (id: ThreadId) =>
        Effect.map(
          Effect.flatMap(store.findById(id), (found) => store.read(found.path)),
          (read) => read.lines.at(-1)
        )
      assert.deepInclude(yield* lastLine(C), { type: "terminal", state: "aborted" })
    }).pipe(Effect.provide(env()))
  )

  it.scoped("§35 a cancel names every thread of its tree, a child that ended on its own while it ran included", () =>
    Effect.gen(function* () {
      const manager = yield* ThreadManager
      const childDone = yield* Deferred.make<void>()
      const grandchildDone = yield* Deferred.make<void>()
      const root = makeFakeBackend()
      const kids = makeFakeBackend(() => ({ turnGate: Deferred.await(childDone) }))
      const grandkids = makeFakeBackend(() => ({ turnGate: Deferred.await(grandchildDone) }))
      yield* manager.start({ backend: root, threadId: A })
      const child = yield* Effect.fork(root.spawns[0]!.spawnChild!({ backend: kids, input: "child" }))
      yield* until(Effect.map(manager.list, (ids) => ids.length === 2))
      const childId = kids.spawns[0]!.threadId!
      yield* Effect.fork(kids.spawns[0]!.spawnChild!({ backend: grandkids, input: "grandchild" }))
      yield* until(Effect.map(manager.list, (ids) => ids.length === 3))
      const grandchildId = grandkids.spawns[0]!.threadId!
      // The cancel starts with the grandchild, whose turn holds out; meanwhile the child ends on its own.
      const cancelling = yield* Effect.fork(manager.cancel(A))
      yield* until(Effect.sync(() => grandkids.submitted.some((s) => s.submission.op.type === "interrupt")))
      yield* Deferred.succeed(childDone, undefined)
      assert.strictEqual((yield* Fiber.join(child)).status, "completed")
      yield* Deferred.succeed(grandchildDone, undefined)
      const report = yield* Fiber.join(cancelling)
      assert.deepStrictEqual(report.threads, [
        { threadId: grandchildId, outcome: "completed" },
        { threadId: childId, outcome: "completed" },
        { threadId: A, outcome: "completed" }
      ])
      assert.deepStrictEqual(yield* manager.list, [])
    }).pipe(Effect.provide(env()))
  )

  it.scoped("§35 cancelling an id no live thread has is ThreadNotFound, not an empty report", () =>
    Effect.gen(function* () {
      const manager = yield* ThreadManager
      const error = yield* Effect.flip(manager.cancel(C))
      assert.strictEqual(error._tag, "ThreadNotFound")
      assert.include(error.message, C)
    }).pipe(Effect.provide(env()))
  )

  it.scoped(
    "§35 a nested sub-agent that cannot start ends failed under its id, and its parent's turn counts as failed",
    () =>
      Effect.gen(function* () {
        const manager = yield* ThreadManager
        const kidMayEnd = yield* Deferred.make<void>()
        const root = makeFakeBackend()
        const kids = makeFakeBackend(() => ({ turnGate: Deferred.await(kidMayEnd) }))
        yield* manager.start({ backend: root, threadId: A })
        const child = yield* Effect.fork(root.spawns[0]!.spawnChild!({ backend: kids, input: "child" }))
        yield* until(Effect.map(manager.list, (ids) => ids.length === 2))
        // Under a tree cap of 1 the child holds the only slot while it waits: its own child cannot start.
        const refused = yield* Effect.flip(kids.spawns[0]!.spawnChild!({ backend: makeFakeBackend(), input: "gc" }))
        assert.match(refused.reason, /CapDeadlock|every slot of tree:/)
        assert.isDefined(refused.threadId) // the id the grandchild would have had names it in its parent's report
        // The child reports the failure as it would (an error), then its turn completes: that is not a success.
        const kid = kids.spawns[0]!.threadId!
        const thread = yield* manager.get(kid)
        yield* thread.delegate.report({ type: "sub_agent_ended", threadId: refused.threadId!, status: "failed" })
        yield* Deferred.succeed(kidMayEnd, undefined)
        assert.strictEqual((yield* Fiber.join(child)).status, "failed")
      }).pipe(Effect.provide(env({ perTree: 1 })))
  )

  it.scoped("a cap of 2 per parent with 5 spawns runs at most 2 at a time and completes all 5", () =>
    Effect.gen(function* () {
      const manager = yield* ThreadManager
      const root = makeFakeBackend()
      const permits = yield* Queue.unbounded<void>()
      const children = makeFakeBackend(() => ({ turnGate: Queue.take(permits) }))
      yield* manager.start({ backend: root, threadId: A })
      const spawnChild = root.spawns[0]!.spawnChild!
      const all = yield* Effect.fork(
        Effect.forEach([1, 2, 3, 4, 5], (i) => spawnChild({ backend: children, input: `job ${i}` }), {
          concurrency: "unbounded"
        })
      )
      const aliveReaches = (n: number) =>
        children.alive.changes.pipe(
          Stream.filter((alive) => alive === n),
          Stream.runHead
        )
      // Two run; three wait. Each finished job lets exactly one waiting job in.
      yield* aliveReaches(2)
      assert.strictEqual(children.spawns.length, 2)
      for (let done = 1; done <= 3; done++) {
        yield* Queue.offer(permits, undefined)
        yield* children.alive.changes.pipe(
          Stream.filter(() => children.spawns.length === 2 + done),
          Stream.runHead
        )
      }
      yield* Queue.offerAll(permits, [undefined, undefined])
      const outcomes = yield* Fiber.join(all)
      assert.deepStrictEqual(
        outcomes.map((o) => o.status),
        Array(5).fill("completed")
      )
      assert.deepStrictEqual(
        outcomes.map((o) => o.lastAgentMessage),
        [1, 2, 3, 4, 5].map((i) => `echo: job ${i}`)
      )
      assert.strictEqual(children.maxAlive(), 2)
      assert.strictEqual(children.released.length, 5) // every slot released on completion
      assert.deepStrictEqual(yield* manager.list, [A])
    }).pipe(Effect.provide(env({ perParent: 2 })))
  )

  it.scoped("a full spawn queue is a typed error, and an interrupted wait releases its place", () =>
    Effect.gen(function* () {
      const manager = yield* ThreadManager
      const root = makeFakeBackend()
      const permits = yield* Queue.unbounded<void>()
      const children = makeFakeBackend(() => ({ turnGate: Queue.take(permits) }))
      yield* manager.start({ backend: root, threadId: A })
      const spawnChild = root.spawns[0]!.spawnChild!
      const running = yield* Effect.fork(spawnChild({ backend: children, input: "one" }))
      yield* until(Effect.map(SubscriptionRef.get(children.alive), (n) => n === 1))
      const queued = yield* Effect.fork(spawnChild({ backend: children, input: "two" }))
      yield* until(Effect.map(manager.queued, (n) => n === 1))
      const refused = yield* Effect.flip(spawnChild({ backend: children, input: "three" }))
      assert.match(refused.reason, /queue limit 1/)
      yield* Fiber.interrupt(queued)
      assert.strictEqual(yield* manager.queued, 0)
      yield* Queue.offer(permits, undefined)
      assert.strictEqual((yield* Fiber.join(running)).status, "completed")
      const later = yield* Effect.fork(spawnChild({ backend: children, input: "four" }))
      yield* Queue.offer(permits, undefined)
      assert.strictEqual((yield* Fiber.join(later)).lastAgentMessage, "echo: four")
      assert.strictEqual(children.spawns.length, 2) // "two" never started, "three" was refused
    }).pipe(Effect.provide(env({ perTree: 1, queueLimit: 1 })))
  )

  it.scoped("a start that could only wait on parents waiting for their own children is refused, not hung", () =>
    Effect.gen(function* () {
      const manager = yield* ThreadManager
      const root = makeFakeBackend()
      const permits = yield* Queue.unbounded<void>()
      const kids = makeFakeBackend(() => ({ turnGate: Queue.take(permits) }))
      const grandkids = makeFakeBackend()
      yield* manager.start({ backend: root, threadId: A })
      const spawnChild = root.spawns[0]!.spawnChild!
      const first = yield* Effect.fork(spawnChild({ backend: kids, input: "one" }))
      const second = yield* Effect.fork(spawnChild({ backend: kids, input: "two" }))
      yield* until(Effect.map(SubscriptionRef.get(kids.alive), (n) => n === 2))
      // One child asks for a grandchild: the other child still works, so the grandchild queues.
      const queuedGrandchild = yield* Effect.fork(kids.spawns[0]!.spawnChild!({ backend: grandkids, input: "gc" }))
      yield* until(Effect.map(manager.queued, (n) => n === 1))
      // Now the other asks too: both slots are held by parents waiting for children, so it is refused.
      const refused = yield* Effect.flip(kids.spawns[1]!.spawnChild!({ backend: grandkids, input: "gc" }))
      assert.match(refused.reason, /every slot of tree:.* is held by a parent waiting for its children/)
      // When the children's turns end their slots come back, and the queued grandchild runs.
      yield* Queue.offerAll(permits, [undefined, undefined])
      assert.deepStrictEqual(
        [(yield* Fiber.join(first)).status, (yield* Fiber.join(second)).status],
        ["completed", "completed"]
      )
      assert.strictEqual((yield* Fiber.join(queuedGrandchild)).status, "completed")
      assert.strictEqual(grandkids.spawns.length, 1)
    }).pipe(Effect.provide(env({ perTree: 2 })))
  )

  it.scoped("interrupting a parent's wait for its child cancels the child", () =>
    Effect.gen(function* () {
      const manager = yield* ThreadManager
      const root = makeFakeBackend()
      const children = makeFakeBackend(() => ({ askOnInput: true }))
      yield* manager.start({ backend: root, threadId: A })
      const registry = yield* ApprovalRegistry
      const waiting = yield* Effect.fork(root.spawns[0]!.spawnChild!({ backend: children, input: "go", name: "kid" }))
      const pending = yield* waitForPending(registry)
      assert.strictEqual(pending.path.length, 2)
      yield* Fiber.interrupt(waiting)
      assert.deepStrictEqual(yield* manager.list, [A])
      assert.deepStrictEqual(yield* registry.pending, [])
      assert.strictEqual(children.released.length, 1)
    }).pipe(Effect.provide(env()))
  )
})

/** Waits until the registry holds a pending request and returns the first. */
const waitForPending = (registry: ApprovalRegistryService) =>
  registry.changes.pipe(
    Stream.filter((list) => list.length > 0),
    Stream.runHead,
    Effect.map((head) => Option.getOrThrow(head)[0]!)
  )

/** Waits (yielding, so file IO can finish) until `condition` holds. */
const until = (condition: Effect.Effect<boolean>) =>
  Effect.gen(function* () {
    for (let round = 0; round < 100_000; round++) {
      if (yield* condition) return
      yield* Effect.yieldNow()
    }
    return yield* Effect.dieMessage("the condition never held")
  })
