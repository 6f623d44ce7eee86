// Trees of scripted sub-agents under a ThreadManager: approvals climb to the root's Parent with their path.
import {
  ApprovalRegistry,
  type ApprovalRegistryService,
  Parent,
  ParentLog,
  policy,
  RolloutStore,
  ThreadManager
} from "@deputy/core"
import type { Script } from "@deputy/protocol"
import { Scripted } from "@deputy/scripted"
import { FileSystem, Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option, Stream } from "effect"

const leaf: Script = {
  name: "leaf",
  turns: [
    {
      repeat: 1,
      steps: [
        { type: "exec", command: ["node", "-e", "console.log('leaf ran')"], needsApproval: true },
        { type: "exec", command: ["rm", "-rf", "/tmp/nothing"], needsApproval: true },
        { type: "message", text: "leaf done" }
      ]
    }
  ]
}
const middle: Script = {
  name: "middle",
  turns: [
    {
      repeat: 1,
      steps: [
        { type: "spawn", agents: [{ name: "leaf", script: leaf, input: "run the tests" }] },
        { type: "message", text: "middle heard: {{child.leaf}}" }
      ]
    }
  ]
}
const root: Script = {
  name: "root",
  turns: [
    {
      repeat: 1,
      steps: [
        { type: "spawn", agents: [{ name: "middle", script: middle, input: "delegate it" }] },
        { type: "message", text: "root heard: {{child.middle}}" }
      ]
    }
  ]
}

const env = Layer.unwrapScoped(
  Effect.gen(function* () {
    const home = yield* (yield* FileSystem.FileSystem).makeTempDirectoryScoped({ prefix: "deputy-tree-" })
    return ThreadManager.layer.pipe(Layer.provideMerge(RolloutStore.layer({ home })))
  })
).pipe(
  Layer.provideMerge(
    Parent.layerRecording.pipe(
      Layer.provide(Parent.layerPolicy(policy({ exec: [{ prefix: ["node"], decision: "approved" }] })))
    )
  ),
  Layer.provideMerge(NodeContext.layer)
)

describe("trees of sub-agents", () => {
  it.live("a grandchild's exec approval reaches the root policy with its path, and the decision goes back down", () =>
    Effect.gen(function* () {
      const manager = yield* ThreadManager
      const log = yield* ParentLog
      const thread = yield* manager.start({ backend: Scripted.backend(root), name: "root" })
      yield* thread.submit({ type: "user_input", items: [{ type: "text", text: "go" }] })
      const seen: Array<string> = []
      let last: string | undefined
      while (true) {
        const event = yield* thread.delegate.take
        seen.push(event.msg.type)
        if (event.msg.type === "turn_complete") {
          last = event.msg.lastAgentMessage
          break
        }
      }
      assert.strictEqual(last, "root heard: middle heard: leaf done")
      assert.includeMembers(seen, ["sub_agent_started", "sub_agent_ended"])
      const entries = yield* log.entries
      assert.deepStrictEqual(
        entries.map((e) => [
          e.request.kind === "exec" && e.request.command[0],
          e.request.agentName,
          e.outcome.type === "decided" && e.outcome.decision
        ]),
        [
          ["node", "leaf", "approved"],
          ["rm", "leaf", "denied"]
        ]
      )
      const path = entries[0]!.request.path
      assert.strictEqual(path.length, 3)
      assert.strictEqual(path[0], thread.threadId)
      // The tree is recorded: the root's subtree names the middle and the leaf, from their rollouts.
      assert.deepStrictEqual(yield* manager.subtree(thread.threadId), path)
      assert.deepStrictEqual(yield* manager.list, [thread.threadId])
    }).pipe(Effect.provide(env))
  )
})

describe("pending requests survive a crash", () => {
  const asker: Script = {
    name: "asker",
    turns: [
      {
        repeat: 1,
        steps: [
          {
            type: "exec",
            command: ["node", "-e", "require('fs').writeFileSync('marker.txt', 'ran')"],
            needsApproval: true
          },
          { type: "message", text: "done" }
        ]
      }
    ]
  }
  /** A manager whose root Parent is the registry over a policy that leaves everything to a person. */
  const managerIn = (home: string) =>
    ThreadManager.layer.pipe(
      Layer.provideMerge(RolloutStore.layer({ home })),
      Layer.provideMerge(ApprovalRegistry.layer.pipe(Layer.provide(Parent.layerPolicy(policy({ default: "ask" }))))),
      Layer.provideMerge(NodeContext.layer)
    )
  const firstPending = (registry: ApprovalRegistryService) =>
    registry.changes.pipe(
      Stream.filter((list) => list.length > 0),
      Stream.runHead,
      Effect.map((head) => Option.getOrThrow(head)[0]!)
    )

  it.live("a request pending when the process died is asked again after resume, and its answer is used", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const path = yield* Path.Path
      const cwd = yield* fs.makeTempDirectoryScoped({ prefix: "deputy-crash-cwd-" })
      const [home1, home2] = [yield* fs.makeTempDirectoryScoped(), yield* fs.makeTempDirectoryScoped()]
      const backend = Scripted.backend(asker, { cwd })

      // First life: the request is pending when we take a copy of the rollout, as a crash would leave it.
      const first = yield* Layer.build(managerIn(home1))
      const { file, requestId } = yield* Effect.gen(function* () {
        const manager = yield* ThreadManager
        const thread = yield* manager.start({ backend, cwd })
        yield* thread.submit({ type: "user_input", items: [{ type: "text", text: "go" }] })
        const pending = yield* firstPending(yield* ApprovalRegistry)
        return { file: Option.getOrThrow(yield* thread.rolloutPath), requestId: pending.requestId }
      }).pipe(Effect.provide(first))
      const copy = path.join(home2, "sessions", path.relative(path.join(home1, "sessions"), file))
      yield* fs.makeDirectory(path.dirname(copy), { recursive: true })
      yield* fs.copyFile(file, copy)

      // Second life, in another home: resuming asks the same request again; answering it finishes the turn.
      const second = yield* Layer.build(managerIn(home2))
      yield* Effect.gen(function* () {
        const manager = yield* ThreadManager
        const registry = yield* ApprovalRegistry
        const thread = yield* manager.resume({ backend, rolloutPath: copy })
        const again = yield* firstPending(registry)
        assert.strictEqual(again.requestId, requestId)
        assert.isFalse(yield* fs.exists(path.join(cwd, "marker.txt")))
        yield* registry.decide(requestId, "approved")
        while ((yield* thread.delegate.take).msg.type !== "turn_complete") {}
        assert.strictEqual(yield* fs.readFileString(path.join(cwd, "marker.txt")), "ran")
      }).pipe(Effect.provide(second))
    }).pipe(Effect.scoped, Effect.provide(NodeContext.layer))
  )
})
