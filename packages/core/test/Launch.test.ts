import { type ThreadId, userText } from "@deputy/protocol"
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Option, TestClock } from "effect"
import { Parent } from "../src/Parent.js"
import { RolloutStore } from "../src/Rollout.js"
import { ThreadManager } from "../src/ThreadManager.js"
import { makeFakeBackend } from "./fixtures/FakeBackend.js"
import { turn } from "./fixtures/playTurn.js"

const ID = "0F8E2C4A-1B2C-4D5E-8F90-A1B2C3D4E5F6"
const CANONICAL = ID.toLowerCase() as ThreadId
const A = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa" as ThreadId
const B = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb" as ThreadId

let rolloutReads = 0
/** A store in a fresh temp home that counts whole-file reads. */
const storeLayer = Layer.unwrapScoped(
  Effect.gen(function* () {
    const home = yield* (yield* FileSystem.FileSystem).makeTempDirectoryScoped({ prefix: "deputy-tm-" })
    return Layer.effect(
      RolloutStore,
      Effect.map(RolloutStore, (store) => ({
        ...store,
        read: (path: string) =>
          Effect.suspend(() => {
            rolloutReads++
            return store.read(path)
          })
      }))
    ).pipe(Layer.provide(RolloutStore.layer({ home })))
  })
)
const base = storeLayer.pipe(Layer.provideMerge(Parent.layerCallbacks({})), Layer.provideMerge(NodeContext.layer))
const env = ThreadManager.layer.pipe(Layer.provideMerge(base))

describe("Launch (start, resume, fork of one thread, through the manager)", () => {
  it.scoped("§10 the first event must be session_configured; otherwise the agent is shut down", () =>
    Effect.gen(function* () {
      const manager = yield* ThreadManager
      const backend = makeFakeBackend(() => ({ firstEvent: { type: "agent_message", message: "too early" } }))
      const error = yield* Effect.flip(manager.start({ backend, threadId: A }))
      assert.strictEqual(error._tag, "SessionConfiguredNotFirst")
      assert.deepStrictEqual(backend.released, [A])
      assert.deepStrictEqual(yield* manager.list, [])
    }).pipe(Effect.provide(env))
  )

  it.scoped("§10 an agent that says nothing fails the start after the bound, and is shut down", () =>
    Effect.gen(function* () {
      const manager = yield* ThreadManager
      const backend = makeFakeBackend(() => ({ firstEvent: null }))
      const starting = yield* Effect.fork(Effect.flip(manager.start({ backend, threadId: A })))
      yield* TestClock.adjust("60 seconds")
      const error = yield* Fiber.join(starting)
      assert.strictEqual(error._tag, "SessionConfiguredNotFirst")
      assert.match(error.message, /no event within 1m/)
      assert.deepStrictEqual(backend.released, [A])
    }).pipe(Effect.provide(env))
  )

  it.scoped("§11 a caller-supplied turn id must be a UUID and unique in the thread", () =>
    Effect.gen(function* () {
      const manager = yield* ThreadManager
      const thread = yield* manager.start({ backend: makeFakeBackend() })
      yield* turn(thread, "one", ID)
      const dup = yield* Effect.flip(thread.submit(userText("two"), { turnId: ID.toLowerCase() }))
      assert.strictEqual(dup._tag, "DuplicateTurnId")
      assert.strictEqual((yield* Effect.flip(thread.submit(userText("x"), { turnId: "t-1" })))._tag, "InvalidInput")
    }).pipe(Effect.provide(env))
  )

  it.scoped("§11 a duplicate turn id in a resumed thread is rejected after reading its rollout once", () =>
    Effect.gen(function* () {
      const manager = yield* ThreadManager
      const backend = makeFakeBackend()
      const first = yield* manager.start({ backend, threadId: A })
      yield* turn(first, "hello", ID)
      yield* manager.remove(A)
      rolloutReads = 0
      const resumed = yield* manager.resume({ backend, threadId: A })
      for (const spelling of [ID, ID.toLowerCase()]) {
        assert.strictEqual(
          (yield* Effect.flip(resumed.submit(userText("again"), { turnId: spelling })))._tag,
          "DuplicateTurnId"
        )
      }
      assert.strictEqual(rolloutReads, 1)
      assert.deepStrictEqual(
        backend.spawns[1]?.history?.flatMap((i) =>
          i.type === "submission" && i.submission.op.type === "user_input" ? [i.submission.id] : []
        ),
        [CANONICAL]
      )
    }).pipe(Effect.provide(env))
  )

  it.scoped("§20 through the manager: no rollout file before the first turn, then one that starts with metadata", () =>
    Effect.gen(function* () {
      const manager = yield* ThreadManager
      const fs = yield* FileSystem.FileSystem
      const thread = yield* manager.start({ backend: makeFakeBackend(), threadId: A })
      assert.isTrue(Option.isNone(yield* thread.rolloutPath))
      yield* turn(thread, "go")
      const path = Option.getOrThrow(yield* thread.rolloutPath)
      const first = JSON.parse((yield* fs.readFileString(path)).split("\n")[0]!)
      assert.strictEqual(first.type, "meta")
      assert.strictEqual(first.threadId, A)
      assert.deepStrictEqual(
        (yield* manager.opLog).map((e) => e.submission.op.type),
        ["user_input"]
      )
      yield* manager.remove(A)
      const last = (yield* fs.readFileString(path)).trimEnd().split("\n").at(-1)!
      assert.deepInclude(JSON.parse(last), { type: "terminal", state: "shutdown" })
    }).pipe(Effect.provide(env))
  )

  it.scoped("§17 fork truncates before the n-th user message and writes its rollout at once", () =>
    Effect.gen(function* () {
      const manager = yield* ThreadManager
      const backend = makeFakeBackend()
      const source = yield* manager.start({ backend, threadId: A })
      yield* turn(source, "first")
      yield* turn(source, "second")
      const fork = yield* manager.fork({
        backend,
        from: A,
        threadId: B,
        snapshot: { type: "truncate_before_nth_user_message", n: 1 }
      })
      assert.isTrue(Option.isSome(yield* fork.rolloutPath))
      assert.strictEqual(fork.meta.forkedFromId, A)
      const history = backend.spawns[1]?.history ?? []
      assert.deepStrictEqual(
        history.flatMap((i) => (i.type === "submission" ? [i.submission.op.type] : [])),
        ["user_input"]
      )
    }).pipe(Effect.provide(env))
  )
})
