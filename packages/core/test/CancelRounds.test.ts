/**
 * §35: a cancel's report names every thread of its tree that was live while it ran. A sub-agent whose
 * start had passed the "tree being cancelled" check before the cancel began registers after the cancel
 * looked at the registry; if it then ends on its own before the next round looks, no round ever sees it.
 */
import type { ThreadId } from "@deputy/protocol"
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer } from "effect"
import type { Backend } from "../src/Agent.js"
import { ApprovalRegistry } from "../src/ApprovalRegistry.js"
import { Parent } from "../src/Parent.js"
import { policy } from "../src/Policy.js"
import { RolloutStore } from "../src/Rollout.js"
import { ThreadManager } from "../src/ThreadManager.js"
import { makeFakeBackend } from "./fixtures/FakeBackend.js"

const A = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa" as ThreadId

const env = ThreadManager.layerWith({}).pipe(
  Layer.provideMerge(
    Layer.unwrapScoped(
      Effect.map(
        Effect.flatMap(FileSystem.FileSystem, (fs) => fs.makeTempDirectoryScoped({ prefix: "deputy-rounds-" })),
        (home) => RolloutStore.layer({ home })
      )
    )
  ),
  Layer.provideMerge(ApprovalRegistry.layer.pipe(Layer.provide(Parent.layerPolicy(policy({ default: "ask" }))))),
  Layer.provideMerge(NodeContext.layer)
)

describe("cancel rounds", () => {
  it.scoped("§35 a sub-agent that starts and ends between two rounds of its tree's cancel is in the report", () =>
    Effect.gen(function* () {
      const manager = yield* ThreadManager
      const rootMayEnd = yield* Deferred.make<void>()
      const rootAskedToShutDown = yield* Deferred.make<void>()
      const childSpawning = yield* Deferred.make<void>()
      const childMayStart = yield* Deferred.make<void>()
      // The root takes its time to shut down, so its cancel (round one) lasts until the test says.
      const fake = makeFakeBackend()
      const root: Backend = {
        name: fake.name,
        spawn: (options) =>
          Effect.map(fake.spawn(options), (agent) => ({
            ...agent,
            submit: (submission) =>
              submission.op.type === "shutdown"
                ? Deferred.succeed(rootAskedToShutDown, undefined).pipe(
                    Effect.zipRight(
                      Effect.forkDaemon(Effect.zipRight(Deferred.await(rootMayEnd), agent.submit(submission)))
                    ),
                    Effect.asVoid
                  )
                : agent.submit(submission)
          }))
      }
      const kids = makeFakeBackend()
      // The child's start has passed the manager's checks and waits in its backend's spawn.
      const slowKids: Backend = {
        name: kids.name,
        spawn: (options) =>
          Deferred.succeed(childSpawning, undefined).pipe(
            Effect.zipRight(Deferred.await(childMayStart)),
            Effect.zipRight(kids.spawn(options))
          )
      }
      yield* manager.start({ backend: root, threadId: A })
      const child = yield* Effect.fork(fake.spawns[0]!.spawnChild!({ backend: slowKids, input: "quick" }))
      yield* Deferred.await(childSpawning)

      // The cancel looks at the tree (the child is not registered yet) and starts on the root.
      const cancelling = yield* Effect.fork(manager.cancel(A))
      yield* Deferred.await(rootAskedToShutDown)
      // Meanwhile the child registers, runs its one turn and ends on its own.
      yield* Deferred.succeed(childMayStart, undefined)
      assert.strictEqual((yield* Fiber.join(child)).status, "completed")
      const childId = kids.spawns[0]!.threadId!
      yield* Deferred.succeed(rootMayEnd, undefined)

      const report = yield* Fiber.join(cancelling)
      assert.deepStrictEqual(report.threads, [
        { threadId: A, outcome: "completed" },
        { threadId: childId, outcome: "completed" }
      ])
      assert.deepStrictEqual(yield* manager.list, [])
    }).pipe(Effect.provide(env))
  )
})
