import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import {
  type Agent,
  type ChildOutcome,
  type ChildRequest,
  Delegate,
  Parent,
  type SpawnChild,
  SpawnFailed,
  type SpawnOptions
} from "@deputy/core"
import {
  type AgentStatus,
  type Event,
  type EventMsg,
  type Op,
  type RolloutItem,
  Script,
  type ThreadId,
  userText
} from "@deputy/protocol"
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it, layer } from "@effect/vitest"
import { Chunk, Deferred, Effect, Exit, Fiber, Option, Scope, Stream, Supervisor, TestClock } from "effect"
import type { z } from "zod"
import { Scripted } from "../src/index.js"
import { answerAll, drain, messagesOf, playTurn, THREAD, takeUntil, types } from "./fixtures/harness.js"

const script = (input: z.input<typeof Script>) => Script.parse(input)

const spawn = (input: z.input<typeof Script>, options: Scripted.Options & SpawnOptions = {}) =>
  Scripted.spawn(script(input), { threadId: THREAD, cwd: "/work", ...options })

/** The supervised fibers still running once none is, or after 50 macrotasks. */
const settledFibers = (supervisor: Supervisor.Supervisor<ReadonlyArray<unknown>>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 50; i++) {
      if ((yield* supervisor.value).length === 0) return 0
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
    }
    return (yield* supervisor.value).length
  })

/** Reads the startup events (session_configured, …) so the next read belongs to a turn. */
const started = (agent: Agent) => takeUntil(agent, (event) => event.msg.type === "session_configured")

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe("Scripted agent", () => {
  it.scoped("issue 12: an idle agent holds no fiber; its driver runs while ops wait and its turn while it plays", () =>
    Effect.gen(function* () {
      const supervisor = yield* Supervisor.track
      const supervised = Effect.supervised(supervisor)
      const agent = yield* spawn({ turns: [{ steps: [{ type: "message", text: "done" }] }] }).pipe(supervised)
      yield* started(agent)
      assert.strictEqual(yield* settledFibers(supervisor), 0)
      yield* agent.submit({ id: "t1", op: userText("go") }).pipe(supervised)
      assert.deepStrictEqual(types(yield* takeUntil(agent, (event) => event.msg.type === "turn_complete")), [
        "turn_started",
        "agent_message",
        "turn_complete"
      ])
      assert.strictEqual(yield* settledFibers(supervisor), 0)
      // Still driven after going idle: the next op starts the driver again.
      yield* agent.submit({ id: "s", op: { type: "shutdown" } }).pipe(supervised)
      assert.deepStrictEqual(types(yield* takeUntil(agent, (event) => event.msg.type === "shutdown_complete")), [
        "shutdown_complete"
      ])
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("§24 a full turn: session_configured, turn_started, the steps, turn_complete with the last message", () =>
    Effect.gen(function* () {
      const agent = yield* spawn({
        name: "reviewer",
        model: "scripted-1",
        turns: [
          {
            steps: [
              { type: "reasoning", text: "thinking" },
              { type: "message", text: "first" },
              { type: "token_count", input: 10, output: 5 },
              { type: "message", text: "last" }
            ]
          }
        ]
      })
      const startup = yield* takeUntil(agent, (event) => event.msg.type === "thread_name_updated")
      assert.deepStrictEqual(startup, [
        {
          id: "",
          msg: { type: "session_configured", threadId: THREAD, backend: "scripted", cwd: "/work", model: "scripted-1" }
        },
        { id: "", msg: { type: "thread_name_updated", threadId: THREAD, name: "reviewer" } }
      ])
      assert.deepStrictEqual(yield* playTurn(agent, "t1"), [
        { id: "t1", msg: { type: "turn_started", turnId: "t1" } },
        { id: "t1", msg: { type: "agent_reasoning", text: "thinking" } },
        { id: "t1", msg: { type: "agent_message", message: "first" } },
        { id: "t1", msg: { type: "token_count", inputTokens: 10, outputTokens: 5, totalTokens: 15 } },
        { id: "t1", msg: { type: "agent_message", message: "last" } },
        { id: "t1", msg: { type: "turn_complete", turnId: "t1", lastAgentMessage: "last" } }
      ])
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("§24 deltas stream the text in pieces, then the whole text", () =>
    Effect.gen(function* () {
      const agent = yield* spawn({
        turns: [
          {
            steps: [
              { type: "reasoning", text: "hmm", deltas: 2 },
              { type: "message", text: "hello world", deltas: 3 }
            ]
          }
        ]
      })
      yield* started(agent)
      const events = yield* playTurn(agent, "t1")
      assert.deepStrictEqual(types(events), [
        "turn_started",
        "agent_reasoning_delta",
        "agent_reasoning_delta",
        "agent_reasoning",
        "agent_message_delta",
        "agent_message_delta",
        "agent_message_delta",
        "agent_message",
        "turn_complete"
      ])
      const deltas = messagesOf(events, "agent_message_delta").map((msg) => msg.delta)
      assert.strictEqual(deltas.length, 3)
      assert.strictEqual(deltas.join(""), "hello world")
      assert.strictEqual(
        messagesOf(events, "agent_reasoning_delta")
          .map((msg) => msg.delta)
          .join(""),
        "hmm"
      )
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("§24 repeat runs the steps that many times, each request with its own call id", () =>
    Effect.gen(function* () {
      const agent = yield* spawn({
        turns: [{ repeat: 3, steps: [{ type: "patch", changes: { "nonexistent/x": { type: "delete" } } }] }]
      })
      yield* started(agent)
      const events = yield* playTurn(agent, "t1", answerAll("denied"))
      assert.deepStrictEqual(
        messagesOf(events, "apply_patch_approval_request").map((msg) => msg.callId),
        ["call-0-0-0", "call-0-0-1", "call-0-0-2"]
      )
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("§24 status goes pending_init, idle, running, idle, shutdown", () =>
    Effect.gen(function* () {
      const agent = yield* spawn({ turns: [{ steps: [{ type: "message", text: "hi" }] }] })
      const seen: Array<AgentStatus> = []
      const watching = yield* Deferred.make<void>()
      const watcher = yield* agent.status.changes.pipe(
        Stream.changes,
        Stream.runForEach((status) =>
          Effect.sync(() => seen.push(status)).pipe(Effect.zipRight(Deferred.succeed(watching, undefined)))
        ),
        Effect.fork
      )
      // The watcher sees the status as it is when it subscribes: let it subscribe before the turn.
      yield* Deferred.await(watching)
      yield* started(agent)
      yield* playTurn(agent, "t1")
      yield* agent.submit({ id: "bye", op: { type: "shutdown" } })
      yield* takeUntil(agent, (event) => event.msg.type === "shutdown_complete")
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(watcher)
      assert.deepStrictEqual(seen.at(-1), { type: "shutdown" })
      assert.deepStrictEqual(
        seen.map((status) => status.type).filter((type, i, all) => type !== all[i - 1]),
        ["pending_init", "idle", "running", "idle", "shutdown"].slice(seen[0]?.type === "pending_init" ? 0 : 1)
      )
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("§24 an answer to a question is substituted into later strings, in this turn and the next", () =>
    Effect.gen(function* () {
      const agent = yield* spawn({
        turns: [
          {
            steps: [
              {
                type: "ask",
                questions: [
                  { id: "lang", question: "Which language?" },
                  { id: "x", question: "?" }
                ]
              },
              { type: "message", text: "writing {{answer.lang}}{{answer.x}}{{answer.never}}" }
            ]
          },
          { steps: [{ type: "message", text: "still {{answer.lang}}" }] }
        ]
      })
      yield* started(agent)
      const first = yield* playTurn(agent, "t1", answerAll("denied", { lang: "Rust" }))
      const request = first.find((event) => event.msg.type === "request_user_input")
      assert.strictEqual(request?.id, "t1") // §3: answered by the event id, the turn id
      assert.deepStrictEqual(messagesOf(first, "turn_complete")[0], {
        type: "turn_complete",
        turnId: "t1",
        lastAgentMessage: "writing Rust"
      })
      const second = yield* playTurn(agent, "t2")
      assert.deepStrictEqual(messagesOf(second, "agent_message"), [{ type: "agent_message", message: "still Rust" }])
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("§24 sleep waits on the Effect clock", () =>
    Effect.gen(function* () {
      const agent = yield* spawn({
        turns: [
          {
            steps: [
              { type: "message", text: "before" },
              { type: "sleep", ms: 60_000 },
              { type: "message", text: "after" }
            ]
          }
        ]
      })
      yield* started(agent)
      yield* agent.submit({ id: "t1", op: userText("go") })
      assert.deepStrictEqual(types(yield* takeUntil(agent, (e) => e.msg.type === "agent_message")), [
        "turn_started",
        "agent_message"
      ])
      const rest = yield* Effect.fork(takeUntil(agent, (e) => e.msg.type === "turn_complete"))
      yield* TestClock.adjust("59 seconds")
      assert.isTrue(Option.isNone(yield* Fiber.poll(rest)))
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(types(yield* Fiber.join(rest)), ["agent_message", "turn_complete"])
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("§24 a non-fatal fail reports an error and the turn completes", () =>
    Effect.gen(function* () {
      const agent = yield* spawn({
        turns: [
          {
            steps: [
              { type: "fail", message: "tool broke" },
              { type: "message", text: "recovered" }
            ]
          }
        ]
      })
      yield* started(agent)
      const events = yield* playTurn(agent, "t1")
      assert.deepStrictEqual(types(events), ["turn_started", "error", "agent_message", "turn_complete"])
      assert.deepStrictEqual(events[1]?.msg, { type: "error", message: "tool broke" })
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("§24 a fatal fail kills the agent: events end without shutdown_complete, status errored, AgentClosed", () =>
    Effect.gen(function* () {
      const agent = yield* spawn({
        turns: [
          {
            steps: [
              { type: "fail", message: "backend crashed", fatal: true },
              { type: "message", text: "never" }
            ]
          }
        ]
      })
      yield* started(agent)
      yield* agent.submit({ id: "t1", op: userText("go") })
      const remaining = yield* drain(agent)
      assert.deepStrictEqual(
        remaining.map((e) => e.msg),
        [
          { type: "turn_started", turnId: "t1" },
          { type: "error", message: "backend crashed" }
        ]
      )
      assert.deepStrictEqual(yield* agent.status.get, { type: "errored", message: "backend crashed" })
      assert.strictEqual((yield* Effect.flip(agent.submit({ id: "t2", op: userText("again") })))._tag, "AgentClosed")
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("§24 a user_input during a turn is queued and starts once the turn ends", () =>
    Effect.gen(function* () {
      const agent = yield* spawn({
        turns: [
          {
            steps: [
              { type: "sleep", ms: 1000 },
              { type: "message", text: "one" }
            ]
          },
          { steps: [{ type: "message", text: "two" }] }
        ]
      })
      yield* started(agent)
      yield* agent.submit({ id: "t1", op: userText("first") })
      yield* agent.submit({ id: "t2", op: userText("second") })
      const reader = yield* Effect.fork(takeUntil(agent, (e) => e.msg.type === "turn_complete" && e.id === "t2"))
      yield* TestClock.adjust("1 second")
      const events = yield* Fiber.join(reader)
      assert.deepStrictEqual(
        events.map((e) => [e.id, e.msg.type]),
        [
          ["t1", "turn_started"],
          ["t1", "agent_message"],
          ["t1", "turn_complete"],
          ["t2", "turn_started"],
          ["t2", "agent_message"],
          ["t2", "turn_complete"]
        ]
      )
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("§24 more inputs than turns: an error, then turn_complete", () =>
    Effect.gen(function* () {
      const agent = yield* spawn({ turns: [{ steps: [] }] })
      yield* started(agent)
      yield* playTurn(agent, "t1")
      assert.deepStrictEqual(yield* playTurn(agent, "t2"), [
        { id: "t2", msg: { type: "turn_started", turnId: "t2" } },
        { id: "t2", msg: { type: "error", message: "script has no turn 2 (it has 1)" } },
        { id: "t2", msg: { type: "turn_complete", turnId: "t2" } }
      ])
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("§24 interrupt aborts a waiting turn; the next input runs the next turn; idle interrupt is a no-op", () =>
    Effect.gen(function* () {
      const agent = yield* spawn({
        turns: [
          {
            steps: [
              { type: "message", text: "asking" },
              { type: "ask", questions: [{ id: "q", question: "?" }] }
            ]
          },
          { steps: [{ type: "message", text: "second" }] }
        ]
      })
      yield* started(agent)
      yield* agent.submit({ id: "t1", op: userText("go") })
      yield* takeUntil(agent, (e) => e.msg.type === "request_user_input")
      yield* agent.submit({ id: "stop", op: { type: "interrupt" } })
      assert.deepStrictEqual(yield* agent.events.take, {
        id: "t1",
        msg: { type: "turn_aborted", turnId: "t1", reason: "interrupted" }
      })
      assert.deepStrictEqual(yield* agent.status.get, { type: "idle" })
      yield* agent.submit({ id: "idle-stop", op: { type: "interrupt" } })
      assert.deepStrictEqual(types(yield* playTurn(agent, "t2")), ["turn_started", "agent_message", "turn_complete"])
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped(
    "§24 shutdown aborts the running turn, ends with shutdown_complete, then submits fail with AgentClosed",
    () =>
      Effect.gen(function* () {
        const agent = yield* spawn({ turns: [{ steps: [{ type: "sleep", ms: 600_000 }] }, { steps: [] }] })
        yield* started(agent)
        yield* agent.submit({ id: "t1", op: userText("go") })
        yield* agent.submit({ id: "t2", op: userText("queued, dropped by shutdown") })
        yield* takeUntil(agent, (e) => e.msg.type === "turn_started")
        yield* agent.submit({ id: "bye", op: { type: "shutdown" } })
        assert.strictEqual(
          (yield* Effect.flip(agent.submit({ id: "late", op: { type: "interrupt" } })))._tag,
          "AgentClosed"
        )
        assert.deepStrictEqual(yield* drain(agent), [
          { id: "t1", msg: { type: "turn_aborted", turnId: "t1", reason: "interrupted" } },
          { id: "bye", msg: { type: "shutdown_complete" } }
        ])
        assert.deepStrictEqual(yield* agent.status.get, { type: "shutdown" })
      }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("§24 unexpected ops are ignored with a warning, never a crash", () =>
    Effect.gen(function* () {
      const agent = yield* spawn({ turns: [{ steps: [{ type: "message", text: "fine" }] }] })
      yield* started(agent)
      yield* agent.submit({ id: "a1", op: { type: "exec_approval", id: "call-9-9", decision: "approved" } })
      yield* agent.submit({ id: "a2", op: { type: "patch_approval", id: "nobody", decision: "denied" } })
      yield* agent.submit({ id: "a3", op: { type: "user_input_answer", id: "t0", response: { answers: {} } } })
      const warnings = yield* takeUntil(agent, (e) => e.id === "a3")
      assert.deepStrictEqual(types(warnings), ["warning", "warning", "warning"])
      assert.deepStrictEqual(warnings[0], {
        id: "a1",
        msg: { type: "warning", message: "no exec approval is pending with id call-9-9; exec_approval ignored" }
      })
      assert.deepStrictEqual(types(yield* playTurn(agent, "t1")), ["turn_started", "agent_message", "turn_complete"])
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("§6 a full events mailbox holds a fast script back until the reader takes", () =>
    Effect.gen(function* () {
      const agent = yield* spawn(
        { turns: [{ steps: [{ type: "message", text: "x".repeat(100), deltas: 100 }] }] },
        {
          eventsCapacity: 8
        }
      )
      yield* started(agent)
      yield* agent.submit({ id: "t1", op: userText("go") })
      const size = Effect.map(
        agent.events.size,
        Option.getOrElse(() => -1)
      )
      while ((yield* size) < 8) yield* Effect.yieldNow()
      for (let i = 0; i < 50; i++) yield* Effect.yieldNow() // room for the script to run ahead, if it could
      assert.strictEqual(yield* size, 8)
      const events = yield* takeUntil(agent, (e) => e.msg.type === "turn_complete")
      assert.strictEqual(events.length, 103)
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("§24 closing the spawn scope ends the events and refuses ops", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const agent = yield* spawn({ turns: [{ steps: [{ type: "sleep", ms: 600_000 }] }] }).pipe(Scope.extend(scope))
      yield* started(agent)
      yield* agent.submit({ id: "t1", op: userText("go") })
      yield* takeUntil(agent, (e) => e.msg.type === "turn_started")
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(yield* drain(agent), [])
      assert.strictEqual((yield* Effect.flip(agent.submit({ id: "t2", op: userText("late") })))._tag, "AgentClosed")
    }).pipe(Effect.provide(NodeContext.layer))
  )
})

layer(NodeContext.layer, { excludeTestServices: true })("Scripted agent, real processes and files", (it) => {
  const inTempDir = Effect.flatMap(FileSystem.FileSystem, (fs) =>
    fs.makeTempDirectoryScoped({ prefix: "deputy-scripted-" })
  )

  it.scoped("§24 exec approved runs a real command and reports its exit code and output", () =>
    Effect.gen(function* () {
      const dir = yield* inTempDir
      const agent = yield* spawn(
        {
          turns: [
            {
              steps: [
                {
                  type: "exec",
                  command: ["sh", "-c", "echo made > made.txt; echo out; echo err >&2; exit 3"],
                  reason: "make a file"
                }
              ]
            }
          ]
        },
        { cwd: dir }
      )
      yield* started(agent)
      const events = yield* playTurn(agent, "t1", answerAll("approved"))
      assert.deepStrictEqual(types(events), [
        "turn_started",
        "exec_approval_request",
        "exec_command_begin",
        "exec_command_end",
        "turn_complete"
      ])
      assert.deepStrictEqual(events[1]?.msg, {
        type: "exec_approval_request",
        callId: "call-0-0",
        turnId: "t1",
        command: ["sh", "-c", "echo made > made.txt; echo out; echo err >&2; exit 3"],
        cwd: dir,
        reason: "make a file"
      })
      assert.deepStrictEqual(events[3]?.msg, {
        type: "exec_command_end",
        callId: "call-0-0",
        turnId: "t1",
        exitCode: 3,
        stdout: "out\n",
        stderr: "err\n"
      })
      assert.strictEqual(readFileSync(join(dir, "made.txt"), "utf8"), "made\n")
    })
  )

  it.scoped("§24 a command reads an empty stdin; a missing program ends with exit code null and says why", () =>
    Effect.gen(function* () {
      const dir = yield* inTempDir
      const agent = yield* spawn(
        {
          turns: [
            {
              steps: [
                { type: "exec", command: ["cat"], needsApproval: false },
                { type: "exec", command: ["deputy-no-such-program"], needsApproval: false },
                { type: "exec", command: ["true"], cwd: "missing-dir", needsApproval: false }
              ]
            }
          ]
        },
        { cwd: dir }
      )
      yield* started(agent)
      const ends = messagesOf(yield* playTurn(agent, "t1"), "exec_command_end")
      assert.deepStrictEqual(ends[0], {
        type: "exec_command_end",
        callId: "call-0-0",
        turnId: "t1",
        exitCode: 0,
        stdout: "",
        stderr: ""
      })
      assert.strictEqual(ends[1]?.exitCode, null)
      assert.include(ends[1]?.stderr, "deputy-no-such-program")
      assert.strictEqual(ends[2]?.exitCode, null)
      assert.include(ends[2]?.stderr, "missing-dir")
    })
  )

  it.scoped("§24 exec denied does not run and the turn goes on; abort ends the turn with turn_aborted", () =>
    Effect.gen(function* () {
      const dir = yield* inTempDir
      const touch = (name: string) => ({ type: "exec" as const, command: ["touch", name] })
      const agent = yield* spawn(
        {
          turns: [
            { steps: [touch("denied"), { type: "message", text: "went on" }] },
            { steps: [touch("aborted"), { type: "message", text: "never" }] }
          ]
        },
        { cwd: dir }
      )
      yield* started(agent)
      const denied = yield* playTurn(agent, "t1", answerAll("denied"))
      assert.deepStrictEqual(types(denied), ["turn_started", "exec_approval_request", "agent_message", "turn_complete"])
      const aborted = yield* playTurn(agent, "t2", answerAll("abort"))
      assert.deepStrictEqual(types(aborted), ["turn_started", "exec_approval_request", "turn_aborted"])
      assert.deepStrictEqual(aborted[2]?.msg, { type: "turn_aborted", turnId: "t2", reason: "interrupted" })
      assert.isFalse(existsSync(join(dir, "denied")))
      assert.isFalse(existsSync(join(dir, "aborted")))
      assert.deepStrictEqual(yield* agent.status.get, { type: "idle" })
    })
  )

  it.scoped("§24 approved_for_session: the same argv is not asked again", () =>
    Effect.gen(function* () {
      const dir = yield* inTempDir
      const agent = yield* spawn(
        {
          turns: [
            {
              steps: [
                { type: "exec", command: ["true"] },
                { type: "exec", command: ["true"] }
              ]
            },
            {
              steps: [
                { type: "exec", command: ["true"] },
                { type: "exec", command: ["true", "other"] }
              ]
            }
          ]
        },
        { cwd: dir }
      )
      yield* started(agent)
      const first = yield* playTurn(agent, "t1", answerAll("approved_for_session"))
      assert.strictEqual(messagesOf(first, "exec_approval_request").length, 1)
      assert.strictEqual(messagesOf(first, "exec_command_end").length, 2)
      const second = yield* playTurn(agent, "t2", answerAll("approved"))
      assert.deepStrictEqual(
        messagesOf(second, "exec_approval_request").map((msg) => msg.command),
        [["true", "other"]]
      )
    })
  )

  it.scoped("§24 patch add, update and delete really change files", () =>
    Effect.gen(function* () {
      const dir = yield* inTempDir
      writeFileSync(join(dir, "keep.txt"), "a\nb\nc\n")
      writeFileSync(join(dir, "gone.txt"), "bye\n")
      const changes = {
        "sub/new.txt": { type: "add" as const, content: "new\n" },
        "keep.txt": { type: "update" as const, unifiedDiff: "@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n" },
        "gone.txt": { type: "delete" as const }
      }
      const agent = yield* spawn({ turns: [{ steps: [{ type: "patch", changes, reason: "tidy" }] }] }, { cwd: dir })
      yield* started(agent)
      const events = yield* playTurn(agent, "t1", answerAll("approved"))
      assert.deepStrictEqual(types(events), [
        "turn_started",
        "apply_patch_approval_request",
        "patch_apply_begin",
        "patch_apply_end",
        "turn_complete"
      ])
      assert.deepStrictEqual(events[2]?.msg, {
        type: "patch_apply_begin",
        callId: "call-0-0",
        turnId: "t1",
        autoApproved: false,
        changes
      })
      const end = messagesOf(events, "patch_apply_end")[0]
      assert.strictEqual(end?.success, true)
      assert.strictEqual(end?.stderr, "")
      assert.strictEqual(readFileSync(join(dir, "sub/new.txt"), "utf8"), "new\n")
      assert.strictEqual(readFileSync(join(dir, "keep.txt"), "utf8"), "a\nB\nc\n")
      assert.isFalse(existsSync(join(dir, "gone.txt")))
    })
  )

  it.scoped("§24 a diff that does not apply gives success false naming the file, and changes nothing", () =>
    Effect.gen(function* () {
      const dir = yield* inTempDir
      writeFileSync(join(dir, "keep.txt"), "a\nb\nc\n")
      const agent = yield* spawn(
        {
          turns: [
            {
              steps: [
                {
                  type: "patch",
                  changes: {
                    "added.txt": { type: "add", content: "x" },
                    "keep.txt": { type: "update", unifiedDiff: "@@ -1,3 +1,3 @@\n a\n-nope\n+B\n c\n" }
                  }
                },
                { type: "patch", changes: { "keep.txt": { type: "update", unifiedDiff: "not a diff" } } }
              ]
            }
          ]
        },
        { cwd: dir }
      )
      yield* started(agent)
      const ends = messagesOf(yield* playTurn(agent, "t1", answerAll("approved")), "patch_apply_end")
      assert.deepStrictEqual(
        ends.map((end) => [end.success, end.stderr]),
        [
          [false, "keep.txt: the diff does not apply\n"],
          [false, "keep.txt: the diff does not apply: the diff has no hunks\n"]
        ]
      )
      assert.isFalse(existsSync(join(dir, "added.txt")))
      assert.strictEqual(readFileSync(join(dir, "keep.txt"), "utf8"), "a\nb\nc\n")
    })
  )

  it.scoped("§24 interrupt aborts the turn and kills its child process", () =>
    Effect.gen(function* () {
      const dir = yield* inTempDir
      const agent = yield* spawn(
        {
          turns: [
            {
              steps: [
                { type: "exec", command: ["sh", "-c", "echo $$ > pid; exec sleep 30"], needsApproval: false },
                { type: "message", text: "never" }
              ]
            }
          ]
        },
        { cwd: dir }
      )
      yield* started(agent)
      yield* agent.submit({ id: "t1", op: userText("go") })
      yield* takeUntil(agent, (e) => e.msg.type === "exec_command_begin")
      const pid = yield* waitForPid(join(dir, "pid"))
      assert.isTrue(isAlive(pid))
      yield* agent.submit({ id: "stop", op: { type: "interrupt" } })
      assert.deepStrictEqual(yield* agent.events.take, {
        id: "t1",
        msg: { type: "turn_aborted", turnId: "t1", reason: "interrupted" }
      })
      assert.isFalse(isAlive(pid))
    })
  )

  it.scoped("§24 closing the spawn scope kills the running child process", () =>
    Effect.gen(function* () {
      const dir = yield* inTempDir
      const scope = yield* Scope.make()
      const agent = yield* spawn(
        {
          turns: [
            { steps: [{ type: "exec", command: ["sh", "-c", "echo $$ > pid; exec sleep 30"], needsApproval: false }] }
          ]
        },
        { cwd: dir }
      ).pipe(Scope.extend(scope))
      yield* agent.submit({ id: "t1", op: userText("go") })
      yield* takeUntil(agent, (e) => e.msg.type === "exec_command_begin")
      const pid = yield* waitForPid(join(dir, "pid"))
      yield* Scope.close(scope, Exit.void)
      assert.isFalse(isAlive(pid))
    })
  )

  it.scoped("§24 behind a Delegate: a one-shot turn runs the command the parent approved", () =>
    Effect.gen(function* () {
      const dir = yield* inTempDir
      const backend = Scripted.backend(
        script({
          turns: [
            {
              steps: [
                { type: "exec", command: ["touch", "done"] },
                { type: "message", text: "touched" }
              ]
            }
          ]
        }),
        { cwd: dir }
      )
      const delegate = yield* Delegate.oneShot(backend.spawn({ threadId: THREAD }), {
        type: "user_input",
        items: [{ type: "text", text: "go" }]
      })
      const seen = yield* Stream.runCollect(delegate.events).pipe(Effect.map(Chunk.toArray))
      assert.deepStrictEqual(types(seen), [
        "turn_started",
        "exec_command_begin",
        "exec_command_end",
        "agent_message",
        "turn_complete"
      ])
      assert.isTrue(existsSync(join(dir, "done")))
    }).pipe(Effect.provide(Parent.layerCallbacks({ execApproval: () => "approved" })))
  )

  it.scoped("§4 cancelling a Delegate mid-command kills the child and shuts the agent down", () =>
    Effect.gen(function* () {
      const dir = yield* inTempDir
      const backend = Scripted.backend(
        script({ turns: [{ steps: [{ type: "exec", command: ["sh", "-c", "echo $$ > pid; exec sleep 30"] }] }] }),
        { cwd: dir }
      )
      const delegate = yield* Delegate.interactive(backend.spawn({ threadId: THREAD }))
      yield* delegate.submit(userText("go"), "t1")
      yield* Stream.runDrain(delegate.events.pipe(Stream.takeUntil((e) => e.msg.type === "exec_command_begin")))
      const pid = yield* waitForPid(join(dir, "pid"))
      yield* delegate.cancel
      yield* delegate.awaitShutdown
      assert.isFalse(isAlive(pid))
      assert.deepStrictEqual(yield* delegate.status.get, { type: "shutdown" })
    }).pipe(Effect.provide(Parent.layerCallbacks({ execApproval: () => "approved" })))
  )

  it.scoped("§12 a resumed agent goes on with the next turn, remembering answers and session approvals", () =>
    Effect.gen(function* () {
      const dir = yield* inTempDir
      const at = "2025-01-01T00:00:00.000Z"
      const event = (id: string, msg: EventMsg): RolloutItem => ({ type: "event", at, event: { id, msg } })
      const submission = (id: string, op: Op): RolloutItem => ({ type: "submission", at, submission: { id, op } })
      const history: Array<RolloutItem> = [
        submission("t1", userText("first")),
        event("t1", { type: "turn_started", turnId: "t1" }),
        event("t1", { type: "exec_approval_request", callId: "call-0-0", turnId: "t1", command: ["true"], cwd: dir }),
        submission("a1", { type: "exec_approval", id: "call-0-0", decision: "approved_for_session" }),
        event("t1", {
          type: "request_user_input",
          callId: "call-0-1",
          turnId: "t1",
          questions: [{ id: "name", question: "?" }]
        }),
        submission("a2", {
          type: "user_input_answer",
          id: "t1",
          response: { answers: { name: { answers: ["Ada"] } } }
        }),
        event("t1", { type: "turn_complete", turnId: "t1" })
      ]
      const agent = yield* spawn(
        {
          turns: [
            { steps: [] },
            {
              steps: [
                { type: "exec", command: ["true"] },
                { type: "message", text: "hi {{answer.name}}" }
              ]
            }
          ]
        },
        { cwd: dir, history }
      )
      assert.strictEqual((yield* agent.events.take).msg.type, "session_configured")
      const events = yield* playTurn(agent, "t2")
      assert.deepStrictEqual(types(events), [
        "turn_started",
        "exec_command_begin",
        "exec_command_end",
        "agent_message",
        "turn_complete"
      ])
      assert.strictEqual(messagesOf(events, "exec_command_begin")[0]?.callId, "call-1-0")
      assert.deepStrictEqual(messagesOf(events, "agent_message"), [{ type: "agent_message", message: "hi Ada" }])
    })
  )

  it.scoped("§24 the same script and the same answers give the same events", () =>
    Effect.gen(function* () {
      const dir = yield* inTempDir
      const input: z.input<typeof Script> = {
        turns: [
          {
            steps: [
              { type: "message", text: "plan", deltas: 4 },
              { type: "ask", questions: [{ id: "name", question: "File name?" }] },
              { type: "exec", command: ["echo", "{{answer.name}}"] },
              { type: "patch", changes: { "{{answer.name}}.txt": { type: "add", content: "hi {{answer.name}}\n" } } },
              { type: "token_count", input: 1, output: 2 }
            ]
          },
          {
            repeat: 2,
            steps: [
              { type: "reasoning", text: "again", deltas: 2 },
              { type: "exec", command: ["true"] }
            ]
          }
        ]
      }
      const run = Effect.scoped(
        Effect.gen(function* () {
          const agent = yield* spawn(input, { cwd: dir })
          const answer = answerAll("approved", { name: "notes" })
          const events = [...(yield* started(agent)), ...(yield* playTurn(agent, "t1", answer))]
          events.push(...(yield* playTurn(agent, "t2", answer)))
          yield* agent.submit({ id: "bye", op: { type: "shutdown" } })
          events.push(...(yield* drain(agent)))
          return events
        })
      )
      const first = yield* run
      const second = yield* run
      assert.deepStrictEqual(second, first)
      assert.strictEqual(readFileSync(join(dir, "notes.txt"), "utf8"), "hi notes\n")
      assert.deepStrictEqual(messagesOf(first, "exec_command_end")[0]?.stdout, "notes\n")
      assert.strictEqual(first.at(-1)?.msg.type, "shutdown_complete")
    })
  )
})

/** Waits (real time, in small steps) for the file a child writes its pid to. */
const waitForPid = (path: string): Effect.Effect<number> =>
  Effect.suspend(() => {
    const text = existsSync(path) ? readFileSync(path, "utf8").trim() : ""
    return text === "" ? Effect.zipRight(Effect.sleep("10 millis"), waitForPid(path)) : Effect.succeed(Number(text))
  })

/** Plays the ThreadManager's side of spawn steps: records each request and holds it until the test ends the child. */
const fakeSpawner = (names: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const requests: Array<ChildRequest<Scripted.Requirements>> = []
    const interrupted: Array<string> = []
    const endings = new Map<string, Deferred.Deferred<ChildOutcome, SpawnFailed>>()
    for (const name of names) endings.set(name, yield* Deferred.make<ChildOutcome, SpawnFailed>())
    const spawnChild: SpawnChild = (request) =>
      Effect.gen(function* () {
        const name = request.name ?? "?"
        requests.push(request as ChildRequest<unknown> as ChildRequest<Scripted.Requirements>)
        yield* request.onStarted?.(childId(name)) ?? Effect.void
        return yield* Deferred.await(endings.get(name)!)
      }).pipe(Effect.onInterrupt(() => Effect.sync(() => interrupted.push(request.name ?? "?"))))
    /** Ends child `name` with `lastAgentMessage`. */
    const end = (name: string, lastAgentMessage?: string) => {
      const outcome: ChildOutcome = {
        threadId: childId(name),
        status: "completed",
        ...(lastAgentMessage === undefined ? {} : { lastAgentMessage })
      }
      return Deferred.succeed(endings.get(name)!, outcome)
    }
    const fail = (name: string) =>
      Deferred.fail(endings.get(name)!, new SpawnFailed({ backend: "scripted", reason: `no room for ${name}` }))
    return { spawnChild, requests, interrupted, end, fail }
  })

const childId = (name: string) => `00000000-0000-4000-8000-0000000000${name === "a" ? "0a" : "0b"}` as ThreadId

const childScript = (text: string): z.input<typeof Script> => ({ turns: [{ steps: [{ type: "message", text }] }] })

const countOf = (type: EventMsg["type"], n: number) => {
  let seen = 0
  return (event: Event) => event.msg.type === type && ++seen === n
}

describe("Scripted agent, spawn steps", () => {
  const tree: z.input<typeof Script> = {
    turns: [
      {
        steps: [
          { type: "ask", questions: [{ id: "topic", question: "?" }] },
          {
            type: "spawn",
            agents: [
              { name: "a", input: "review {{answer.topic}}", script: childScript("A says {{answer.topic}}") },
              { name: "b", input: "test it", script: childScript("B") }
            ]
          },
          { type: "message", text: "a: {{child.a}}; b: {{child.b}}; c: {{child.c}}" }
        ]
      }
    ]
  }

  it.scoped("§24 spawn starts every child at once, reports each, and later steps read {{child.<name>}}", () =>
    Effect.gen(function* () {
      const fake = yield* fakeSpawner(["a", "b"])
      const agent = yield* spawn(tree, { spawnChild: fake.spawnChild, depth: 1 })
      yield* started(agent)
      yield* agent.submit({ id: "t1", op: userText("go") })
      // Both children exist before either ends: they run concurrently.
      const first = yield* takeUntil(agent, countOf("sub_agent_started", 2), answerAll("approved", { topic: "auth" }))
      assert.deepStrictEqual(
        fake.requests.map((r) => [r.name, r.input, r.backend.name]),
        [
          ["a", "review auth", "scripted"],
          ["b", "test it", "scripted"]
        ]
      )
      assert.deepStrictEqual(messagesOf(first, "sub_agent_started"), [
        { type: "sub_agent_started", threadId: childId("a"), name: "a", depth: 2 },
        { type: "sub_agent_started", threadId: childId("b"), name: "b", depth: 2 }
      ])
      yield* fake.end("b", "B done")
      yield* fake.end("a")
      const rest = yield* takeUntil(agent, (e) => e.msg.type === "turn_complete")
      assert.deepStrictEqual(
        rest.map((e) => [e.id, e.msg]),
        [
          [
            "t1",
            {
              type: "sub_agent_ended",
              threadId: childId("b"),
              name: "b",
              status: "completed",
              lastAgentMessage: "B done"
            }
          ],
          ["t1", { type: "sub_agent_ended", threadId: childId("a"), name: "a", status: "completed" }],
          ["t1", { type: "agent_message", message: "a: ; b: B done; c: " }],
          ["t1", { type: "turn_complete", turnId: "t1", lastAgentMessage: "a: ; b: B done; c: " }]
        ]
      )
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("§24 a child's backend plays its own script in the parent's cwd, filling its own templates", () =>
    Effect.gen(function* () {
      const fake = yield* fakeSpawner(["a", "b"])
      const agent = yield* spawn(tree, { spawnChild: fake.spawnChild })
      yield* started(agent)
      yield* agent.submit({ id: "t1", op: userText("go") })
      yield* takeUntil(agent, countOf("sub_agent_started", 2), answerAll("approved", { topic: "auth" }))
      const child = yield* fake.requests[0]!.backend.spawn({ threadId: childId("a") })
      const startup = yield* started(child)
      assert.deepStrictEqual(startup[0]?.msg, {
        type: "session_configured",
        threadId: childId("a"),
        backend: "scripted",
        cwd: "/work"
      })
      // The child has no answers of its own: the parent's were not substituted into its script.
      assert.deepStrictEqual(messagesOf(yield* playTurn(child, "c1"), "agent_message"), [
        { type: "agent_message", message: "A says " }
      ])
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("§24 a child that cannot start is an error event; its siblings and the turn go on", () =>
    Effect.gen(function* () {
      const fake = yield* fakeSpawner(["a", "b"])
      const agent = yield* spawn(tree, { spawnChild: fake.spawnChild })
      yield* started(agent)
      yield* agent.submit({ id: "t1", op: userText("go") })
      yield* takeUntil(agent, countOf("sub_agent_started", 2), answerAll("approved"))
      yield* fake.fail("a")
      yield* fake.end("b", "ok")
      const rest = yield* takeUntil(agent, (e) => e.msg.type === "turn_complete")
      assert.deepStrictEqual(types(rest), ["error", "sub_agent_ended", "agent_message", "turn_complete"])
      assert.deepStrictEqual(rest[0]?.msg, {
        type: "error",
        message: "a: scripted could not start an agent: no room for a"
      })
      assert.deepStrictEqual(messagesOf(rest, "agent_message")[0]?.message, "a: ; b: ok; c: ")
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("§24 without spawnChild (no ThreadManager) spawn is an error event and the turn goes on", () =>
    Effect.gen(function* () {
      const agent = yield* spawn(tree)
      yield* started(agent)
      const events = yield* playTurn(agent, "t1", answerAll("approved", { topic: "x" }))
      assert.deepStrictEqual(types(events), [
        "turn_started",
        "request_user_input",
        "error",
        "agent_message",
        "turn_complete"
      ])
      assert.deepStrictEqual(messagesOf(events, "error"), [{ type: "error", message: "spawn needs a ThreadManager" }])
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("§4 interrupting the turn interrupts every pending spawnChild (cancellation reaches the children)", () =>
    Effect.gen(function* () {
      const fake = yield* fakeSpawner(["a", "b"])
      const agent = yield* spawn(tree, { spawnChild: fake.spawnChild })
      yield* started(agent)
      yield* agent.submit({ id: "t1", op: userText("go") })
      yield* takeUntil(agent, countOf("sub_agent_started", 2), answerAll("approved"))
      yield* agent.submit({ id: "stop", op: { type: "interrupt" } })
      const rest = yield* takeUntil(agent, (e) => e.msg.type === "turn_aborted")
      assert.deepStrictEqual(types(rest), ["turn_aborted"])
      assert.deepStrictEqual([...fake.interrupted].sort(), ["a", "b"])
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("§12 a resumed agent remembers its children's last messages", () =>
    Effect.gen(function* () {
      const at = "2025-01-01T00:00:00.000Z"
      const history: Array<RolloutItem> = [
        { type: "submission", at, submission: { id: "t1", op: userText("go") } },
        { type: "event", at, event: { id: "t1", msg: { type: "turn_started", turnId: "t1" } } },
        {
          type: "event",
          at,
          event: {
            id: "t1",
            msg: {
              type: "sub_agent_ended",
              threadId: childId("a"),
              name: "a",
              status: "completed",
              lastAgentMessage: "hi"
            }
          }
        },
        { type: "event", at, event: { id: "t1", msg: { type: "turn_complete", turnId: "t1" } } }
      ]
      const agent = yield* spawn(
        { turns: [{ steps: [] }, { steps: [{ type: "message", text: "a said {{child.a}}" }] }] },
        { history }
      )
      yield* started(agent)
      assert.deepStrictEqual(messagesOf(yield* playTurn(agent, "t2"), "agent_message"), [
        { type: "agent_message", message: "a said hi" }
      ])
    }).pipe(Effect.provide(NodeContext.layer))
  )
})

layer(NodeContext.layer, { excludeTestServices: true })("Scripted agent, resumed mid-turn", (it) => {
  const inTempDir = Effect.flatMap(FileSystem.FileSystem, (fs) =>
    fs.makeTempDirectoryScoped({ prefix: "deputy-scripted-" })
  )
  const at = "2025-01-01T00:00:00.000Z"
  const event = (id: string, msg: EventMsg): RolloutItem => ({ type: "event", at, event: { id, msg } })
  const submission = (id: string, op: Op): RolloutItem => ({ type: "submission", at, submission: { id, op } })
  /** Turn 0: a message, a command appending to `log`, a message; turn 1: one message. */
  const twoTurns = (dir: string): z.input<typeof Script> => ({
    turns: [
      {
        steps: [
          { type: "message", text: "before" },
          { type: "exec", command: ["sh", "-c", `echo ran >> ${join(dir, "log")}`] },
          { type: "message", text: "after" }
        ]
      },
      { steps: [{ type: "message", text: "second" }] }
    ]
  })
  const request = (dir: string): EventMsg => ({
    type: "exec_approval_request",
    callId: "call-0-1",
    turnId: "t1",
    command: ["sh", "-c", `echo ran >> ${join(dir, "log")}`],
    cwd: dir
  })

  it.scoped(
    "§24 a history cut while an approval was pending: the same request is asked again, then the turn ends",
    () =>
      Effect.gen(function* () {
        const dir = yield* inTempDir
        const history: Array<RolloutItem> = [
          submission("t1", userText("go")),
          event("t1", { type: "turn_started", turnId: "t1" }),
          event("t1", { type: "agent_message", message: "before" }),
          event("t1", request(dir))
        ]
        const agent = yield* spawn(twoTurns(dir), { cwd: dir, history })
        assert.strictEqual((yield* agent.events.take).msg.type, "session_configured")
        const asked = yield* agent.events.take
        assert.deepStrictEqual(asked, { id: "t1", msg: request(dir) }) // same event id, call id and turn id
        assert.deepStrictEqual(yield* agent.status.get, { type: "running", turnId: "t1" })
        yield* agent.submit({ id: "a1", op: answerAll("approved")(asked)! })
        const rest = yield* takeUntil(agent, (e) => isTurnEndOf(e, "t1"))
        assert.deepStrictEqual(types(rest), [
          "exec_command_begin",
          "exec_command_end",
          "agent_message",
          "turn_complete"
        ])
        assert.deepStrictEqual(rest.at(-1)?.msg, { type: "turn_complete", turnId: "t1", lastAgentMessage: "after" })
        assert.strictEqual(readFileSync(join(dir, "log"), "utf8"), "ran\n")
        // The next input plays the next script turn.
        assert.deepStrictEqual(messagesOf(yield* playTurn(agent, "t2"), "agent_message"), [
          { type: "agent_message", message: "second" }
        ])
      })
  )

  it.scoped("§24 a history cut after a finished command: it is not run again; the turn goes on after it", () =>
    Effect.gen(function* () {
      const dir = yield* inTempDir
      const history: Array<RolloutItem> = [
        submission("t1", userText("go")),
        event("t1", { type: "turn_started", turnId: "t1" }),
        event("t1", { type: "agent_message", message: "before" }),
        event("t1", request(dir)),
        submission("a1", { type: "exec_approval", id: "call-0-1", turnId: "t1", decision: "approved" }),
        event("t1", { type: "exec_command_begin", callId: "call-0-1", turnId: "t1", command: ["sh"], cwd: dir }),
        event("t1", { type: "exec_command_end", callId: "call-0-1", turnId: "t1", exitCode: 0, stdout: "", stderr: "" })
      ]
      const agent = yield* spawn(twoTurns(dir), { cwd: dir, history })
      yield* started(agent)
      const rest = yield* takeUntil(agent, (e) => isTurnEndOf(e, "t1"))
      assert.deepStrictEqual(
        rest.map((e) => [e.id, e.msg]),
        [
          ["t1", { type: "agent_message", message: "after" }],
          ["t1", { type: "turn_complete", turnId: "t1", lastAgentMessage: "after" }]
        ]
      )
      assert.isFalse(existsSync(join(dir, "log")))
    })
  )

  it.scoped("§24 a history cut after the answer but before the command: it runs without asking again", () =>
    Effect.gen(function* () {
      const dir = yield* inTempDir
      const history: Array<RolloutItem> = [
        submission("t1", userText("go")),
        event("t1", { type: "turn_started", turnId: "t1" }),
        event("t1", { type: "agent_message_delta", delta: "bef" }),
        event("t1", { type: "agent_message", message: "before" }),
        event("t1", request(dir)),
        event("t1", request(dir)), // asked again by an earlier resume
        submission("a1", { type: "exec_approval", id: "call-0-1", turnId: "t1", decision: "approved" }),
        submission("t2", userText("queued")) // submitted during the turn, never started
      ]
      const agent = yield* spawn(twoTurns(dir), { cwd: dir, history })
      yield* started(agent)
      const rest = yield* takeUntil(agent, (e) => isTurnEndOf(e, "t2"))
      assert.deepStrictEqual(
        rest.map((e) => [e.id, e.msg.type]),
        [
          ["t1", "exec_command_begin"],
          ["t1", "exec_command_end"],
          ["t1", "agent_message"],
          ["t1", "turn_complete"],
          ["t2", "turn_started"],
          ["t2", "agent_message"],
          ["t2", "turn_complete"]
        ]
      )
      assert.strictEqual(readFileSync(join(dir, "log"), "utf8"), "ran\n")
    })
  )

  it.scoped("§24 a history whose turn ended, or was interrupted, is not continued", () =>
    Effect.gen(function* () {
      const dir = yield* inTempDir
      const history: Array<RolloutItem> = [
        submission("t1", userText("go")),
        event("t1", { type: "turn_started", turnId: "t1" }),
        event("t1", request(dir)),
        submission("stop", { type: "interrupt" })
      ]
      const agent = yield* spawn(twoTurns(dir), { cwd: dir, history })
      yield* started(agent)
      assert.deepStrictEqual(yield* agent.status.get, { type: "idle" })
      assert.deepStrictEqual(messagesOf(yield* playTurn(agent, "t2"), "agent_message"), [
        { type: "agent_message", message: "second" }
      ])
    })
  )
})

const isTurnEndOf = (event: Event, turnId: string) =>
  (event.msg.type === "turn_complete" || event.msg.type === "turn_aborted") && event.id === turnId
