/**
 * The codex-exec backend running the real Codex CLI (the root devDependency @openai/codex 0.169) against
 * @deputy/mock-model, offline, driven through `Delegate.interactive`. Each test gets a fresh CODEX_HOME,
 * deputy home and cwd; the child sees only the allowlisted environment plus the mock's dummy key.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { CodexExec } from "@deputy/codex"
import { Delegate, Parent } from "@deputy/core"
import { MockModel, type ScenarioInput } from "@deputy/mock-model"
import { type Event, isTurnEnd, type ThreadId, userText } from "@deputy/protocol"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"

const KEY = "DEPUTY_MOCK_MODEL_KEY"
const THREAD = "6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b" as ThreadId
const TURN_BOUND = "45 seconds"

/** A mock model, a CODEX_HOME written for it, a deputy home and a cwd, all gone with the scope. */
const sandbox = (scenario: ScenarioInput) =>
  Effect.gen(function* () {
    const root = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "deputy-codex-exec-real-"))),
      (path) => Effect.sync(() => rmSync(path, { recursive: true, force: true }))
    )
    const model = yield* MockModel.scoped(scenario)
    const codexHome = join(root, "codex-home")
    const cwd = join(root, "cwd")
    yield* Effect.promise(() => model.writeCodexConfig(codexHome, { envKey: KEY }))
    yield* Effect.sync(() => mkdirSync(cwd))
    const options: CodexExec.Options = {
      approvalMode: "never-ask",
      sandbox: "read-only",
      codexHome,
      home: join(root, "deputy-home"),
      env: { HOME: codexHome, [KEY]: "dummy" }
    }
    return { model, cwd, options, pointer: join(root, "deputy-home", "codex-exec", THREAD) }
  })

/** The caller's events of one turn, through its end, within the bound. */
const turnEvents = (delegate: Delegate.Delegate, text: string) =>
  Effect.gen(function* () {
    const turnId = yield* delegate.submit(userText(text))
    const seen: Array<Event> = []
    while (true) {
      const event = yield* delegate.take
      seen.push(event)
      if (event.id === turnId && isTurnEnd(event.msg)) return seen.map((e) => e.msg)
    }
  }).pipe(Effect.timeout(TURN_BOUND))

const threadIdOf = (body: unknown): string | undefined => {
  const metadata = (body as { client_metadata?: Record<string, string> }).client_metadata?.["x-codex-turn-metadata"]
  return metadata === undefined ? undefined : (JSON.parse(metadata) as { thread_id?: string }).thread_id
}

layer(Layer.merge(NodeContext.layer, Parent.layerCallbacks({})), { excludeTestServices: true })(
  "codex-exec against the real Codex CLI",
  (it) => {
    it.scoped(
      "§26 two turns: the second runs `exec resume <id>` and the model sees the first turn's history",
      () =>
        Effect.gen(function* () {
          const box = yield* sandbox({
            responses: [
              {
                name: "first",
                match: { lastUserMessageContains: "first question" },
                steps: [{ type: "message", text: "first answer" }]
              },
              {
                name: "second",
                match: { lastUserMessageContains: "second question" },
                steps: [{ type: "message", text: "second answer" }]
              }
            ]
          })
          const backend = yield* CodexExec.backend(box.options)
          const delegate = yield* Delegate.interactive(backend.spawn({ threadId: THREAD, cwd: box.cwd }))

          const first = yield* turnEvents(delegate, "first question")
          assert.deepInclude(first, { type: "agent_message", message: "first answer" })
          assert.strictEqual(first.at(-1)?.type, "turn_complete")
          const codexThread = readFileSync(box.pointer, "utf8").trim()
          assert.match(codexThread, /^[0-9a-f-]{36}$/)

          const second = yield* turnEvents(delegate, "second question")
          assert.deepInclude(second, { type: "agent_message", message: "second answer" })
          assert.deepStrictEqual(second.at(-1), {
            type: "turn_complete",
            turnId: (second[0] as { turnId: string }).turnId,
            lastAgentMessage: "second answer"
          })
          assert.isFalse(second.some((msg) => msg.type === "warning" && msg.message.includes("fresh")))

          const requests = box.model.requests()
          assert.deepStrictEqual(
            requests.map((r) => r.response),
            ["first", "second"]
          )
          // Resumed, not restarted: the same Codex thread, and the first turn's exchange is in the second request.
          assert.deepStrictEqual(
            requests.map((r) => threadIdOf(r.body)),
            [codexThread, codexThread]
          )
          const history = JSON.stringify((requests[1]?.body as { input: unknown }).input)
          assert.include(history, "first question")
          assert.include(history, "first answer")
          assert.strictEqual(readFileSync(box.pointer, "utf8").trim(), codexThread)
          yield* delegate.cancel
        }),
      { timeout: 120_000 }
    )

    it.scoped(
      "§23 an unknown Codex thread id: exec resume fails, a fresh exec runs the turn, and a warning says so",
      () =>
        Effect.gen(function* () {
          const box = yield* sandbox({
            responses: [{ name: "only", steps: [{ type: "message", text: "fresh answer" }] }]
          })
          const stale = "019e0000-0000-7000-8000-000000000000"
          const backend = yield* CodexExec.backend(box.options)
          const delegate = yield* Delegate.interactive(
            backend.spawn({ threadId: THREAD, cwd: box.cwd, backendThreadId: stale })
          )
          const events = yield* turnEvents(delegate, "do it anyway")
          const warning = events.find((msg) => msg.type === "warning" && msg.message.startsWith("resuming"))
          assert.include(warning?.type === "warning" ? warning.message : "", `no rollout found for thread id ${stale}`)
          assert.deepInclude(events, { type: "agent_message", message: "fresh answer" })
          assert.strictEqual(events.at(-1)?.type, "turn_complete")
          const fresh = readFileSync(box.pointer, "utf8").trim()
          assert.notStrictEqual(fresh, stale)
          assert.deepStrictEqual(
            box.model.requests().map((r) => threadIdOf(r.body)),
            [fresh]
          )
          yield* delegate.cancel
        }),
      { timeout: 120_000 }
    )
  }
)
