import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Chunk, Deferred, Effect, Exit, Layer, Stream } from "effect"
import { Delegate, Parent, policy, ThreadManager } from "../src/core.js"
import { userText } from "../src/protocol.js"
import { Scripted } from "../src/scripted.js"

const parent = Parent.layerPolicy(policy({ exec: [{ prefix: ["echo"], decision: "approved" }] }))
const env = Layer.merge(parent, NodeContext.layer)

// A literal with every default left out: no `repeat`, no `needsApproval`.
const script = {
  turns: [
    {
      steps: [
        { type: "exec" as const, command: ["echo", "hi"] },
        { type: "message" as const, text: "done" }
      ]
    }
  ]
}

const lastMessage = (delegate: Delegate.Delegate) =>
  Effect.map(Stream.runCollect(delegate.events), (events) => {
    const last = Chunk.last(events)
    return last._tag === "Some" && last.value.msg.type === "turn_complete" ? last.value.msg.lastAgentMessage : undefined
  })

describe("the Effect API, smoothed", () => {
  it.live("Delegate.oneShot takes text, userText(), or a user_input op; scripts may leave defaults out", () =>
    Effect.gen(function* () {
      for (const input of [
        "go",
        userText("go"),
        { type: "user_input" as const, items: [{ type: "text" as const, text: "go" }] }
      ]) {
        const delegate = yield* Delegate.oneShot(Scripted.spawn(script), input)
        assert.strictEqual(yield* lastMessage(delegate), "done")
      }
    }).pipe(Effect.scoped, Effect.provide(env))
  )

  it.live("events and take cannot both read a delegate at once: the second reader dies, naming the first", () =>
    Effect.gen(function* () {
      const waits = { turns: [{ steps: [{ type: "sleep" as const, ms: 600_000 }] }] }
      const delegate = yield* Delegate.oneShot(Scripted.spawn(waits), "go")
      const reading = yield* Deferred.make<void>()
      yield* Effect.fork(Stream.runDrain(Stream.tap(delegate.events, () => Deferred.succeed(reading, undefined))))
      yield* Deferred.await(reading)
      const stolen = yield* Effect.exit(delegate.take)
      assert.isTrue(Exit.isFailure(stolen))
      assert.match(String(Exit.isFailure(stolen) ? Cause.pretty(stolen.cause) : ""), /EventsAlreadyRead/)
      const second = yield* Effect.exit(Stream.runHead(delegate.events))
      assert.match(String(Exit.isFailure(second) ? Cause.pretty(second.cause) : ""), /EventsAlreadyRead/)
    }).pipe(Effect.scoped, Effect.provide(env))
  )

  it.live("ThreadManager.layerHome({ home }) brings its rollout store", () =>
    Effect.gen(function* () {
      const home = yield* Effect.promise(() => mkdtemp(join(tmpdir(), "deputy-layer-")))
      yield* Effect.addFinalizer(() => Effect.promise(() => rm(home, { recursive: true, force: true })))
      const ids = yield* Effect.gen(function* () {
        const manager = yield* ThreadManager
        const thread = yield* manager.start({ backend: Scripted.backend(script) })
        yield* thread.submit(userText("go"))
        return yield* manager.list
      }).pipe(Effect.provide(ThreadManager.layerHome({ home })), Effect.scoped)
      assert.lengthOf(ids, 1)
    }).pipe(Effect.scoped, Effect.provide(env))
  )
})
