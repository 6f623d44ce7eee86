/**
 * Threads that last, on the real Codex CLI: a ThreadManager thread on the app-server backend keeps
 * deputy's thread id and Codex's side by side in its rollout, and resuming it by deputy's id (in a
 * new app-server process) continues Codex's conversation.
 */
import { CodexAppServer } from "@deputy/codex"
import { Parent, RolloutStore, type Thread, ThreadManager } from "@deputy/core"
import { isTurnEnd, userText } from "@deputy/protocol"
import { NodeContext } from "@effect/platform-node"
import { Effect, Layer, Logger, LogLevel, Option } from "effect"
import { describe, expect, it } from "vitest"
import { keyName, sandbox } from "./support/sandbox.js"

/** Runs one turn and returns its last agent message. */
const turn = (thread: Thread, text: string) =>
  Effect.gen(function* () {
    yield* thread.submit(userText(text))
    while (true) {
      const { msg } = yield* thread.delegate.take
      if (isTurnEnd(msg)) return msg.type === "turn_complete" ? msg.lastAgentMessage : undefined
    }
  })

describe("ThreadManager on the codex app-server backend", () => {
  it(
    "§20 §23 the rollout keeps both ids; resuming by deputy's id continues Codex's thread",
    { timeout: 60_000 },
    async () => {
      const box = await sandbox({
        responses: [
          { name: "first", match: { lastUserMessageContains: "banana" }, steps: [{ type: "message", text: "noted" }] },
          {
            name: "second",
            match: { lastUserMessageContains: "which fruit" },
            steps: [{ type: "message", text: "banana" }]
          }
        ]
      })
      const backend = CodexAppServer.backend({
        cwd: box.cwd,
        env: { HOME: box.home, CODEX_HOME: box.home, [keyName]: "dummy" },
        shutdownGrace: "1 second",
        approvalPolicy: "never",
        sandbox: "read-only"
      })
      const layer = ThreadManager.layer.pipe(
        Layer.provideMerge(RolloutStore.layer({ home: `${box.home}/deputy` })),
        Layer.provideMerge(Parent.layerCallbacks({})),
        Layer.provideMerge(NodeContext.layer)
      )
      const result = await Effect.runPromise(
        Effect.gen(function* () {
          const manager = yield* ThreadManager
          const store = yield* RolloutStore
          const first = yield* manager.start({ backend, cwd: box.cwd })
          const answer1 = yield* turn(first, "remember the word banana")
          const path = Option.getOrThrow(yield* first.rolloutPath)
          yield* manager.remove(first.threadId) // the app-server process ends with the thread
          const meta = (yield* store.read(path)).meta
          const again = yield* manager.resume({ backend, threadId: first.threadId })
          const answer2 = yield* turn(again, "which fruit did I name?")
          return { threadId: first.threadId, meta, answer1, answer2, resumedId: again.threadId }
        }).pipe(
          Effect.scoped,
          Effect.provide(layer),
          Logger.withMinimumLogLevel(LogLevel.Error),
          Effect.timeout("50 seconds")
        )
      )
      expect(result.answer1).toBe("noted")
      expect(result.meta.threadId).toBe(result.threadId)
      expect(result.meta.backendThreadId).toMatch(/^[0-9a-f-]{36}$/)
      expect(result.meta.backendThreadId).not.toBe(result.threadId)
      expect(result.resumedId).toBe(result.threadId)
      expect(result.answer2).toBe("banana")
      // The second model request carried the first turn's history: Codex resumed its own thread.
      expect(JSON.stringify(box.model.requests()[1]?.body)).toContain("remember the word banana")
    }
  )
})
