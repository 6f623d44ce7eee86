// Finding 4 (§35): resume says what it repaired. Through the ThreadManager, a torn last line cut off on
// resume reaches the caller as a `warning` event and stays on the Thread as `repairs`; through the
// store, only a last line that does not parse as JSON counts as torn.
import { type Event, newThreadId, type RolloutMeta, userText } from "@deputy/protocol"
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { Parent } from "../src/Parent.js"
import { RolloutStore } from "../src/Rollout.js"
import { ThreadManager } from "../src/ThreadManager.js"
import { makeFakeBackend } from "./fixtures/FakeBackend.js"

const at = "2026-11-22T01:14:34.000Z"
const metaOf = (): Omit<RolloutMeta, "type"> => ({
  threadId: newThreadId(),
  createdAt: "2026-11-22T01:14:33.000Z",
  backend: "fake",
  cwd: "/work",
  source: { type: "top_level" }
})
const eventLine = (event: Event) => JSON.stringify({ type: "event", at, event })

const withHome = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  const home = yield* fs.makeTempDirectoryScoped({ prefix: "deputy-repairs-" })
  const store = yield* Effect.provide(RolloutStore, RolloutStore.layer({ home }))
  return { fs, home, store }
})

layer(NodeContext.layer, { excludeTestServices: true })("resume repairs", (it) => {
  it.scoped("§35 a torn last line cut off on resume is a warning event for the caller and a repair on the Thread", () =>
    Effect.gen(function* () {
      const { fs, home } = yield* withHome
      const env = ThreadManager.layer.pipe(
        Layer.provideMerge(RolloutStore.layer({ home })),
        Layer.provideMerge(Parent.layerCallbacks({})),
        Layer.provideMerge(NodeContext.layer)
      )
      const backend = makeFakeBackend()
      const { path, threadId } = yield* Effect.scoped(
        Effect.gen(function* () {
          const manager = yield* ThreadManager
          const thread = yield* manager.start({ backend })
          yield* thread.submit(userText("hello"))
          while ((yield* thread.delegate.take).msg.type !== "turn_complete") {}
          const path = Option.getOrThrow(yield* thread.rolloutPath)
          return { path, threadId: thread.threadId }
        }).pipe(Effect.provide(env))
      )
      // A crash mid-write leaves half a line (the manager's close wrote its terminal record before it).
      yield* fs.writeFileString(path, '{"type":"event","at":"2026-11', { flag: "a" })
      const thread = yield* Effect.gen(function* () {
        const manager = yield* ThreadManager
        return yield* manager.resume({ backend, threadId })
      }).pipe(Effect.provide(env))
      assert.strictEqual(thread.repairs.length, 1)
      assert.strictEqual(thread.repairs[0]?.kind, "torn_last_line")
      assert.include(thread.repairs[0]?.message ?? "", path)
      const seen: Array<Event> = []
      while (true) {
        const event = yield* thread.delegate.take
        seen.push(event)
        if (event.msg.type === "warning" || seen.length > 20) break
      }
      const warning = seen.at(-1)?.msg
      assert.deepStrictEqual(warning, { type: "warning", message: thread.repairs[0]!.message })
    })
  )

  it.scoped("§35 a complete last line of an unknown type that lost only its newline is kept, not cut off", () =>
    Effect.gen(function* () {
      const { fs, home, store } = yield* withHome
      const meta = metaOf()
      const file = `${home}/newer.jsonl`
      const known = eventLine({ id: "t", msg: { type: "agent_message", message: "known" } })
      const newer = JSON.stringify({ type: "event", at, event: { id: "t", msg: { type: "from_a_newer_version" } } })
      yield* fs.writeFileString(file, `${JSON.stringify({ type: "meta", ...meta })}\n${known}\n${newer}`)
      const read = yield* store.read(file)
      assert.deepStrictEqual(
        read.warnings.map((warning) => warning.kind),
        ["invalid_line"]
      )
      const repairs = yield* Effect.scoped(
        Effect.gen(function* () {
          const writer = yield* store.resume(file)
          yield* writer.event({ id: "t", msg: { type: "turn_complete", turnId: "t" } })
          return writer.repairs
        })
      )
      assert.deepStrictEqual(
        repairs.map((repair) => [repair.kind, repair.line]),
        [["unterminated_last_line", 3]]
      )
      const text = yield* fs.readFileString(file)
      assert.include(text, `${newer}\n`) // still on disk, now with its newline
      assert.strictEqual((yield* store.read(file)).lines.length, 2) // the known message and the new turn_complete
    })
  )
})
