import type { ThreadId } from "@deputy/protocol"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope } from "effect"
import * as Caps from "../src/internal/Caps.js"

const ROOT = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa" as ThreadId
const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, "0")}` as ThreadId
const child = (n: number) => ({ threadId: id(n), backend: "fake", parentThreadId: ROOT, treeRoot: ROOT })

describe("Caps", () => {
  it.effect("a tree's pools, holders and waiting marks are pruned once its threads end (flat memory)", () =>
    Effect.gen(function* () {
      const caps = Caps.make({ perTree: 2, perParent: 2, perBackend: { fake: 5 } })
      for (let round = 0; round < 100; round++) {
        const scopes = yield* Effect.forEach([1, 2], () => Scope.make())
        yield* Effect.forEach([1, 2], (n, i) => Scope.extend(caps.take(child(round * 10 + n)), scopes[i]!))
        yield* Scope.extend(caps.waitForChild(ROOT), scopes[0]!)
        assert.deepStrictEqual(caps.size(), { pools: 3, trees: 1, waitingParents: 1 })
        yield* Effect.forEach(scopes, (scope) => Scope.close(scope, Exit.void))
      }
      assert.deepStrictEqual(caps.size(), { pools: 0, trees: 0, waitingParents: 0 })
    })
  )

  it.effect("a start that gives up its place in line leaves no pool behind", () =>
    Effect.gen(function* () {
      const caps = Caps.make({ perTree: 1 })
      const holder = yield* Scope.make()
      yield* Scope.extend(caps.take(child(1)), holder)
      const waiting = yield* Effect.fork(Effect.scoped(caps.take(child(2))))
      yield* Effect.yieldNow()
      assert.strictEqual(caps.queued(), 1)
      yield* Fiber.interrupt(waiting)
      yield* Scope.close(holder, Exit.void)
      assert.deepStrictEqual([caps.queued(), caps.size().pools, caps.size().trees], [0, 0, 0])
    })
  )

  it.effect("only parents waiting for their children hold the tree's slots: CapDeadlock, not a wait", () =>
    Effect.gen(function* () {
      const caps = Caps.make({ perTree: 1 })
      const scope = yield* Scope.make()
      yield* Scope.extend(caps.take(child(1)), scope)
      yield* Scope.extend(caps.waitForChild(id(1)), scope)
      const error = yield* Effect.flip(Effect.scoped(caps.take({ ...child(2), parentThreadId: id(1) })))
      assert.strictEqual(error._tag, "CapDeadlock")
      assert.include(error.message, `tree:${ROOT}`)
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(caps.size(), { pools: 0, trees: 0, waitingParents: 0 })
    })
  )

  it.effect("a full queue is SpawnQueueFull", () =>
    Effect.gen(function* () {
      const caps = Caps.make({ perBackend: { fake: 1 }, queueLimit: 1 })
      const scope = yield* Scope.make()
      yield* Scope.extend(caps.take({ threadId: id(1), backend: "fake" }), scope)
      const waiting = yield* Effect.fork(Effect.scoped(caps.take({ threadId: id(2), backend: "fake" })))
      yield* Effect.yieldNow()
      const error = yield* Effect.flip(Effect.scoped(caps.take({ threadId: id(3), backend: "fake" })))
      assert.strictEqual(error._tag, "SpawnQueueFull")
      yield* Scope.close(scope, Exit.void)
      yield* Fiber.join(waiting)
      assert.strictEqual(caps.size().pools, 0)
    })
  )
})
