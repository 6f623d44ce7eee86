import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { type Agent, AgentClosed, policy } from "@deputy/core"
import { type Event, type EventMsg, isTurnEnd, type Op, type ThreadId, userText } from "@deputy/protocol"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Exit, HashMap, Logger, LogLevel, Option, Scope } from "effect"
import { CodexExec } from "../src/index.js"
import { groupMembers, startCrashDeputy, untilGroupGone } from "./crashDeputy.js"

const FAKE = fileURLToPath(new URL("./fixtures/fake-codex.mjs", import.meta.url))
const THREAD = "0b5c2f3e-7d41-4c8a-9a7e-2f1d3c4b5a69" as ThreadId
const CODEX_ID = "01a200df-1f97-71d2-b3f9-338fae11bb1c"

type Step = Record<string, unknown>
interface Invocation {
  readonly argv: ReadonlyArray<string>
  readonly prompt: string
  readonly env: Readonly<Record<string, string>>
  readonly pid: number
}
interface LogLine {
  readonly level: string
  readonly message: string
  readonly annotations: Readonly<Record<string, unknown>>
}

/** A temp folder with the fake's script, its invocation log, a cwd and a deputy home; removed with the scope. */
const sandbox = (runs: ReadonlyArray<ReadonlyArray<Step>>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const root = mkdtempSync(join(tmpdir(), "deputy-codex-exec-"))
      const script = join(root, "script.json")
      writeFileSync(script, JSON.stringify({ runs }))
      const log = join(root, "invocations.jsonl")
      const pids = join(root, "pids.json")
      const home = join(root, "home")
      const options: CodexExec.Options = {
        approvalMode: "never-ask",
        binary: process.execPath,
        binaryArgs: [FAKE],
        cwd: root,
        home,
        killGrace: "300 millis",
        env: { FAKE_CODEX_SCRIPT: script, FAKE_CODEX_LOG: log, FAKE_CODEX_PIDS: pids }
      }
      return {
        root,
        home,
        options,
        pointer: join(home, "codex-exec", THREAD),
        invocations: (): ReadonlyArray<Invocation> =>
          readFileSync(log, "utf8")
            .split("\n")
            .filter((line) => line !== "")
            .map((line) => JSON.parse(line) as Invocation),
        hasRun: () => existsSync(log),
        pids: (): ReadonlyArray<number> => JSON.parse(readFileSync(pids, "utf8")) as Array<number>
      }
    }),
    ({ root }) => Effect.sync(() => rmSync(root, { recursive: true, force: true }))
  )

const spawnAgent = (options: CodexExec.Options, extra: { readonly backendThreadId?: string } = {}) =>
  Effect.flatMap(CodexExec.backend(options), (backend) => backend.spawn({ threadId: THREAD, ...extra }))

/** Events up to and including the first that `stop` accepts. */
const takeUntil = (agent: Agent, stop: (event: Event) => boolean) =>
  Effect.gen(function* () {
    const seen: Array<Event> = []
    while (true) {
      const event = yield* agent.events.take
      seen.push(event)
      if (stop(event)) return seen
    }
  })

/** Submits `op` as turn `turnId` and reads the turn's events through its end. */
const turn = (agent: Agent, turnId: string, op: Op = userText("go")) =>
  Effect.gen(function* () {
    yield* agent.submit({ id: turnId, op })
    return (yield* takeUntil(agent, (event) => isTurnEnd(event.msg))).map((event) => event.msg)
  })

const started = (agent: Agent) =>
  Effect.map(
    takeUntil(agent, (event) => event.msg.type === "session_configured"),
    (events) => events.at(-1)?.msg
  )

/** Runs `self` with every log line (debug and up) collected into `logs`. */
const withLogs = <A, E, R>(logs: Array<LogLine>, self: Effect.Effect<A, E, R>) =>
  self.pipe(
    Effect.provide(
      Logger.replace(
        Logger.defaultLogger,
        Logger.make(({ logLevel, message, annotations }) => {
          logs.push({
            level: logLevel.label,
            message: (Array.isArray(message) ? message : [message]).map(String).join(" "),
            annotations: Object.fromEntries(HashMap.toEntries(annotations))
          })
        })
      )
    ),
    Logger.withMinimumLogLevel(LogLevel.Debug)
  )

/** A zombie (dead, not yet reaped by whoever adopted it) counts as dead. */
const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0] !== "Z"
  } catch {
    return true // no procfs: signal 0 is all we have
  }
}

/** Waits (real time, bounded) until `pid` is dead; true if it still runs at the bound. */
const untilDead = (pid: number, bound = 10_000) =>
  Effect.promise(async () => {
    const deadline = Date.now() + bound
    while (isAlive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25))
    return isAlive(pid)
  })

/** `pid`, SIGKILLed when the test's scope closes whatever happened (a failing test leaves nothing behind). */
const killedAtEnd = (pid: number) =>
  Effect.as(
    Effect.addFinalizer(() =>
      Effect.sync(() => {
        try {
          process.kill(pid, "SIGKILL")
        } catch {
          // already gone
        }
      })
    ),
    pid
  )

/** An agent whose fake Codex children note their life in a file ($FAKE_CODEX_LIFE), and those notes so far. */
const spawnNotingLife = (box: { readonly root: string; readonly options: CodexExec.Options }) =>
  Effect.gen(function* () {
    const life = join(box.root, "life")
    const agent = yield* spawnAgent({ ...box.options, env: { ...box.options.env, FAKE_CODEX_LIFE: life } })
    const lifeLines = () =>
      readFileSync(life, "utf8")
        .split("\n")
        .filter((line) => line !== "")
    return { agent, lifeLines }
  })

const completed = (item: Record<string, unknown>) => ({ out: { type: "item.completed", item } })

layer(NodeContext.layer, { excludeTestServices: true })("CodexExec", (it) => {
  it.scoped("§26 translates codex exec JSONL: messages, reasoning, commands, file changes, usage, turn end", () =>
    Effect.gen(function* () {
      const box = yield* sandbox([
        [
          { threadStarted: CODEX_ID },
          { out: { type: "turn.started" } },
          completed({ id: "item_0", type: "error", message: "Model metadata for `mock` not found" }),
          completed({ id: "item_1", type: "reasoning", text: "thinking" }),
          {
            out: {
              type: "item.started",
              item: {
                id: "item_2",
                type: "command_execution",
                command: "/bin/bash -lc 'echo hi'",
                aggregated_output: "",
                exit_code: null,
                status: "in_progress"
              }
            }
          },
          completed({
            id: "item_2",
            type: "command_execution",
            command: "/bin/bash -lc 'echo hi'",
            aggregated_output: "hi\n",
            exit_code: 0,
            status: "completed"
          }),
          completed({
            id: "item_3",
            type: "file_change",
            changes: [
              { path: "a.txt", kind: "add" },
              { path: "b.txt", kind: "update" },
              { path: "c.txt", kind: "delete" }
            ],
            status: "completed"
          }),
          completed({ id: "item_4", type: "agent_message", text: "first" }),
          completed({ id: "item_5", type: "agent_message", text: "done" }),
          {
            out: {
              type: "turn.completed",
              usage: { input_tokens: 200, cached_input_tokens: 0, output_tokens: 20, reasoning_output_tokens: 0 }
            }
          }
        ]
      ])
      const agent = yield* spawnAgent(box.options)
      const configured = yield* started(agent)
      assert.deepStrictEqual(configured, {
        type: "session_configured",
        threadId: THREAD,
        backend: "codex-exec",
        cwd: box.root
      })
      const events = yield* turn(agent, "t1")
      const turnId = "t1"
      assert.deepStrictEqual(events, [
        { type: "turn_started", turnId },
        { type: "warning", message: "Model metadata for `mock` not found" },
        { type: "agent_reasoning", text: "thinking" },
        {
          type: "exec_command_begin",
          callId: "item_2",
          turnId,
          command: ["/bin/bash", "-lc", "echo hi"],
          cwd: box.root
        },
        { type: "exec_command_end", callId: "item_2", turnId, exitCode: 0, stdout: "hi\n", stderr: "" },
        {
          type: "patch_apply_begin",
          callId: "item_3",
          turnId,
          autoApproved: true,
          changes: {
            "a.txt": { type: "add", content: "" },
            "b.txt": { type: "update", unifiedDiff: "" },
            "c.txt": { type: "delete" }
          }
        },
        { type: "patch_apply_end", callId: "item_3", turnId, success: true, stdout: "", stderr: "" },
        { type: "agent_message", message: "first" },
        { type: "agent_message", message: "done" },
        { type: "token_count", inputTokens: 200, outputTokens: 20, totalTokens: 220 },
        { type: "turn_complete", turnId, lastAgentMessage: "done" }
      ])
      const [invocation] = box.invocations()
      assert.strictEqual(invocation?.prompt, "go")
      assert.deepStrictEqual(invocation?.argv.slice(0, 3), ["exec", "--json", "--skip-git-repo-check"])
      assert.include(invocation?.argv.join(" "), '-c approval_policy="never" -c sandbox_mode="read-only"')
      assert.strictEqual(invocation?.argv.at(-1), "-")
    })
  )

  it.scoped("§26 unparseable and unknown lines are logged and skipped, never fatal", () =>
    Effect.gen(function* () {
      const logs: Array<LogLine> = []
      const box = yield* sandbox([
        [
          { out: "this is not json" },
          { threadStarted: CODEX_ID },
          { out: "[1, 2]" },
          { out: { type: "item.completed" } },
          { out: { type: "item.completed", item: { id: "item_0", type: "agent_message" } } },
          { out: { type: "future.event", data: 1 } },
          completed({ id: "item_1", type: "todo_list", items: [] }),
          { out: '{"type":"turn.completed", "usage": ' },
          completed({ id: "item_2", type: "agent_message", text: "still here" }),
          { out: { type: "turn.completed" } }
        ]
      ])
      const events = yield* withLogs(
        logs,
        Effect.gen(function* () {
          const agent = yield* spawnAgent(box.options)
          yield* started(agent)
          return yield* turn(agent, "t1")
        })
      )
      assert.deepStrictEqual(
        events.map((msg) => msg.type),
        ["turn_started", "agent_message", "turn_complete"]
      )
      const warnings = logs.filter((log) => log.level === "WARN").map((log) => log.message)
      assert.strictEqual(warnings.length, 5, warnings.join("\n"))
      assert.isTrue(warnings.every((message) => message.startsWith("skipped an unparseable codex exec stdout line")))
      assert.include(warnings[3], "item.text")
      const unknown = logs.filter((log) => log.message.includes("unknown type")).map((log) => log.message)
      assert.deepStrictEqual(unknown, [
        "skipped a codex exec stdout line of unknown type future.event",
        "skipped a codex exec stdout line of unknown type item.completed:todo_list"
      ])
    })
  )

  it.scoped("§26 stderr is drained into debug logs carrying the thread id, to the child's exit", () =>
    Effect.gen(function* () {
      const logs: Array<LogLine> = []
      const noise = Array.from({ length: 2000 }, (_, i) => ({ err: `noise ${i} ${"x".repeat(100)}` }))
      const box = yield* sandbox([
        [{ threadStarted: CODEX_ID }, { err: "WARNING: proceeding" }, ...noise, { out: { type: "turn.completed" } }]
      ])
      // The turn ends at turn.completed; its child's exit, and the end of its stderr, follow behind it:
      // every line is logged once the agent has closed.
      const events = yield* withLogs(
        logs,
        Effect.gen(function* () {
          const scope = yield* Scope.make()
          const agent = yield* spawnAgent(box.options).pipe(Scope.extend(scope))
          yield* started(agent)
          const seen = yield* turn(agent, "t1")
          yield* Scope.close(scope, Exit.void)
          return seen
        })
      )
      assert.strictEqual(events.at(-1)?.type, "turn_complete")
      const stderr = logs.filter((log) => log.message.startsWith("codex stderr: "))
      assert.strictEqual(stderr[0]?.message, "codex stderr: WARNING: proceeding")
      assert.strictEqual(stderr[0]?.level, "DEBUG")
      assert.strictEqual(stderr[0]?.annotations.threadId, THREAD)
      assert.strictEqual(stderr.length, 2001, JSON.stringify(stderr.slice(-3)))
    })
  )

  it.scoped("§26 turn.failed and error become error events (once each message), then turn_complete", () =>
    Effect.gen(function* () {
      const box = yield* sandbox([
        [
          { threadStarted: CODEX_ID },
          { out: { type: "error", message: "Reconnecting... 1/1" } },
          { out: { type: "error", message: "stream disconnected: boom" } },
          { out: { type: "turn.failed", error: { message: "stream disconnected: boom" } } },
          { exit: 1 }
        ],
        [{ threadStarted: true }, { out: { type: "turn.failed", error: { message: "quota" } } }, { exit: 1 }]
      ])
      const agent = yield* spawnAgent(box.options)
      yield* started(agent)
      assert.deepStrictEqual(yield* turn(agent, "t1"), [
        { type: "turn_started", turnId: "t1" },
        { type: "error", message: "Reconnecting... 1/1" },
        { type: "error", message: "stream disconnected: boom" },
        { type: "turn_complete", turnId: "t1" }
      ])
      assert.deepStrictEqual(yield* turn(agent, "t2"), [
        { type: "turn_started", turnId: "t2" },
        { type: "error", message: "quota" },
        { type: "turn_complete", turnId: "t2" }
      ])
    })
  )

  it.scoped("§26 a child exiting without a turn end gives error and turn_aborted (backend_exited)", () =>
    Effect.gen(function* () {
      const box = yield* sandbox([
        [
          { threadStarted: CODEX_ID },
          completed({ id: "item_0", type: "agent_message", text: "partial" }),
          { err: "Error: the model went away" },
          { exit: 3 }
        ],
        [{ err: "Error: config.toml is broken" }, { exit: 2 }]
      ])
      const agent = yield* spawnAgent(box.options)
      yield* started(agent)
      assert.deepStrictEqual(yield* turn(agent, "t1"), [
        { type: "turn_started", turnId: "t1" },
        { type: "agent_message", message: "partial" },
        { type: "error", message: "codex exec exited with code 3: Error: the model went away before the turn ended" },
        { type: "turn_aborted", turnId: "t1", reason: "backend_exited" }
      ])
      // A later turn resumes; a child that dies before thread.started, fresh or resumed, ends the turn the same way.
      const second = yield* turn(agent, "t2")
      assert.deepStrictEqual(second.at(-1), { type: "turn_aborted", turnId: "t2", reason: "backend_exited" })
      assert.deepStrictEqual(second.at(-2), {
        type: "error",
        message: "codex exec exited with code 2: Error: config.toml is broken"
      })
      const status = yield* agent.status.get
      assert.strictEqual(status.type, "idle")
    })
  )

  it.scoped(
    "§26 a turn ends at Codex's turn.completed, its child still exiting; the next child starts at once and gets its prompt once that one has gone",
    () =>
      Effect.gen(function* () {
        // Codex takes a while to exit after its last line; the caller has the answer meanwhile. One writer
        // per Codex thread still holds: the next turn's child starts (Codex loads its config before it
        // reads its prompt) but is given its prompt only after this one's exit.
        const box = yield* sandbox([
          [
            { threadStarted: CODEX_ID },
            completed({ id: "item_0", type: "agent_message", text: "one" }),
            { out: { type: "turn.completed" } },
            { sleep: 2_000 }
          ],
          [{ threadStarted: CODEX_ID }, { echoPrompt: true }, { out: { type: "turn.completed" } }]
        ])
        const { agent, lifeLines } = yield* spawnNotingLife(box)
        yield* started(agent)
        assert.deepStrictEqual((yield* turn(agent, "t1")).at(-1), {
          type: "turn_complete",
          turnId: "t1",
          lastAgentMessage: "one"
        })
        const first = box.invocations()[0]!.pid
        assert.deepStrictEqual(lifeLines(), [`spawn ${first}`, `start ${first}`])
        assert.deepStrictEqual((yield* turn(agent, "t2", userText("two"))).at(-1), {
          type: "turn_complete",
          turnId: "t2",
          lastAgentMessage: "two"
        })
        const second = box.invocations()[1]!.pid
        assert.deepStrictEqual(lifeLines().slice(0, 5), [
          `spawn ${first}`,
          `start ${first}`,
          `spawn ${second}`,
          `exit ${first}`,
          `start ${second}`
        ])
      })
  )

  it.scoped(
    "§26 interrupting a turn whose child waits for the last one's exit kills it before it has its prompt; the next turn still waits",
    () =>
      Effect.gen(function* () {
        const box = yield* sandbox([
          [{ threadStarted: CODEX_ID }, { out: { type: "turn.completed" } }, { sleep: 3_000 }],
          [{ threadStarted: CODEX_ID }, { echoPrompt: true }, { out: { type: "turn.completed" } }]
        ])
        const { agent, lifeLines } = yield* spawnNotingLife(box)
        yield* started(agent)
        assert.strictEqual((yield* turn(agent, "t1")).at(-1)?.type, "turn_complete")
        const first = box.invocations()[0]!.pid
        yield* agent.submit({ id: "t2", op: userText("two") })
        // Interrupted once its child runs, waiting for its prompt.
        const held = yield* Effect.promise(async () => {
          while (lifeLines().length < 3) await new Promise((resolve) => setTimeout(resolve, 10))
          return Number(lifeLines()[2]!.split(" ")[1])
        })
        yield* agent.submit({ id: "i1", op: { type: "interrupt" } })
        const aborted = (yield* takeUntil(agent, (event) => isTurnEnd(event.msg))).at(-1)
        assert.deepStrictEqual(aborted?.msg, { type: "turn_aborted", turnId: "t2", reason: "interrupted" })
        assert.isFalse(isAlive(held))
        assert.isTrue(isAlive(first))
        assert.deepStrictEqual((yield* turn(agent, "t3", userText("three"))).at(-1), {
          type: "turn_complete",
          turnId: "t3",
          lastAgentMessage: "three"
        })
        const third = box.invocations()[1]!.pid
        // (The third's exit may come after its turn's report.)
        assert.deepStrictEqual(lifeLines().slice(0, 6), [
          `spawn ${first}`,
          `start ${first}`,
          `spawn ${held}`,
          `spawn ${third}`,
          `exit ${first}`,
          `start ${third}`
        ])
      })
  )

  it.scoped("§26 closing the agent while its last child is still exiting waits for it, killed past exitGrace", () =>
    Effect.gen(function* () {
      const box = yield* sandbox([
        [{ threadStarted: CODEX_ID }, { echoPrompt: true }, { out: { type: "turn.completed" } }, { sleep: 60_000 }]
      ])
      const life = join(box.root, "life")
      const scope = yield* Scope.make()
      const options: CodexExec.Options = {
        ...box.options,
        exitGrace: "2 seconds", // long enough that the child surely still runs when the turn is reported
        env: { ...box.options.env, FAKE_CODEX_LIFE: life }
      }
      const agent = yield* spawnAgent(options).pipe(Scope.extend(scope))
      yield* started(agent)
      assert.strictEqual((yield* turn(agent, "t1", userText("one"))).at(-1)?.type, "turn_complete")
      const child = box.invocations()[0]!.pid
      assert.isTrue(isAlive(child))
      yield* Scope.close(scope, Exit.void)
      assert.isFalse(isAlive(child))
      // It never exited by itself: the bound killed it.
      assert.deepStrictEqual(readFileSync(life, "utf8"), `spawn ${child}\nstart ${child}\n`)
    })
  )

  it.scoped("§36 a stdout line past the bound ends the turn with an error naming the bound, not a bare signal", () =>
    Effect.gen(function* () {
      // The child goes (nobody reads the rest of its pipe); its turn says why, not only a log line.
      const box = yield* sandbox([[{ threadStarted: CODEX_ID }, { out: "x".repeat(5_000) }, { sleep: 60_000 }]])
      const agent = yield* spawnAgent({ ...box.options, maxLineLength: 1_000 })
      yield* started(agent)
      const msgs = yield* turn(agent, "t1")
      assert.deepStrictEqual(msgs.at(-1), { type: "turn_aborted", turnId: "t1", reason: "backend_exited" })
      const error = msgs.at(-2)
      assert.strictEqual(error?.type, "error")
      assert.match(
        error?.type === "error" ? error.message : "",
        /^codex exec was stopped: a line of codex exec stdout is longer than 1000 characters/
      )
    })
  )

  it.scoped("§26 a missing binary ends the turn with an error, not a hang", () =>
    Effect.gen(function* () {
      const box = yield* sandbox([[]])
      const agent = yield* spawnAgent({ ...box.options, binary: join(box.root, "no-such-codex"), binaryArgs: [] })
      yield* started(agent)
      const events = yield* turn(agent, "t1")
      assert.deepStrictEqual(events.at(-1), { type: "turn_aborted", turnId: "t1", reason: "backend_exited" })
      const error = events.at(-2)
      assert.isTrue(error?.type === "error" && error.message.startsWith("codex exec could not start"))
    })
  )

  it.scoped("§26 interrupt kills the running child's process group, then turn_aborted (interrupted)", () =>
    Effect.gen(function* () {
      const box = yield* sandbox([
        [{ threadStarted: CODEX_ID }, { hang: true }],
        [{ threadStarted: true }, { echoPrompt: true }, { out: { type: "turn.completed" } }]
      ])
      const agent = yield* spawnAgent(box.options)
      yield* started(agent)
      yield* agent.submit({ id: "t1", op: userText("hang") })
      yield* takeUntil(agent, (event) => event.msg.type === "agent_message")
      const [child, grandchild] = box.pids()
      assert.isTrue(isAlive(child!) && isAlive(grandchild!))
      yield* agent.submit({ id: "i1", op: { type: "interrupt" } })
      const [aborted] = yield* takeUntil(agent, (event) => isTurnEnd(event.msg))
      assert.deepStrictEqual(aborted?.msg, { type: "turn_aborted", turnId: "t1", reason: "interrupted" })
      assert.isFalse(isAlive(child!))
      assert.isFalse(isAlive(grandchild!))
      // The thread goes on: the next turn resumes the same Codex thread.
      const next = yield* turn(agent, "t2", userText("again"))
      assert.deepStrictEqual(
        next.at(-1),
        { type: "turn_complete", turnId: "t2", lastAgentMessage: "again" },
        JSON.stringify(next)
      )
      assert.deepStrictEqual(box.invocations()[1]?.argv.slice(0, 3), ["exec", "resume", CODEX_ID])
    })
  )

  it.scoped("§26 a child ignoring SIGTERM is SIGKILLed after the grace", () =>
    Effect.gen(function* () {
      const box = yield* sandbox([[{ threadStarted: CODEX_ID }, { ignoreTerm: true }, { hang: true }]])
      const agent = yield* spawnAgent(box.options)
      yield* started(agent)
      yield* agent.submit({ id: "t1", op: userText("hang") })
      yield* takeUntil(agent, (event) => event.msg.type === "agent_message")
      const [child] = box.pids()
      yield* agent.submit({ id: "i1", op: { type: "interrupt" } })
      const [aborted] = yield* takeUntil(agent, (event) => isTurnEnd(event.msg))
      assert.strictEqual(aborted?.msg.type, "turn_aborted")
      assert.isFalse(isAlive(child!))
    })
  )

  it.scoped.skipIf(process.platform !== "linux")(
    "§33 a turn that ended by itself is reported at once; what its child left outside its group is ended behind it",
    () =>
      Effect.gen(function* () {
        const box = yield* sandbox([
          [{ threadStarted: CODEX_ID }, { escape: true }, { echoPrompt: true }, { out: { type: "turn.completed" } }]
        ])
        const agent = yield* spawnAgent({ ...box.options, killGrace: "1 second" })
        yield* started(agent)
        const events = yield* turn(agent, "t1", userText("one"))
        assert.deepStrictEqual(events.at(-1), { type: "turn_complete", turnId: "t1", lastAgentMessage: "one" })
        const escapee = yield* killedAtEnd(box.pids()[0]!)
        // It left the group (setsid) and ignores SIGTERM: only the supervisor's sweep ends it, SIGKILL
        // after the grace. The turn's report did not wait for that sweep (it took the grace before).
        assert.isTrue(isAlive(escapee))
        assert.isFalse(yield* untilDead(escapee))
      })
  )

  it.scoped.skipIf(process.platform !== "linux")(
    "§33 closing the agent right after such a turn waits for that sweep: nothing the child left is alive after",
    () =>
      Effect.gen(function* () {
        const box = yield* sandbox([
          [{ threadStarted: CODEX_ID }, { escape: true }, { echoPrompt: true }, { out: { type: "turn.completed" } }]
        ])
        const scope = yield* Scope.make()
        const agent = yield* spawnAgent({ ...box.options, killGrace: "1 second" }).pipe(Scope.extend(scope))
        yield* started(agent)
        const events = yield* turn(agent, "t1", userText("one"))
        assert.strictEqual(events.at(-1)?.type, "turn_complete")
        const escapee = yield* killedAtEnd(box.pids()[0]!)
        yield* Scope.close(scope, Exit.void)
        assert.isFalse(isAlive(escapee))
      })
  )

  it.scoped.skipIf(process.platform !== "linux")(
    "no orphans: a SIGKILLed deputy process takes its codex exec child's whole group with it",
    () =>
      Effect.gen(function* () {
        const box = yield* sandbox([[]])
        const deputy = yield* startCrashDeputy("exec", box.root)
        // The fake codex and its grandchild.
        assert.strictEqual(groupMembers(deputy.group).length, 2)
        yield* deputy.crash
        assert.deepStrictEqual(yield* untilGroupGone(deputy.group), [])
      }),
    30_000
  )

  it.scoped("§26 shutdown kills a running turn, ends the events, and later submits fail with AgentClosed", () =>
    Effect.gen(function* () {
      const box = yield* sandbox([[{ threadStarted: CODEX_ID }, { hang: true }]])
      const agent = yield* spawnAgent(box.options)
      yield* started(agent)
      yield* agent.submit({ id: "t1", op: userText("hang") })
      yield* takeUntil(agent, (event) => event.msg.type === "agent_message")
      const [child] = box.pids()
      yield* agent.submit({ id: "s1", op: { type: "shutdown" } })
      const rest = yield* takeUntil(agent, (event) => event.msg.type === "shutdown_complete")
      assert.deepStrictEqual(
        rest.map((event) => event.msg),
        [{ type: "turn_aborted", turnId: "t1", reason: "interrupted" }, { type: "shutdown_complete" }]
      )
      assert.isFalse(isAlive(child!))
      assert.isTrue(Option.isNone(yield* Effect.option(agent.events.take)))
      const refused = yield* Effect.flip(agent.submit({ id: "t2", op: userText("more") }))
      assert.instanceOf(refused, AgentClosed)
      assert.strictEqual((yield* agent.status.get).type, "shutdown")
    })
  )

  it.scoped("§22 §26 the Codex thread id is written atomically (0600) and a later agent resumes it", () =>
    Effect.gen(function* () {
      const box = yield* sandbox([
        [{ threadStarted: CODEX_ID }, { echoPrompt: true }, { out: { type: "turn.completed" } }],
        [{ threadStarted: true }, { echoPrompt: true }, { out: { type: "turn.completed" } }]
      ])
      const scope = yield* Scope.make()
      const first = yield* spawnAgent(box.options).pipe(Scope.extend(scope))
      yield* started(first)
      yield* turn(first, "t1", userText("one"))
      assert.strictEqual(readFileSync(box.pointer, "utf8"), `${CODEX_ID}\n`)
      assert.strictEqual(statSync(box.pointer).mode & 0o777, 0o600)
      assert.deepStrictEqual(readdirSync(join(box.home, "codex-exec")), [THREAD]) // no temp file left beside it
      assert.strictEqual(
        yield* CodexExec.readCodexThreadId(THREAD, { home: box.home }).pipe(Effect.map(Option.getOrNull)),
        CODEX_ID
      )
      yield* Scope.close(scope, Exit.void)

      // A new agent for the same deputy thread (a later process) finds the id and resumes.
      const second = yield* spawnAgent(box.options)
      const configured = yield* started(second)
      assert.strictEqual(configured?.type === "session_configured" && configured.backendThreadId, CODEX_ID)
      const events = yield* turn(second, "t2", userText("two"))
      assert.deepStrictEqual(events.at(-1), { type: "turn_complete", turnId: "t2", lastAgentMessage: "two" })
      assert.isFalse(events.some((msg) => msg.type === "warning"))
      const [fresh, resumed] = box.invocations()
      assert.notInclude(fresh?.argv ?? [], "resume")
      assert.deepStrictEqual(resumed?.argv.slice(0, 3), ["exec", "resume", CODEX_ID])
      assert.include(resumed?.argv.join(" "), 'approval_policy="never"')
    })
  )

  it.scoped("§23 a failing exec resume falls back to a fresh codex exec, with a warning, and stores the new id", () =>
    Effect.gen(function* () {
      const stale = "019e0000-0000-7000-8000-000000000000"
      const box = yield* sandbox([
        [{ unknownResume: true }],
        [{ threadStarted: CODEX_ID }, { echoPrompt: true }, { out: { type: "turn.completed" } }]
      ])
      const agent = yield* spawnAgent(box.options, { backendThreadId: stale })
      const configured = yield* started(agent)
      assert.strictEqual(configured?.type === "session_configured" && configured.backendThreadId, stale)
      const events = yield* turn(agent, "t1", userText("work"))
      assert.deepStrictEqual(events, [
        { type: "turn_started", turnId: "t1" },
        {
          type: "warning",
          message: `resuming Codex thread ${stale} failed (codex exec resume exited with code 1: Error: thread/resume: thread/resume failed: no rollout found for thread id ${stale} (code -32600)); started a fresh Codex thread ${CODEX_ID}`
        },
        { type: "agent_message", message: "work" },
        { type: "turn_complete", turnId: "t1", lastAgentMessage: "work" }
      ])
      const [resume, fresh] = box.invocations()
      assert.deepStrictEqual(resume?.argv.slice(0, 3), ["exec", "resume", stale])
      assert.strictEqual(fresh?.argv[0], "exec")
      assert.strictEqual(fresh?.argv[1], "--json")
      assert.strictEqual(fresh?.prompt, "work")
      assert.strictEqual(readFileSync(box.pointer, "utf8"), `${CODEX_ID}\n`)
    })
  )

  it.scoped("§23 a prior id that is not a UUID is never passed to codex (it would be taken as a thread name)", () =>
    Effect.gen(function* () {
      const box = yield* sandbox([[{ threadStarted: CODEX_ID }, { out: { type: "turn.completed" } }]])
      const agent = yield* spawnAgent(box.options, { backendThreadId: "my-thread" })
      yield* started(agent)
      const events = yield* turn(agent, "t1")
      const warning = events.find((msg) => msg.type === "warning")
      assert.include(warning?.type === "warning" ? warning.message : "", '"my-thread" is not a Codex thread id')
      assert.deepStrictEqual(
        box.invocations().map((call) => call.argv.includes("resume")),
        [false]
      )
    })
  )

  it.scoped("§26 a history with no Codex thread to resume is announced at spawn; the thread starts fresh", () =>
    Effect.gen(function* () {
      const box = yield* sandbox([[{ threadStarted: CODEX_ID }, { out: { type: "turn.completed" } }]])
      const backend = yield* CodexExec.backend(box.options)
      const agent = yield* backend.spawn({
        threadId: THREAD,
        history: [
          { type: "submission", at: "2026-01-01T00:00:00.000Z", submission: { id: "t0", op: userText("earlier") } }
        ]
      })
      const startup = [(yield* agent.events.take).msg, (yield* agent.events.take).msg]
      assert.strictEqual(startup[0]?.type, "session_configured")
      assert.isTrue(startup[1]?.type === "warning" && startup[1].message.includes("cannot replay a history"))
    })
  )

  it.scoped("§26 the child sees only the allowlisted environment plus what the options add", () =>
    Effect.gen(function* () {
      const box = yield* sandbox([[{ threadStarted: CODEX_ID }, { out: { type: "turn.completed" } }]])
      process.env.DEPUTY_EXEC_TEST_SECRET = "leak"
      yield* Effect.addFinalizer(() => Effect.sync(() => delete process.env.DEPUTY_EXEC_TEST_SECRET))
      const agent = yield* spawnAgent({
        ...box.options,
        codexHome: join(box.root, "codex-home"),
        sandbox: "workspace-write",
        model: "mock-model",
        config: { "features.multi_agent": false },
        env: { ...box.options.env, PROVIDER_KEY: "dummy" }
      })
      yield* started(agent)
      yield* turn(agent, "t1")
      const [call] = box.invocations()
      // The supervisor's marker (§33), which every descendant inherits; nothing of the parent's.
      const all = Object.keys(call?.env ?? {})
      assert.strictEqual(all.filter((name) => name.startsWith("DEPUTY_WATCH_")).length, 1)
      const names = all.filter((name) => !name.startsWith("DEPUTY_WATCH_")).sort()
      const allowed = ["PATH", "HOME", "LANG", "TMPDIR"].filter((name) => process.env[name] !== undefined)
      const expected = [
        ...allowed,
        ...Object.keys(process.env).filter((name) => name.startsWith("LC_")),
        "CODEX_HOME",
        "FAKE_CODEX_LOG",
        "FAKE_CODEX_PIDS",
        "FAKE_CODEX_SCRIPT",
        "PROVIDER_KEY"
      ]
      // node adds nothing to a spawned child's env, so what it reports is what we passed
      assert.deepStrictEqual(names, [...new Set(expected)].sort())
      assert.strictEqual(call?.env.CODEX_HOME, join(box.root, "codex-home"))
      assert.include(call?.argv.join(" "), "--model mock-model")
      assert.include(call?.argv.join(" "), '-c features.multi_agent=false -c approval_policy="never"')
      assert.include(call?.argv.join(" "), '-c sandbox_mode="workspace-write"')
    })
  )

  it.scoped("§26 approval answers cannot reach codex exec: a warning, and nothing else happens", () =>
    Effect.gen(function* () {
      const box = yield* sandbox([[{ threadStarted: CODEX_ID }, { out: { type: "turn.completed" } }]])
      const agent = yield* spawnAgent(box.options)
      yield* started(agent)
      const answers: ReadonlyArray<Op> = [
        { type: "exec_approval", id: "call-1", decision: "approved" },
        { type: "patch_approval", id: "call-2", decision: "denied" },
        { type: "user_input_answer", id: "e1", response: { answers: {} } }
      ]
      for (const [index, op] of answers.entries()) yield* agent.submit({ id: `a${index}`, op })
      const warnings: Array<EventMsg> = []
      for (let i = 0; i < answers.length; i++) warnings.push((yield* agent.events.take).msg)
      assert.deepStrictEqual(
        warnings.map((msg) => (msg.type === "warning" ? msg.message.split(":")[0] : msg.type)),
        [
          "codex-exec cannot take exec_approval",
          "codex-exec cannot take patch_approval",
          "codex-exec cannot take user_input_answer"
        ]
      )
      assert.isFalse(box.hasRun()) // no child ran
      assert.strictEqual((yield* agent.status.get).type, "idle")
    })
  )

  it.scoped("§26 a user_input during a turn waits for the running child, then resumes the thread", () =>
    Effect.gen(function* () {
      const box = yield* sandbox([
        [{ threadStarted: CODEX_ID }, { echoPrompt: true }, { sleep: 50 }, { out: { type: "turn.completed" } }],
        [{ threadStarted: true }, { echoPrompt: true }, { out: { type: "turn.completed" } }]
      ])
      const agent = yield* spawnAgent(box.options)
      yield* started(agent)
      yield* agent.submit({ id: "t1", op: userText("one") })
      yield* agent.submit({ id: "t2", op: userText("two") })
      const events = yield* takeUntil(agent, (event) => event.id === "t2" && isTurnEnd(event.msg))
      assert.deepStrictEqual(
        events.map((event) => `${event.id} ${event.msg.type}`),
        [
          "t1 turn_started",
          "t1 agent_message",
          "t1 turn_complete",
          "t2 turn_started",
          "t2 agent_message",
          "t2 turn_complete"
        ]
      )
      const [first, second] = box.invocations()
      assert.isFalse(isAlive(first!.pid))
      assert.deepStrictEqual(second?.argv.slice(0, 3), ["exec", "resume", CODEX_ID])
    })
  )
})

describe("CodexExec policy", () => {
  layer(NodeContext.layer, { excludeTestServices: true })((it) => {
    it.effect("§26 a policy that could deny is refused with ApprovalsUnsupported naming each reason", () =>
      Effect.gen(function* () {
        const refusing = policy({
          exec: [
            { prefix: ["rm"], decision: "denied" },
            { regex: "^git ", decision: "approved" }
          ],
          patch: [{ glob: "**/*.env", decision: "denied" }]
        })
        const error = yield* Effect.flip(CodexExec.checkPolicy(refusing))
        assert.strictEqual(error._tag, "ApprovalsUnsupported")
        assert.deepStrictEqual(error.reasons, [
          'its default decision is "denied"',
          'exec rule 0 (prefix ["rm"]) denies',
          'patch rule 0 (glob "**/*.env") denies'
        ])
        assert.include(error.message, "codex exec has no approval channel")
        const refused = yield* Effect.flip(CodexExec.backend({ approvalMode: "never-ask", policy: refusing }))
        assert.strictEqual(refused._tag, "ApprovalsUnsupported")
        const direct = yield* Effect.flip(
          Effect.scoped(CodexExec.spawn({ approvalMode: "never-ask", policy: refusing, cwd: tmpdir() }))
        )
        assert.strictEqual(direct._tag, "SpawnFailed")
        assert.instanceOf(direct.cause, CodexExec.ApprovalsUnsupported)
        // The default policy denies everything unmatched, so it too needs approvals.
        assert.deepStrictEqual(CodexExec.policyNeeds(policy({})), ['its default decision is "denied"'])
      })
    )

    it.effect("§31 a policy that would ask is refused: codex exec cannot ask, and would run everything", () =>
      Effect.gen(function* () {
        // On main this was accepted, and `codex exec` then ran every command the rule meant to put to a person.
        const asking = policy({ default: "approved", exec: [{ prefix: ["git", "push"], decision: "ask" }] })
        const error = yield* Effect.flip(CodexExec.backend({ approvalMode: "never-ask", policy: asking }))
        assert.strictEqual(error._tag, "ApprovalsUnsupported")
        assert.deepStrictEqual(error.reasons, ['exec rule 0 (prefix ["git","push"]) asks'])
        const askByDefault = policy({ default: "ask", patch: [{ glob: "docs/**", decision: "ask" }] })
        assert.deepStrictEqual(CodexExec.policyNeeds(askByDefault), [
          'its default decision is "ask"',
          'patch rule 0 (glob "docs/**") asks'
        ])
      })
    )

    it.effect("§26 a policy approving everything is accepted; so is no policy", () =>
      Effect.gen(function* () {
        const approveAll = policy({
          default: "approved",
          exec: [{ prefix: ["git"], decision: "approved_for_session" }],
          answers: { color: ["Red"] }
        })
        yield* CodexExec.checkPolicy(approveAll)
        const backend = yield* CodexExec.backend({ approvalMode: "never-ask", policy: approveAll })
        assert.strictEqual(backend.name, "codex-exec")
        yield* CodexExec.backend({ approvalMode: "never-ask" })
        const wrongMode = { approvalMode: "on-request" } as unknown as CodexExec.Options
        const refused = yield* Effect.flip(CodexExec.backend(wrongMode))
        assert.include(refused.reasons[0], "approvalMode")
      })
    )

    it.scoped("§26 a working directory that is not a directory fails the spawn with SpawnFailed", () =>
      Effect.gen(function* () {
        const backend = yield* CodexExec.backend({ approvalMode: "never-ask", home: tmpdir() })
        const error = yield* Effect.flip(backend.spawn({ cwd: "/definitely/not/here" }))
        assert.strictEqual(error._tag, "SpawnFailed")
      })
    )
  })
})
