import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import { Delegate, Parent, policy } from "@deputy/core"
import { type Event, newThreadId, userText } from "@deputy/protocol"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Option, Stream } from "effect"
import { CodexAppServer } from "../src/index.js"
import { groupMembers, startCrashDeputy, untilGroupGone } from "./crashDeputy.js"

const FAST_TURN_APP_SERVER = fileURLToPath(new URL("./fixtures/fake-app-server-fast-turn.mjs", import.meta.url))
// A full GC on demand, for the heap test (vitest runs without --expose-gc).
setFlagsFromString("--expose-gc")
const gc = runInNewContext("gc") as () => void

const FAKE_APP_SERVER = fileURLToPath(new URL("./fixtures/fake-app-server.mjs", import.meta.url))

/** A temp folder (cwd and CODEX_HOME), removed with the scope. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "deputy-codex-app-server-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

describe("CodexAppServer", () => {
  it.live("§25 a binary that cannot start fails the process with SpawnFailed naming it", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const codexPath = join(dir, "no-such-codex")
      const error = yield* Effect.flip(CodexAppServer.process({ codexPath, cwd: dir }))
      assert.strictEqual(error._tag, "SpawnFailed")
      assert.include(error.reason, `spawn ${codexPath} ENOENT`)
    }).pipe(Effect.scoped)
  )

  it.live(
    "§25 a turn that completes before its turn/start response is not left active: cancel ends nothing twice",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const log = join(dir, "methods.log")
        const agent = yield* CodexAppServer.backend({
          codexPath: FAST_TURN_APP_SERVER,
          cwd: dir,
          env: { FAKE_APP_SERVER_LOG: log }
        }).spawn({})
        const seen: Array<Event> = []
        const takeUntil = (done: (event: Event) => boolean) =>
          Effect.gen(function* () {
            while (true) {
              const next = yield* Effect.option(agent.events.take)
              if (Option.isNone(next)) return
              seen.push(next.value)
              if (done(next.value)) return
            }
          })
        yield* agent.submit({ id: "turn-a", op: userText("go") })
        yield* takeUntil((event) => event.msg.type === "turn_complete")
        // The fake played the whole turn before answering turn/start; now cancel as a delegate does (§8).
        yield* agent.submit({ id: "interrupt", op: { type: "interrupt" } })
        yield* agent.submit({ id: "shutdown", op: { type: "shutdown" } })
        yield* takeUntil(() => false)
        assert.deepStrictEqual(
          seen.map((event) => event.msg.type),
          ["session_configured", "turn_started", "agent_message", "turn_complete", "shutdown_complete"]
        )
        const methods = existsSync(log) ? readFileSync(log, "utf8").split("\n") : []
        assert.include(methods, "turn/start")
        assert.notInclude(methods, "turn/interrupt") // a finished turn is not interrupted
      }).pipe(Effect.scoped)
  )

  it.live("initialize asks Codex not to send the notifications deputy ignores, and no others", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const initialize = join(dir, "initialize.json")
      yield* CodexAppServer.process({
        codexPath: FAKE_APP_SERVER,
        cwd: dir,
        env: { FAKE_APP_SERVER_INITIALIZE: initialize }
      })
      const params = JSON.parse(readFileSync(initialize, "utf8")) as {
        capabilities: { experimentalApi: boolean; optOutNotificationMethods: Array<string> }
      }
      assert.isTrue(params.capabilities.experimentalApi)
      const optedOut = params.capabilities.optOutNotificationMethods
      assert.deepStrictEqual(optedOut, CodexAppServer.optedOutNotifications)
      // Per turn, a real Codex sends these three beside what deputy turns into events.
      for (const method of ["thread/status/changed", "thread/readState/changed", "account/rateLimits/updated"]) {
        assert.include(optedOut, method)
      }
      for (const method of [
        "turn/started",
        "turn/completed",
        "item/started",
        "item/completed",
        "item/agentMessage/delta",
        "item/reasoning/textDelta",
        "thread/tokenUsage/updated",
        "error",
        "warning",
        "configWarning"
      ]) {
        assert.notInclude(optedOut, method)
      }
    }).pipe(Effect.scoped)
  )

  it.live(
    "a long thread keeps nothing per ended turn: 1,000 more turns leave the heap where it was",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        // Turn ids of 4,000 characters: kept per turn, 1,000 turns would hold 4 MB (8 in UTF-16).
        const agent = yield* CodexAppServer.backend({
          codexPath: FAKE_APP_SERVER,
          cwd: dir,
          env: { FAKE_APP_SERVER_TURN_ID_LENGTH: "4000" }
        }).spawn({})
        const turns = (count: number, from: number) =>
          Effect.gen(function* () {
            for (let i = from; i < from + count; i++) {
              const id = `t${i}`
              yield* agent.submit({ id, op: userText("go") })
              while (true) {
                const event = yield* agent.events.take
                if (event.id === id && event.msg.type === "turn_complete") break
              }
            }
          })
        const heapAfterGc = () => {
          gc()
          return process.memoryUsage().heapUsed
        }
        yield* turns(200, 0) // code warmed up
        const before = heapAfterGc()
        yield* turns(1_000, 200)
        const grown = heapAfterGc() - before
        // What stays is compiled code (a few hundred KB at most); not the turns.
        assert.isBelow(grown, 1_500_000, `the heap grew by ${grown} bytes over 1,000 turns`)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live.skipIf(process.platform !== "linux")(
    "no orphans: a SIGKILLed deputy process takes its codex app-server's whole group with it",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const deputy = yield* startCrashDeputy("app-server", dir)
        // The real codex app-server (and whatever it started).
        assert.isAtLeast(groupMembers(deputy.group).length, 1)
        yield* deputy.crash
        assert.deepStrictEqual(yield* untilGroupGone(deputy.group), [])
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "§30 two approval requests under one item id: the second is declined at once, the first gets its own answer",
    () =>
      Effect.gen(function* () {
        // On main the answer for `ls` (approved) went to the `rm` request, and `ls` was never answered.
        const dir = yield* tempDir
        const log = join(dir, "responses.jsonl")
        const exec = (command: string) => ({
          method: "item/commandExecution/requestApproval",
          params: { itemId: "item-1", command, cwd: dir }
        })
        const backend = CodexAppServer.backend({
          codexPath: FAKE_APP_SERVER,
          cwd: dir,
          env: {
            FAKE_APP_SERVER_REQUESTS: JSON.stringify([exec("ls"), exec("rm -rf /important")]),
            FAKE_APP_SERVER_LOG: log
          }
        })
        const delegate = yield* Delegate.oneShot(backend.spawn({ threadId: newThreadId() }), {
          type: "user_input",
          items: [{ type: "text", text: "go" }]
        }).pipe(Effect.provide(Parent.layerPolicy(policy({ exec: [{ prefix: ["ls"], decision: "approved" }] }))))
        const seen = Chunk.toArray(yield* Stream.runCollect(delegate.events)).map((event) => event.msg)
        const responses = readFileSync(log, "utf8")
          .trim()
          .split("\n")
          .map((line) => JSON.parse(line) as { id: number; result: { decision: string } })
          .sort((a, b) => a.id - b.id)
        assert.deepStrictEqual(
          responses.map((r) => [r.id, r.result.decision]),
          [
            [0, "accept"],
            [1, "decline"]
          ]
        )
        const error = seen.find((msg) => msg.type === "error")
        assert.include(error?.type === "error" ? error.message : "", "item-1 is still pending")
        assert.strictEqual(seen.at(-1)?.type, "turn_complete")
      }).pipe(Effect.scoped)
  )

  it.live("§36 a stdout line past the configured bound ends the thread with an error naming the bound", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const backend = CodexAppServer.backend({
        codexPath: FAKE_APP_SERVER,
        cwd: dir,
        maxLineLength: 10_000,
        env: { FAKE_APP_SERVER_LONG_LINE: "50000" }
      })
      const delegate = yield* Delegate.oneShot(backend.spawn({ threadId: newThreadId() }), "go").pipe(
        Effect.provide(Parent.layerCallbacks({}))
      )
      const seen = Chunk.toArray(yield* Stream.runCollect(delegate.events)).map((event) => event.msg)
      const error = seen.find((msg) => msg.type === "error")
      assert.include(error?.type === "error" ? error.message : "", "10000")
      assert.strictEqual(seen.at(-1)?.type, "turn_aborted")
    }).pipe(Effect.scoped)
  )
})
