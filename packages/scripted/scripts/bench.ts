// Events per second read straight from a scripted agent's mailbox (§24). Run: pnpm tsx --conditions=@deputy/source packages/scripted/scripts/bench.ts [events]
import { Script, userText } from "@deputy/protocol"
import { NodeContext } from "@effect/platform-node"
import { Chunk, Effect } from "effect"
import type { z } from "zod"
import { Scripted } from "../src/index.js"

const total = Number(process.argv[2] ?? 1_000_000)

const cases: Record<string, z.input<typeof Script>> = {
  "one message, many deltas": { turns: [{ steps: [{ type: "message", text: "x".repeat(total), deltas: total }] }] },
  "repeat of small steps": {
    turns: [
      {
        repeat: total / 4,
        steps: [
          { type: "reasoning", text: "hmm" },
          { type: "message", text: "hello", deltas: 2 },
          { type: "token_count", input: 1, output: 1 }
        ]
      }
    ]
  }
}

const measure = (name: string, input: z.input<typeof Script>, capacity?: number) =>
  Effect.scoped(
    Effect.gen(function* () {
      const agent = yield* Scripted.spawn(
        Script.parse(input),
        capacity === undefined ? {} : { eventsCapacity: capacity }
      )
      yield* agent.events.take // session_configured
      const start = performance.now()
      yield* agent.submit({ id: "t1", op: userText("go") })
      let count = 0
      while (true) {
        const [chunk] = yield* agent.events.takeAll
        count += chunk.length
        if (Chunk.unsafeLast(chunk).msg.type === "turn_complete") break
      }
      const seconds = (performance.now() - start) / 1000
      console.log(
        `${name} (capacity ${capacity ?? Scripted.defaultEventsCapacity}): ${count} events in ${seconds.toFixed(2)} s = ${Math.round(count / seconds).toLocaleString("en")} events/s`
      )
    })
  )

await Effect.runPromise(
  Effect.gen(function* () {
    for (const [name, input] of Object.entries(cases)) {
      yield* measure(name, input)
      yield* measure(name, input, 64)
    }
  }).pipe(Effect.provide(NodeContext.layer))
)
