/**
 * The `codex` app-server backend (§25) driven through core's Delegate, against the real Codex 0.169
 * binary and @deputy/mock-model, offline. Each test gets a fresh CODEX_HOME and cwd; every process is
 * killed by the test's scope (and its group by the backend), all removed after the test.
 */
import { existsSync } from "node:fs"
import { readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { type AppServerProcess, CodexAppServer, type ProcessOptions, type ThreadOptions } from "@deputy/codex"
import { Delegate, Parent, type ParentCallbacks, type SpawnOptions } from "@deputy/core"
import type { ScenarioInput } from "@deputy/mock-model"
import { type Event, type EventMsg, isTurnEnd, type Submission, userText } from "@deputy/protocol"
import { Chunk, Deferred, Effect, type Scope, Stream } from "effect"
import { describe, expect, it } from "vitest"
import { keyName, type Sandbox, sandbox } from "./support/sandbox.js"

const TEST_TIMEOUT = 30_000

const processOptions = (box: Sandbox, extra: ProcessOptions = {}): ProcessOptions => ({
  cwd: box.cwd,
  env: { HOME: box.home, CODEX_HOME: box.home, [keyName]: "dummy" },
  shutdownGrace: "1 second",
  ...extra
})

const backendFor = (box: Sandbox, thread: ThreadOptions = {}, extra: ProcessOptions = {}) =>
  CodexAppServer.backend({ ...processOptions(box, extra), approvalPolicy: "never", sandbox: "read-only", ...thread })

/** Runs a scoped test body with a callbacks parent, bounded in time; the scope kills every process. */
const run = <A, E>(body: Effect.Effect<A, E, Scope.Scope | Parent>, parent: ParentCallbacks = {}) =>
  Effect.runPromise(
    body.pipe(Effect.scoped, Effect.provide(Parent.layerCallbacks(parent)), Effect.timeout("25 seconds"))
  )

/** Every event the agent emitted (filtered ones too), for assertions. */
const recorder = () => {
  const all: Array<Event> = []
  return { all, onEvents: (events: ReadonlyArray<Event>) => Effect.sync(() => void all.push(...events)) }
}

const msgs = (events: ReadonlyArray<Event>): Array<EventMsg> => events.map((e) => e.msg)
const ofType = <T extends EventMsg["type"]>(events: ReadonlyArray<Event>, type: T) =>
  msgs(events).filter((m): m is Extract<EventMsg, { type: T }> => m.type === type)

/** Takes the caller's events until a turn ends; returns them. */
const untilTurnEnd = (delegate: Delegate.Delegate) =>
  Effect.gen(function* () {
    const seen: Array<Event> = []
    while (true) {
      const event = yield* delegate.take
      seen.push(event)
      if (isTurnEnd(event.msg)) return seen
    }
  })

/** Takes the caller's events up to the first of `type`; returns them. */
const untilType = (delegate: Delegate.Delegate, type: EventMsg["type"]) =>
  Effect.gen(function* () {
    const seen: Array<Event> = []
    while (true) {
      const event = yield* delegate.take
      seen.push(event)
      if (event.msg.type === type) return seen
    }
  })

const oneShotAll = (
  spawn: ReturnType<ReturnType<typeof backendFor>["spawn"]>,
  text: string,
  onEvents?: (events: ReadonlyArray<Event>) => Effect.Effect<void>
) =>
  Effect.gen(function* () {
    const delegate = yield* Delegate.oneShot(
      spawn,
      userText(text) as Extract<ReturnType<typeof userText>, { type: "user_input" }>,
      {
        ...(onEvents === undefined ? {} : { onEvents })
      }
    )
    return Chunk.toReadonlyArray(yield* Stream.runCollect(delegate.events))
  })

const exitOfPid = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return false
  } catch {
    return true
  }
}

describe("codex app-server backend (real Codex 0.169 + mock model)", () => {
  it(
    "§25 one turn: session_configured first, the assistant message, turn_complete",
    { timeout: TEST_TIMEOUT },
    async () => {
      const box = await sandbox({ responses: [{ steps: [{ type: "message", text: "Hello from codex", deltas: 3 }] }] })
      const rec = recorder()
      const events = await run(oneShotAll(backendFor(box).spawn({ cwd: box.cwd }), "say hello", rec.onEvents))
      expect(rec.all[0]?.msg).toMatchObject({ type: "session_configured", backend: "codex", model: "mock-model" })
      const configured = ofType(rec.all, "session_configured")[0]
      expect(configured?.backendThreadId).toMatch(/^[0-9a-f-]{36}$/)
      expect(configured?.backendThreadId).not.toBe(configured?.threadId)
      expect(ofType(events, "agent_message").map((m) => m.message)).toEqual(["Hello from codex"])
      expect(
        ofType(rec.all, "agent_message_delta")
          .map((m) => m.delta)
          .join("")
      ).toBe("Hello from codex")
      expect(ofType(rec.all, "token_count")[0]).toMatchObject({ inputTokens: 100, outputTokens: 10 })
      const started = ofType(events, "turn_started")[0]
      const completed = ofType(events, "turn_complete")[0]
      expect(completed).toMatchObject({ turnId: started?.turnId, lastAgentMessage: "Hello from codex" })
      expect(ofType(rec.all, "shutdown_complete")).toHaveLength(1)
    }
  )

  const execScenario = (name: string): ScenarioInput => ({
    responses: [
      { name: "run", steps: [{ type: "exec_command", callId: "call-touch", cmd: `printf deputy > ${name}` }] },
      { name: "after", match: { callOutput: "call-touch" }, steps: [{ type: "message", text: "done" }] }
    ]
  })

  it("§3 an exec approval approved by the parent really runs the command", { timeout: TEST_TIMEOUT }, async () => {
    const box = await sandbox(execScenario("approved.txt"))
    const asked: Array<ReadonlyArray<string>> = []
    const rec = recorder()
    const events = await run(
      oneShotAll(
        backendFor(box, { approvalPolicy: "untrusted", sandbox: "workspace-write" }).spawn({ cwd: box.cwd }),
        "write it",
        rec.onEvents
      ),
      {
        execApproval: (request) => {
          asked.push(request.command)
          return "approved"
        }
      }
    )
    expect(asked).toHaveLength(1)
    expect(asked[0]?.join(" ")).toContain("printf deputy > approved.txt")
    expect(await readFile(join(box.cwd, "approved.txt"), "utf8")).toBe("deputy")
    const request = ofType(rec.all, "exec_approval_request")[0]
    expect(request).toMatchObject({ callId: "call-touch", cwd: box.cwd })
    const begins = ofType(rec.all, "exec_command_begin").map((m) => m.callId)
    const ends = ofType(rec.all, "exec_command_end")
    expect(begins).toEqual(["call-touch"])
    expect(ends).toMatchObject([{ callId: "call-touch", exitCode: 0 }])
    expect(ofType(events, "turn_complete")).toHaveLength(1)
  })

  it("§3 an exec approval denied by the parent does not run the command", { timeout: TEST_TIMEOUT }, async () => {
    const box = await sandbox(execScenario("denied.txt"))
    const rec = recorder()
    await run(
      oneShotAll(
        backendFor(box, { approvalPolicy: "untrusted", sandbox: "workspace-write" }).spawn({ cwd: box.cwd }),
        "write it",
        rec.onEvents
      ),
      { execApproval: () => "denied" }
    )
    expect(existsSync(join(box.cwd, "denied.txt"))).toBe(false)
    expect(box.model.requests().map((r) => r.response)).toEqual(["run", "after"])
    expect(ofType(rec.all, "turn_complete")).toHaveLength(1)
    // every begin has its end
    expect(ofType(rec.all, "exec_command_begin").length).toBe(ofType(rec.all, "exec_command_end").length)
  })

  it(
    "§3 a file-change approval carries the diff and, approved, changes the file",
    { timeout: TEST_TIMEOUT },
    async () => {
      const patch =
        "*** Begin Patch\n*** Add File: added.txt\n+from the mock\n*** Update File: hello.txt\n@@\n line1\n-line2\n+line2 changed\n*** End Patch"
      const box = await sandbox(
        {
          responses: [
            { name: "patch", steps: [{ type: "apply_patch", callId: "call-patch", patch }] },
            { name: "after", match: { callOutput: "call-patch" }, steps: [{ type: "message", text: "patched" }] }
          ]
        },
        { applyPatchTool: true }
      )
      await writeFile(join(box.cwd, "hello.txt"), "line1\nline2\n")
      const changes: Array<unknown> = []
      const rec = recorder()
      await run(
        oneShotAll(backendFor(box, { approvalPolicy: "untrusted" }).spawn({ cwd: box.cwd }), "patch it", rec.onEvents),
        {
          patchApproval: (request) => {
            changes.push(request.changes)
            return "approved"
          }
        }
      )
      expect(await readFile(join(box.cwd, "added.txt"), "utf8")).toBe("from the mock\n")
      expect(await readFile(join(box.cwd, "hello.txt"), "utf8")).toBe("line1\nline2 changed\n")
      const keys = Object.keys(changes[0] as object)
      const added = keys.find((k) => k.endsWith("added.txt"))
      const updated = keys.find((k) => k.endsWith("hello.txt"))
      expect((changes[0] as Record<string, unknown>)[added ?? ""]).toMatchObject({
        type: "add",
        content: "from the mock\n"
      })
      expect((changes[0] as Record<string, { unifiedDiff: string }>)[updated ?? ""]?.unifiedDiff).toContain(
        "+line2 changed"
      )
      expect(ofType(rec.all, "patch_apply_end")).toMatchObject([{ callId: "call-patch", success: true }])
    }
  )

  it(
    "§3 a user-input request is answered by the parent and the model sees the answer",
    { timeout: TEST_TIMEOUT },
    async () => {
      const box = await sandbox(
        {
          responses: [
            {
              name: "ask",
              steps: [
                {
                  type: "request_user_input",
                  callId: "call-ask",
                  questions: [
                    {
                      id: "color",
                      header: "Color",
                      question: "Which color?",
                      options: [{ label: "Red" }, { label: "Blue" }]
                    }
                  ]
                }
              ]
            },
            {
              name: "answered",
              match: { callOutput: "call-ask", callOutputContains: "Blue" },
              steps: [{ type: "message", text: "Blue it is" }]
            }
          ]
        },
        { requestUserInput: true }
      )
      const events = await run(oneShotAll(backendFor(box).spawn({ cwd: box.cwd }), "ask me"), {
        userInput: (request) => {
          expect(request.questions[0]).toMatchObject({ id: "color", question: "Which color?", header: "Color" })
          return { answers: { color: { answers: ["Blue"] } } }
        }
      })
      expect(box.model.requests().map((r) => r.response)).toEqual(["ask", "answered"])
      expect(ofType(events, "agent_message").map((m) => m.message)).toEqual(["Blue it is"])
    }
  )

  const slowScenario: ScenarioInput = {
    responses: [
      {
        steps: [
          { type: "delay", ms: 30_000 },
          { type: "message", text: "too late" }
        ]
      }
    ]
  }

  it("§25 interrupt in the middle of a long turn ends it with turn_aborted", { timeout: TEST_TIMEOUT }, async () => {
    const box = await sandbox(slowScenario)
    const events = await run(
      Effect.gen(function* () {
        const delegate = yield* Delegate.interactive(backendFor(box).spawn({ cwd: box.cwd }))
        const turnId = yield* delegate.submit(userText("take your time"))
        const before = yield* untilType(delegate, "turn_started")
        expect(before.at(-1)?.msg).toEqual({ type: "turn_started", turnId })
        yield* delegate.submit({ type: "interrupt" })
        return yield* untilTurnEnd(delegate)
      })
    )
    expect(events.at(-1)?.msg).toMatchObject({ type: "turn_aborted", reason: "interrupted" })
  })

  it(
    "§4 cancelling while an approval is pending withdraws it, then Interrupt + Shutdown end the process",
    { timeout: TEST_TIMEOUT },
    async () => {
      const box = await sandbox(execScenario("never.txt"))
      const withdrawn: Array<string> = []
      const submissions: Array<Submission["op"]["type"]> = []
      let proc: AppServerProcess | undefined
      const asked = Deferred.unsafeMake<string>(undefined as never)
      await run(
        Effect.gen(function* () {
          const backend = backendFor(
            box,
            { approvalPolicy: "untrusted", sandbox: "workspace-write" },
            {
              onStart: (p) => {
                proc = p
              }
            }
          )
          const delegate = yield* Delegate.interactive(backend.spawn({ cwd: box.cwd }), {
            onSubmission: (s) => Effect.sync(() => void submissions.push(s.op.type))
          })
          yield* delegate.submit(userText("write it"))
          yield* Deferred.await(asked)
          yield* delegate.cancel
        }),
        {
          execApproval: (request, signal) =>
            new Promise((resolve) => {
              Deferred.unsafeDone(asked, Effect.succeed(request.requestId))
              signal.addEventListener("abort", () => resolve(undefined))
            }),
          withdrawn: (requestId) => void withdrawn.push(requestId)
        }
      )
      expect(withdrawn).toHaveLength(1)
      expect(withdrawn[0]).toBe(Effect.runSync(Deferred.await(asked)))
      expect(submissions).toEqual(["user_input", "exec_approval", "interrupt", "shutdown"])
      expect(proc !== undefined && exitOfPid(proc.pid)).toBe(true)
      expect(existsSync(join(box.cwd, "never.txt"))).toBe(false)
    }
  )

  it(
    "§23 resume of a known thread continues it; an unknown id falls back to a fresh thread",
    { timeout: TEST_TIMEOUT },
    async () => {
      const box = await sandbox({
        responses: [
          {
            name: "first",
            match: { lastUserMessageContains: "remember" },
            steps: [{ type: "message", text: "noted" }]
          },
          {
            name: "second",
            match: { lastUserMessageContains: "again" },
            times: 2,
            steps: [{ type: "message", text: "still here" }]
          }
        ]
      })
      const first = recorder()
      await run(oneShotAll(backendFor(box).spawn({ cwd: box.cwd }), "remember the word banana", first.onEvents))
      const codexThread = ofType(first.all, "session_configured")[0]?.backendThreadId
      expect(codexThread).toBeDefined()

      const resumed = recorder()
      const spawnResumed: SpawnOptions = {
        cwd: box.cwd,
        ...(codexThread === undefined ? {} : { backendThreadId: codexThread })
      }
      await run(oneShotAll(backendFor(box).spawn(spawnResumed), "again please", resumed.onEvents))
      expect(ofType(resumed.all, "session_configured")[0]?.backendThreadId).toBe(codexThread)
      expect(ofType(resumed.all, "warning").filter((w) => w.message.startsWith("resume failed"))).toEqual([])
      const body = JSON.stringify(box.model.requests()[1]?.body)
      expect(body).toContain("remember the word banana") // the history went with it

      const fresh = recorder()
      const unknown = "0190f0f0-0000-7000-8000-000000000000"
      await run(
        oneShotAll(backendFor(box).spawn({ cwd: box.cwd, backendThreadId: unknown }), "again, fresh", fresh.onEvents)
      )
      const configured = ofType(fresh.all, "session_configured")[0]
      expect(configured?.backendThreadId).not.toBe(unknown)
      expect(configured?.backendThreadId).not.toBe(codexThread)
      expect(ofType(fresh.all, "warning").map((w) => w.message)).toContainEqual(
        expect.stringContaining("resume failed, started fresh: no rollout found")
      )
      expect(JSON.stringify(box.model.requests()[2]?.body)).not.toContain("banana")
    }
  )

  it(
    "§25 a SIGKILLed app-server ends its thread with error + turn_aborted within 2 s",
    { timeout: TEST_TIMEOUT },
    async () => {
      const box = await sandbox(slowScenario)
      const result = await run(
        Effect.gen(function* () {
          const proc = yield* CodexAppServer.process(processOptions(box))
          const delegate = yield* Delegate.interactive(CodexAppServer.backendOn(proc).spawn({ cwd: box.cwd }))
          yield* delegate.submit(userText("take your time"))
          yield* untilType(delegate, "turn_started")
          const killedAt = Date.now()
          yield* proc.signal("SIGKILL")
          const rest = yield* Stream.runCollect(delegate.events).pipe(Effect.timeout("2 seconds"))
          return { rest: Chunk.toReadonlyArray(rest), ms: Date.now() - killedAt }
        })
      )
      expect(result.ms).toBeLessThan(2000)
      expect(msgs(result.rest)).toEqual([
        { type: "error", message: expect.stringContaining("codex app-server exited") },
        expect.objectContaining({ type: "turn_aborted", reason: "backend_exited" })
      ])
    }
  )

  it("§25 two threads share one app-server process", { timeout: TEST_TIMEOUT }, async () => {
    const box = await sandbox({
      responses: [
        { match: { lastUserMessageContains: "alpha" }, steps: [{ type: "message", text: "reply alpha" }] },
        { match: { lastUserMessageContains: "beta" }, steps: [{ type: "message", text: "reply beta" }] }
      ]
    })
    const [a, b, alive] = await run(
      Effect.gen(function* () {
        const proc = yield* CodexAppServer.process(processOptions(box))
        const backend = CodexAppServer.backendOn(proc, { approvalPolicy: "never", sandbox: "read-only" })
        const [a, b] = yield* Effect.all(
          [oneShotAll(backend.spawn({ cwd: box.cwd }), "alpha"), oneShotAll(backend.spawn({ cwd: box.cwd }), "beta")],
          { concurrency: 2 }
        )
        return [a, b, !exitOfPid(proc.pid)] as const
      })
    )
    expect(ofType(a, "agent_message").map((m) => m.message)).toEqual(["reply alpha"])
    expect(ofType(b, "agent_message").map((m) => m.message)).toEqual(["reply beta"])
    expect(alive).toBe(true) // the agents shut down, the shared process stayed until its scope closed
  })
})
