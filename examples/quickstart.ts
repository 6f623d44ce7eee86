import { Delegate, Parent, policy } from "@deputy/core"
import { parseScript, Scripted } from "@deputy/scripted"
import { NodeContext } from "@effect/platform-node"
import { Chunk, Effect, Layer, Stream } from "effect"

const script = `
turns:
  - steps:
      - { type: exec, command: [echo, hello from the sub-agent] }
      - { type: exec, command: [curl, example.com] }
      - { type: message, text: done }
`

// The parent approves `echo`, and denies everything else: nothing is approved by default.
const parent = Parent.layerPolicy(policy({ exec: [{ prefix: ["echo"], decision: "approved" }] }))

export const quickstart = Effect.gen(function* () {
  const agent = Scripted.spawn(yield* parseScript(script, "inline.yaml"))
  const delegate = yield* Delegate.oneShot(agent, { type: "user_input", items: [{ type: "text", text: "go" }] })
  const events = yield* Stream.runCollect(delegate.events) // ends after the turn: one-shot
  return Chunk.toArray(events).map((event) => event.msg)
}).pipe(Effect.scoped, Effect.provide(Layer.merge(parent, NodeContext.layer)))
