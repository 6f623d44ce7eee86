import { type ThreadId, userText } from "@deputy/protocol"
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Context, Effect, Exit, Fiber, Layer, Option, Scope, Stream, TestClock } from "effect"
import { Parent } from "../src/Parent.js"
import { resumeWithFallback } from "../src/Resume.js"
import { RolloutStore } from "../src/Rollout.js"
import { ThreadManager } from "../src/ThreadManager.js"
import { makeFakeBackend } from "./fixtures/FakeBackend.js"
import { turn } from "./fixtures/playTurn.js"

const ID = "0F8E2C4A-1B2C-4D5E-8F90-A1B2C3D4E5F6"
const CANONICAL = ID.toLowerCase() as ThreadId
const A = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa" as ThreadId
const B = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb" as ThreadId
const C = "cccccccc-cccc-4ccc-8ccc-cccccccccccc" as ThreadId

/** A store in a fresh temp home. */
const storeLayer = Layer.unwrapScoped(
  Effect.gen(function* () {
    const home = yield* (yield* FileSystem.FileSystem).makeTempDirectoryScoped({ prefix: "deputy-tm-" })
    return RolloutStore.layer({ home })
  })
)
const base = storeLayer.pipe(Layer.provideMerge(Parent.layerCallbacks({})), Layer.provideMerge(NodeContext.layer))
const env = ThreadManager.layer.pipe(Layer.provideMerge(base))

describe("ThreadManager", () => {
  it.scoped("§11 ids are canonicalised first; a duplicate live id and a non-UUID are typed errors", () =>
    Effect.gen(function* () {
      const manager = yield* ThreadManager
      const backend = makeFakeBackend()
      const thread = yield* manager.start({ backend, threadId: ID })
      assert.strictEqual(thread.threadId, CANONICAL)
      assert.strictEqual(
        (yield* Effect.flip(manager.start({ backend, threadId: CANONICAL })))._tag,
        "DuplicateThreadId"
      )
      const bad = yield* Effect.flip(manager.start({ backend, threadId: "thread-1" }))
      assert.strictEqual(bad._tag, "InvalidInput")
      assert.strictEqual(backend.spawns.length, 1)
    }).pipe(Effect.provide(env))
  )

  it.scoped("§11 concurrent starts with one id: exactly one wins and nothing is leaked", () =>
    Effect.gen(function* () {
      const manager = yield* ThreadManager
      const backend = makeFakeBackend()
      const results = yield* Effect.all(
        [ID, ID.toLowerCase(), ID.replaceAll("-", "")].map((threadId) =>
          Effect.either(manager.start({ backend, threadId }))
        ),
        { concurrency: "unbounded" }
      )
      assert.strictEqual(results.filter((r) => r._tag === "Right").length, 1)
      assert.deepStrictEqual(
        results.flatMap((r) => (r._tag === "Left" ? [r.left._tag] : [])),
        ["DuplicateThreadId", "DuplicateThreadId"]
      )
      // Every agent that was started is either registered or released.
      assert.strictEqual(backend.spawns.length - backend.released.length, (yield* manager.list).length)
    }).pipe(Effect.provide(env))
  )

  it.scoped(
    "§12 resuming a running thread returns it; another rollout path is an error; a stale entry is replaced",
    () =>
      Effect.gen(function* () {
        const manager = yield* ThreadManager
        const backend = makeFakeBackend()
        const thread = yield* manager.start({ backend, threadId: A })
        yield* turn(thread, "hi")
        const again = yield* manager.resume({ backend, threadId: A })
        assert.strictEqual(again, thread)
        const other = yield* manager.start({ backend, threadId: B })
        yield* turn(other, "hi")
        const otherPath = Option.getOrThrow(yield* other.rolloutPath)
        const mismatch = yield* Effect.flip(manager.resume({ backend, threadId: A, rolloutPath: otherPath }))
        assert.strictEqual(mismatch._tag, "RolloutPathMismatch")
        yield* thread.delegate.cancel
        assert.isFalse(yield* thread.isRunning)
        const replaced = yield* manager.resume({ backend, threadId: A })
        assert.notStrictEqual(replaced, thread)
        assert.isTrue(yield* replaced.isRunning)
        assert.deepStrictEqual(yield* turn(replaced, "back"), ["turn_started", "agent_message", "turn_complete"])
      }).pipe(Effect.provide(env))
  )

  it.scoped(
    "§13 shutdownAll reports completed, submit-failed and timed-out threads, sorted; only completed leave",
    () =>
      Effect.gen(function* () {
        const manager = yield* ThreadManager
        const backend = makeFakeBackend((o) => ({
          onShutdown: o.threadId === B ? "refuse" : o.threadId === A ? "ignore" : "complete"
        }))
        for (const threadId of [C, B, A]) yield* manager.start({ backend, threadId })
        const reporting = yield* Effect.fork(manager.shutdownAll("2 seconds"))
        yield* TestClock.adjust("2 seconds")
        const report = yield* Fiber.join(reporting)
        assert.deepStrictEqual(report, { completed: [C], submitFailed: [B], timedOut: [A] })
        assert.deepStrictEqual(yield* manager.list, [A, B])
        // The two left behind never answer: removing them waits out their drain bound on the test clock.
        const removing = yield* Effect.fork(Effect.all([manager.remove(A), manager.remove(B)], { concurrency: 2 }))
        yield* TestClock.adjust("500 millis")
        yield* Fiber.join(removing)
        assert.deepStrictEqual(yield* manager.list, [])
      }).pipe(Effect.provide(env))
  )

  it.scoped("§8 shutdownAll sends every thread Interrupt before Shutdown, then drains", () =>
    Effect.gen(function* () {
      const manager = yield* ThreadManager
      const backend = makeFakeBackend((o) => ({
        onShutdown: o.threadId === A ? "ignore" : "complete",
        turnGate: Effect.never
      }))
      for (const threadId of [A, B]) {
        const thread = yield* manager.start({ backend, threadId })
        yield* thread.submit(userText("work"))
      }
      yield* until(Effect.sync(() => backend.submitted.length === 2)) // both turns run
      const reporting = yield* Effect.fork(manager.shutdownAll("2 seconds"))
      // B ends at once (its last lines reach the disk, real IO); A never does and waits out its drain bound.
      const b = yield* manager.get(B)
      yield* until(Effect.map(b.isRunning, (running) => !running))
      yield* drainsWaiting(1) // A's drain bound is on the clock
      yield* TestClock.adjust("2 seconds")
      assert.deepStrictEqual(yield* Fiber.join(reporting), { completed: [B], submitFailed: [], timedOut: [A] })
      for (const threadId of [A, B]) {
        assert.deepStrictEqual(
          backend.submitted.filter((s) => s.threadId === threadId).map((s) => s.submission.op.type),
          ["user_input", "interrupt", "shutdown"]
        )
      }
    }).pipe(Effect.provide(env))
  )

  it.scoped("§8 closing the manager shuts six stuck threads down at once, within one drain bound", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const manager = Context.get(yield* Layer.buildWithScope(ThreadManager.layer, scope), ThreadManager)
      const backend = makeFakeBackend(() => ({ onShutdown: "ignore", turnGate: Effect.never }))
      for (let i = 0; i < 6; i++) {
        const thread = yield* manager.start({ backend })
        yield* thread.submit(userText("never ends"))
      }
      yield* until(Effect.sync(() => backend.submitted.length === 6)) // every turn runs
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      // Before any time passes, every agent has been told Interrupt, then Shutdown.
      const told = (type: string) =>
        new Set(backend.submitted.filter((s) => s.submission.op.type === type).map((s) => s.threadId))
      yield* until(Effect.sync(() => told("shutdown").size === 6))
      for (const spawn of backend.spawns) {
        const ops = backend.submitted.filter((s) => s.threadId === spawn.threadId).map((s) => s.submission.op.type)
        assert.deepStrictEqual(ops, ["user_input", "interrupt", "shutdown"])
      }
      // One drain bound (500 ms) lets them all go.
      yield* drainsWaiting(6)
      yield* TestClock.adjust("500 millis")
      yield* Fiber.join(closing)
      assert.strictEqual(backend.released.length, 6)
    }).pipe(Effect.provide(base))
  )

  it.scoped(
    "§14 subtree lists a three-level tree in first-seen order, including a child known only from a rollout",
    () =>
      Effect.gen(function* () {
        const manager = yield* ThreadManager
        const store = yield* RolloutStore
        const backend = makeFakeBackend()
        const sub = (parentThreadId: ThreadId, depth: number) => ({ type: "sub_agent" as const, parentThreadId, depth })
        yield* manager.start({ backend, threadId: A })
        yield* manager.start({ backend, threadId: B, source: sub(A, 1) })
        const grandchild = yield* manager.start({ backend, threadId: C, source: sub(B, 2) })
        // D lives only in a rollout (its thread has ended); E is live, a second child of A.
        const D = "dddddddd-dddd-4ddd-8ddd-dddddddddddd" as ThreadId
        const E = "eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee" as ThreadId
        yield* Effect.scoped(
          store.create(
            { threadId: D, createdAt: new Date().toISOString(), backend: "fake", cwd: "/", source: sub(C, 3) },
            { mode: "immediate" }
          )
        )
        yield* manager.start({ backend, threadId: E, source: sub(A, 1) })
        yield* turn(grandchild, "persist me")
        assert.deepStrictEqual(yield* manager.subtree(A), [A, B, E, C, D])
        assert.deepStrictEqual(yield* manager.subtree(C), [C, D])
      }).pipe(Effect.provide(env))
  )

  it.scoped("§15 subscribers see threads being created; §16 internal threads are hidden", () =>
    Effect.gen(function* () {
      const manager = yield* ThreadManager
      const backend = makeFakeBackend()
      const created = yield* manager.created
      yield* manager.start({ backend, threadId: A })
      yield* manager.start({ backend, threadId: B, internal: true })
      assert.deepStrictEqual(Chunk.toArray(yield* Stream.runCollect(Stream.take(created, 2))), [A, B])
      assert.deepStrictEqual(yield* manager.list, [A])
      assert.strictEqual((yield* Effect.flip(manager.get(B)))._tag, "ThreadNotFound")
      assert.strictEqual((yield* manager.get(A)).threadId, A)
    }).pipe(Effect.provide(env))
  )

  it.scoped("§15 a subscriber that never reads does not block spawns", () =>
    Effect.gen(function* () {
      const manager = yield* ThreadManager
      yield* manager.created // subscribed, never read
      const backend = makeFakeBackend()
      for (let i = 0; i < 1100; i++) yield* manager.start({ backend, internal: true })
      assert.strictEqual(backend.spawns.length, 1100)
    }).pipe(Effect.provide(env))
  )

  it.scoped("a long-lived manager keeps no op of a thread that left (flat memory)", () =>
    Effect.gen(function* () {
      const manager = yield* ThreadManager
      const backend = makeFakeBackend()
      for (let i = 0; i < 20; i++) {
        const thread = yield* manager.start({ backend })
        yield* turn(thread, `job ${i}`)
        yield* i % 2 === 0 ? manager.remove(thread.threadId) : manager.cancel(thread.threadId)
      }
      const live = yield* manager.start({ backend, threadId: A })
      yield* turn(live, "still here")
      assert.deepStrictEqual(
        (yield* manager.opLog).map((e) => [e.threadId, e.submission.op.type]),
        [[A, "user_input"]]
      )
    }).pipe(Effect.provide(env))
  )
})

describe("resumeWithFallback", () => {
  it.effect("§23 resumes when it can, falls back on failure or an unusable id, and says which", () =>
    Effect.gen(function* () {
      const start = Effect.succeed("fresh")
      const ok = yield* resumeWithFallback({ priorId: "t1", resume: (id) => Effect.succeed(id), start })
      assert.deepStrictEqual(ok, { value: "t1", resumed: true })
      const failed = yield* resumeWithFallback({
        priorId: "t1",
        resume: () => Effect.fail(new Error("no rollout found")),
        start
      })
      assert.deepStrictEqual(failed, { value: "fresh", resumed: false, fallbackReason: "no rollout found" })
      const empty = yield* resumeWithFallback({
        priorId: "t1",
        resume: () => Effect.succeed(""),
        start,
        usable: (id) => id !== ""
      })
      assert.isFalse(empty.resumed)
      const none = yield* resumeWithFallback({ priorId: "  ", resume: () => Effect.die("not called"), start })
      assert.deepStrictEqual(none.resumed, false)
    })
  )

  it.scoped("§23 resuming an unknown thread id through the manager falls back to a fresh thread", () =>
    Effect.gen(function* () {
      const manager = yield* ThreadManager
      const backend = makeFakeBackend()
      const outcome = yield* resumeWithFallback({
        priorId: C,
        resume: (threadId) => manager.resume({ backend, threadId }),
        start: manager.start({ backend })
      })
      assert.isFalse(outcome.resumed)
      assert.match(outcome.fallbackReason ?? "", /no rollout/i)
      assert.notStrictEqual(outcome.value.threadId, C)
    }).pipe(Effect.provide(env))
  )
})

/** Waits (yielding, so other fibers and file IO can run) until `condition` holds. */
const until = (condition: Effect.Effect<boolean>) =>
  Effect.gen(function* () {
    for (let round = 0; round < 100_000; round++) {
      if (yield* condition) return
      yield* Effect.yieldNow()
    }
    return yield* Effect.dieMessage("the condition never held")
  })

/** Waits until `count` drains wait for the default 500 ms bound on the test clock. */
const drainsWaiting = (count: number) =>
  Effect.gen(function* () {
    const bound = (yield* TestClock.currentTimeMillis) + 500
    yield* until(
      Effect.map(TestClock.sleeps(), (wakes) => Chunk.size(Chunk.filter(wakes, (w) => w === bound)) >= count)
    )
  })
