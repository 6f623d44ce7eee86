/**
 * The `codex` backend (§25): Codex's `app-server` speaking JSON-RPC 2.0 over stdio.
 *
 * An AppServerProcess lives in the scope it was started in and owns the child process (its own
 * process group), the JSON-RPC reader and a table routing messages to threads by Codex thread id;
 * several agents may share one. An agent lives in the scope it was spawned in and owns its events
 * mailbox, an op fiber (ops run one at a time, in order) and its entry in the routing table;
 * `backend(options)` also gives each agent its own process in that scope. A process that dies ends
 * every thread on it with `error` then `turn_aborted` (reason `backend_exited`) and ends their events.
 */
import {
  type Agent,
  AgentClosed,
  type Backend,
  childEnvironment,
  decode,
  Mailboxes,
  resumeWithFallback,
  SpawnFailed,
  type SpawnOptions,
  StatusCell
} from "@deputy/core"
import {
  type AgentStatus,
  type Event,
  type EventMsg,
  type FileChanges,
  newThreadId,
  type Question,
  type ReviewDecision,
  type Submission,
  type ThreadId,
  type UserInputItem
} from "@deputy/protocol"
import { Deferred, Duration, Effect, Mailbox, type Scope } from "effect"
import { BackendExited, type JsonRpcError } from "./errors.js"
import * as Wire from "./internal/appServerWire.js"
import { type Child, spawnChild } from "./internal/childProcess.js"
import { resolveCodexCommand } from "./internal/codexBinary.js"
import { shellWords } from "./internal/shellWords.js"
import * as JsonRpc from "./JsonRpc.js"

/**
 * The thread a server message is for, if its params name one. Params with no `threadId` at all (the
 * process-wide ones, such as rate limits) are not parsed: a failed parse builds an error with a stack.
 */
const threadOf = (params: unknown): string | undefined => {
  if (typeof params !== "object" || params === null || !("threadId" in params)) return undefined
  const scoped = Wire.ThreadScoped.safeParse(params)
  return scoped.success ? scoped.data.threadId : undefined
}

/** The backend's name, in `session_configured` and rollouts. */
export const name = "codex"

const PROCESS_NAME = "codex app-server"
const CLIENT_VERSION = "0.1.0"
const DEFAULT_GRACE = Duration.seconds(2)
const DEFAULT_EVENTS_CAPACITY = 4096
const INITIALIZE_TIMEOUT = Duration.seconds(30)

/** How to run the app-server process. */
export interface ProcessOptions {
  /** The Codex binary. Default: the native binary of the installed `@openai/codex`, else `codex` on PATH. */
  readonly codexPath?: string
  /** Extra arguments after `app-server` (e.g. `["-c", "model=\"o3\""]`). */
  readonly args?: ReadonlyArray<string>
  /** Added to the child's environment, which otherwise holds only PATH, HOME, CODEX_HOME, LANG, LC_*, TMPDIR. */
  readonly env?: Readonly<Record<string, string | undefined>>
  /** The process's working directory (also the default cwd of threads). Default `process.cwd()`. */
  readonly cwd?: string
  /** How long each shutdown step (stdin close, SIGTERM) may take before the next (SIGKILL). Default 2 s. */
  readonly shutdownGrace?: Duration.DurationInput
  /** Called with each process once it is initialized (monitoring; tests use it to watch the pid). */
  readonly onStart?: (process: AppServerProcess) => void
  /** The longest stdout line the process may send, in characters (§36). Default 64 MiB; past it the process's threads end. */
  readonly maxLineLength?: number
}

/** Settings for the threads an agent starts (`thread/start` / `thread/resume` overrides). */
export interface ThreadOptions {
  readonly model?: string
  readonly approvalPolicy?: "untrusted" | "on-request" | "never"
  readonly sandbox?: "read-only" | "workspace-write" | "danger-full-access"
  /** Per-thread config overrides, dotted keys (`{"features.multi_agent": false}`). */
  readonly config?: Readonly<Record<string, unknown>>
  readonly developerInstructions?: string
  /** Capacity of each agent's events mailbox; a full one holds the JSON-RPC reader back (§6). Default 4096. */
  readonly eventsCapacity?: number
}

/** A thread's view of the process it runs on: the messages routed to it, and the process's end. */
interface ThreadSink {
  readonly notify: (method: string, params: unknown) => Effect.Effect<void>
  readonly request: (request: JsonRpc.IncomingRequest) => Effect.Effect<void>
  readonly exited: (reason: BackendExited) => Effect.Effect<void>
}

/** One running `codex app-server`, shareable by several agents. */
export interface AppServerProcess {
  /** The child's pid (also its process group id). */
  readonly pid: number
  /** The working directory the process runs in. */
  readonly cwd: string
  /** The JSON-RPC connection (initialized). */
  readonly rpc: JsonRpc.JsonRpcClient
  /** Waits until the process's output ended; yields how it exited. */
  readonly exited: Effect.Effect<BackendExited>
  /** Sends a signal to the process group (tests use SIGKILL). Never fails. */
  readonly signal: (signal: NodeJS.Signals) => Effect.Effect<void>
  /** Closes stdin, then SIGTERM, then SIGKILL after the grace; done when the process is gone. */
  readonly shutdown: Effect.Effect<void>
  /** Routes a Codex thread's messages to `sink`; a process already gone calls `sink.exited` at once. */
  readonly route: (codexThreadId: string, sink: ThreadSink) => Effect.Effect<void>
  /** Stops routing a Codex thread's messages (they are then logged and, for requests, refused). */
  readonly unroute: (codexThreadId: string) => Effect.Effect<void>
}

/** How many Codex turns of a thread stay mapped to their deputy turn ids (the active one and the last ended). */
const RECENT_TURNS = 16

/**
 * Known notifications deputy has no event for, which `initialize` asks Codex not to send; anything
 * not handled nor listed here is logged at debug.
 */
const IGNORED_NOTIFICATIONS = new Set([
  "thread/started",
  "thread/status/changed",
  "thread/readState/changed",
  "thread/closed",
  "thread/archived",
  "thread/unarchived",
  "thread/name/updated",
  "turn/diff/updated",
  "turn/plan/updated",
  "item/updated",
  "item/reasoning/summaryPartAdded",
  "item/commandExecution/outputDelta",
  "item/fileChange/outputDelta",
  "account/rateLimits/updated",
  "remoteControl/status/changed",
  "mcpServer/startupStatus/updated"
])

/**
 * Starts `codex app-server` in the caller's scope and initializes it (`initialize` with
 * `experimentalApi`, then `initialized`). Closing the scope shuts the process down and ends every
 * thread still on it. Fails with SpawnFailed when the binary cannot start or initialize fails.
 */
export const startProcess = (options: ProcessOptions = {}): Effect.Effect<AppServerProcess, SpawnFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const cwd = options.cwd ?? process.cwd()
    const sinks = new Map<string, ThreadSink>()
    const endAll = (reason: BackendExited) =>
      Effect.suspend(() => {
        const all = [...sinks.values()]
        sinks.clear()
        return Effect.forEach(all, (sink) => sink.exited(reason), { discard: true })
      })
    let child: Child | undefined
    const exitReason = (): BackendExited => {
      const exit = child?.exitNow()
      return new BackendExited({ backend: PROCESS_NAME, code: exit?.code ?? null, signal: exit?.signal ?? null })
    }
    // Runs last on scope close: threads still routed here (a shared process closed under them) end too.
    yield* Effect.addFinalizer(() => Effect.suspend(() => endAll(exitReason())))

    const command = resolveCodexCommand(options.codexPath)
    const started = yield* spawnChild({
      file: command.file,
      args: [...command.prefix, "app-server", ...(options.args ?? [])],
      cwd,
      env: childEnvironment(options.env),
      grace: options.shutdownGrace ?? DEFAULT_GRACE
    }).pipe(Effect.mapError((error) => new SpawnFailed({ backend: name, reason: error.reason, cause: error.cause })))
    child = started

    const notify = (method: string, params: unknown): Effect.Effect<void> => {
      const threadId = threadOf(params)
      const sink = threadId === undefined ? undefined : sinks.get(threadId)
      if (sink !== undefined) return sink.notify(method, params)
      if (threadId === undefined && (method === "warning" || method === "configWarning")) {
        // Process-wide warnings (config, sandbox) go to every live thread, and to the log.
        return Effect.logWarning(`${PROCESS_NAME}: ${method}`, params).pipe(
          Effect.zipRight(Effect.forEach([...sinks.values()], (s) => s.notify(method, params), { discard: true }))
        )
      }
      return Effect.logDebug(`${PROCESS_NAME}: ${method} for no thread of ours`)
    }
    const request = (incoming: JsonRpc.IncomingRequest): Effect.Effect<void> => {
      const threadId = threadOf(incoming.params)
      const sink = threadId === undefined ? undefined : sinks.get(threadId)
      if (sink !== undefined) return sink.request(incoming)
      // A request from a thread we do not drive (e.g. a Codex sub-agent's): fail closed, never leave it hanging.
      return Effect.logWarning(`${PROCESS_NAME}: ${incoming.method} for no thread of ours, refused`).pipe(
        Effect.zipRight(refuse(rpc, incoming))
      )
    }
    const rpc: JsonRpc.JsonRpcClient = yield* JsonRpc.make(
      {
        output: started.output,
        write: started.write,
        exited: started.exit.pipe(
          Effect.timeoutOption(Duration.seconds(2)),
          Effect.map(() => exitReason())
        )
      },
      { onNotification: notify, onRequest: request },
      PROCESS_NAME,
      options.maxLineLength === undefined ? {} : { maxLineLength: options.maxLineLength }
    )
    // Finalizers run last-added first: the child must be gone before the reader is interrupted, since
    // a read pending on a live stdout cannot be interrupted (and would hold the scope open forever).
    yield* Effect.addFinalizer(() => started.terminate)
    yield* Effect.forkScoped(Effect.flatMap(rpc.closed, endAll))

    const fail = (reason: string) => (cause: unknown) => {
      const stderr = started.stderrTail().trim()
      return new SpawnFailed({ backend: name, reason: stderr === "" ? reason : `${reason}; stderr: ${stderr}`, cause })
    }
    yield* rpc
      .request("initialize", {
        clientInfo: { name: "deputy", title: "deputy", version: CLIENT_VERSION },
        // request_user_input and availableDecisions need the experimental API (reference §2.1). What
        // deputy ignores, Codex need not send: 4 of a plain turn's 14 messages (issue 12).
        capabilities: { experimentalApi: true, optOutNotificationMethods: [...IGNORED_NOTIFICATIONS] }
      })
      .pipe(
        Effect.timeoutFail({
          duration: INITIALIZE_TIMEOUT,
          onTimeout: () => new BackendExited({ backend: PROCESS_NAME, code: null })
        }),
        Effect.catchAll((error) => fail(`initialize failed: ${error.message}`)(error))
      )
    yield* rpc.notify("initialized")

    const self: AppServerProcess = {
      pid: started.pid,
      cwd,
      rpc,
      exited: rpc.closed,
      signal: started.signal,
      shutdown: started.terminate,
      route: (codexThreadId: string, sink: ThreadSink): Effect.Effect<void> =>
        Effect.suspend(() => {
          if (rpc.isClosed()) return sink.exited(exitReason())
          sinks.set(codexThreadId, sink)
          return Effect.void
        }),
      unroute: (codexThreadId: string) => Effect.sync(() => void sinks.delete(codexThreadId))
    }
    options.onStart?.(self)
    return self
  }).pipe(Effect.withSpan("CodexAppServer.startProcess"))

/** Answers a server request deputy cannot route or does not know, closed: decline, no answers, or an error. */
const refuse = (rpc: JsonRpc.JsonRpcClient, request: JsonRpc.IncomingRequest): Effect.Effect<void> => {
  switch (request.method) {
    case "item/commandExecution/requestApproval":
    case "item/fileChange/requestApproval":
      return rpc.respond(request.id, { decision: "decline" })
    case "item/tool/requestUserInput":
      return rpc.respond(request.id, { answers: {} })
    default:
      return rpc.respondError(request.id, -32601, `deputy does not handle ${request.method}`)
  }
}

/** A backend whose every agent gets its own app-server process, shut down with the agent. */
export const backend = (options: ProcessOptions & ThreadOptions = {}): Backend => ({
  name,
  spawn: (spawnOptions) => Effect.flatMap(startProcess(options), (proc) => spawnOn(proc, options, spawnOptions, true))
})

/** A backend whose agents share `proc` (one thread each); shutting an agent down leaves the process running. */
export const backendOn = (proc: AppServerProcess, options: ThreadOptions = {}): Backend => ({
  name,
  spawn: (spawnOptions) => spawnOn(proc, options, spawnOptions, false)
})

const DECISIONS: Readonly<Record<ReviewDecision, string>> = {
  approved: "accept",
  approved_for_session: "acceptForSession",
  denied: "decline",
  abort: "cancel"
}

const inputItem = (item: UserInputItem) => {
  switch (item.type) {
    case "text":
      return { type: "text", text: item.text, text_elements: [] }
    case "image":
      return { type: "image", url: item.url }
    case "local_image":
      return { type: "localImage", path: item.path }
  }
}

const fileChanges = (changes: ReadonlyArray<Wire.FileUpdateChange>): FileChanges => {
  const out: Record<string, FileChanges[string]> = {}
  for (const change of changes) {
    if (change.kind.type === "add") out[change.path] = { type: "add", content: addedContent(change.diff) }
    else if (change.kind.type === "delete") out[change.path] = { type: "delete" }
    else {
      const movePath = change.kind.move_path
      out[change.path] = {
        type: "update",
        unifiedDiff: change.diff,
        ...(movePath ? { movePath } : {})
      }
    }
  }
  return out
}

// Codex gives an added file's diff as its plain content; a `+`-prefixed hunk is unwrapped to be safe.
const addedContent = (diff: string): string => {
  const lines = diff.split("\n")
  const isHunk = lines.every((line, i) => line.startsWith("+") || (i === lines.length - 1 && line === ""))
  return isHunk && diff.length > 0 ? lines.map((line) => line.slice(1)).join("\n") : diff
}

const questionOf = (q: Wire.RequestUserInputQuestion): Question => ({
  id: q.id,
  question: q.question,
  ...(q.header ? { header: q.header } : {}),
  ...(q.options
    ? { options: q.options.map((o) => ({ label: o.label, ...(o.description ? { description: o.description } : {}) })) }
    : {}),
  ...(q.isOther === true ? { isOther: true } : {}),
  ...(q.isSecret === true ? { isSecret: true } : {})
})

interface OpenItem {
  readonly kind: "exec" | "patch"
  readonly turnId: string
}

/** Starts or resumes one thread on `proc` and returns its agent (§23, §25). */
const spawnOn = (
  proc: AppServerProcess,
  options: ThreadOptions,
  spawnOptions: SpawnOptions,
  ownsProcess: boolean
): Effect.Effect<Agent, SpawnFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const threadId: ThreadId = spawnOptions.threadId ?? newThreadId()
    const cwd = spawnOptions.cwd ?? proc.cwd
    const rpc = proc.rpc
    const grace = DEFAULT_GRACE
    const events = yield* Mailbox.make<Event>({
      capacity: Math.max(1, options.eventsCapacity ?? DEFAULT_EVENTS_CAPACITY)
    })
    const status = yield* StatusCell.make<AgentStatus>({ type: "pending_init" })

    const overrides = {
      cwd,
      ...(options.model === undefined ? {} : { model: options.model }),
      ...(options.approvalPolicy === undefined ? {} : { approvalPolicy: options.approvalPolicy }),
      ...(options.sandbox === undefined ? {} : { sandbox: options.sandbox }),
      ...(options.config === undefined ? {} : { config: options.config }),
      ...(options.developerInstructions === undefined ? {} : { developerInstructions: options.developerInstructions })
    }
    const threadCall = (method: string, params: Record<string, unknown>) =>
      rpc.request(method, params).pipe(Effect.flatMap(decode(Wire.ThreadResponse, `${method} result`)))
    const outcome = yield* resumeWithFallback({
      priorId: spawnOptions.backendThreadId,
      resume: (priorId) => threadCall("thread/resume", { threadId: priorId, ...overrides }),
      start: threadCall("thread/start", overrides),
      usable: (result) => result.thread.id.trim() !== ""
    }).pipe(
      Effect.mapError(
        (error) => new SpawnFailed({ backend: name, reason: `thread/start failed: ${error.message}`, cause: error })
      )
    )
    const thread = outcome.value
    const codexThreadId = thread.thread.id

    // Everything below is touched only between yields, so plain mutable state is safe.
    const st = {
      closed: false, // takes no more ops
      ended: false, // events ended
      shuttingDown: false,
      activeCodexTurn: undefined as string | undefined,
      lastMessage: undefined as string | undefined,
      turnIds: new Map<string, string>(), // Codex turn id → deputy turn id, the last RECENT_TURNS (`bindTurn`)
      waitingTurnIds: [] as Array<string>, // deputy turn ids whose turn/start has not named its Codex turn yet
      endedTurns: new Set<string>(), // Codex turns that ended while a turn/start was still unanswered
      startsInFlight: 0, // turn/start requests not answered yet
      openItems: new Map<string, OpenItem>(),
      fileChanges: new Map<string, FileChanges>(),
      commands: new Map<string, { readonly command: Array<string>; readonly cwd: string }>(),
      errorReported: new Set<string>(),
      exec: new Map<string, JsonRpc.RequestId>(), // effective approval id → JSON-RPC request id
      patch: new Map<string, JsonRpc.RequestId>(), // call id → JSON-RPC request id
      input: new Map<string, JsonRpc.RequestId>() // event id → JSON-RPC request id
    }
    const turnEnded = { signal: yield* Deferred.make<void>() }

    /**
     * Binds a Codex turn to a deputy turn id. Only the last RECENT_TURNS stay known (a late message of a
     * recent turn still finds its id): a long thread keeps nothing per ended turn.
     */
    const bindTurn = (codexTurnId: string, deputyTurnId: string) => {
      st.turnIds.set(codexTurnId, deputyTurnId)
      if (st.turnIds.size > RECENT_TURNS) st.turnIds.delete(st.turnIds.keys().next().value!)
    }
    /** The deputy turn id of a Codex turn: bound once, to the oldest `user_input` still waiting for one. */
    const deputyTurn = (codexTurnId: string): string => {
      const known = st.turnIds.get(codexTurnId)
      if (known !== undefined) return known
      const bound = st.waitingTurnIds.shift() ?? codexTurnId
      bindTurn(codexTurnId, bound)
      return bound
    }
    const currentTurn = () => (st.activeCodexTurn === undefined ? "" : deputyTurn(st.activeCodexTurn))

    const emitAll = (list: ReadonlyArray<Event>): Effect.Effect<void> =>
      list.length === 0
        ? Effect.void
        : list.length === 1
          ? Effect.asVoid(Mailboxes.offer(events, list[0]!))
          : Effect.asVoid(Mailboxes.offerAll(events, list))
    const emit = (id: string, msg: EventMsg) => emitAll([{ id, msg }])

    /** Every begin gets its end (reference §3.1, §9): open items of an ending turn are closed as failed. */
    const closeOpenItems = (): Array<Event> => {
      const out: Array<Event> = []
      for (const [callId, item] of st.openItems) {
        out.push({
          id: item.turnId,
          msg:
            item.kind === "exec"
              ? { type: "exec_command_end", callId, turnId: item.turnId, exitCode: null, stdout: "", stderr: "" }
              : { type: "patch_apply_end", callId, turnId: item.turnId, success: false, stdout: "", stderr: "" }
        })
      }
      st.openItems.clear()
      return out
    }
    const forgetRequests = () => {
      st.exec.clear()
      st.patch.clear()
      st.input.clear()
    }
    /** Ends the active turn with `last`: closes open items, drops pending requests, goes idle. */
    const endTurn = (turnId: string, last: ReadonlyArray<EventMsg>) =>
      Effect.gen(function* () {
        const closing = closeOpenItems()
        forgetRequests()
        st.activeCodexTurn = undefined
        st.lastMessage = undefined
        st.errorReported.delete(turnId)
        if (!st.closed) yield* status.set({ type: "idle" })
        yield* emitAll([...closing, ...last.map((msg) => ({ id: turnId, msg }))])
        yield* Deferred.succeed(turnEnded.signal, undefined)
        turnEnded.signal = yield* Deferred.make<void>()
      })

    const decodeOr = <S extends Parameters<typeof decode>[0]>(schema: S, method: string, params: unknown) =>
      decode(
        schema,
        `codex ${method}`
      )(params).pipe(
        Effect.tapError((error) => Effect.logWarning(`${PROCESS_NAME}: skipped ${method}: ${error.message}`)),
        Effect.option
      )

    const onItemStarted = (turnId: string, item: Wire.ThreadItem) => {
      switch (item.type) {
        case "commandExecution": {
          const command = commandWords(item.command)
          const itemCwd = item.cwd || cwd
          st.commands.set(item.id, { command, cwd: itemCwd })
          st.openItems.set(item.id, { kind: "exec", turnId })
          return emit(turnId, { type: "exec_command_begin", callId: item.id, turnId, command, cwd: itemCwd })
        }
        case "fileChange": {
          const changes = fileChanges(item.changes)
          st.fileChanges.set(item.id, changes)
          st.openItems.set(item.id, { kind: "patch", turnId })
          // The app-server says nothing of approval at item start; under "never" none can be asked.
          const autoApproved = options.approvalPolicy === "never"
          return emit(turnId, { type: "patch_apply_begin", callId: item.id, turnId, autoApproved, changes })
        }
        default:
          return Effect.void
      }
    }

    const onItemCompleted = (turnId: string, item: Wire.ThreadItem) =>
      Effect.gen(function* () {
        switch (item.type) {
          case "agentMessage":
            st.lastMessage = item.text
            return yield* emit(turnId, { type: "agent_message", message: item.text })
          case "reasoning": {
            const text = (item.summary.length > 0 ? item.summary : item.content).join("\n")
            if (text !== "") yield* emit(turnId, { type: "agent_reasoning", text })
            return
          }
          case "commandExecution": {
            if (!st.openItems.has(item.id)) yield* onItemStarted(turnId, item) // keep begin/end pairs
            st.openItems.delete(item.id)
            st.commands.delete(item.id)
            return yield* emit(turnId, {
              type: "exec_command_end",
              callId: item.id,
              turnId,
              exitCode: item.exitCode ?? null,
              stdout: item.aggregatedOutput ?? "",
              stderr: ""
            })
          }
          case "fileChange": {
            if (!st.openItems.has(item.id)) yield* onItemStarted(turnId, item)
            st.openItems.delete(item.id)
            st.fileChanges.delete(item.id)
            return yield* emit(turnId, {
              type: "patch_apply_end",
              callId: item.id,
              turnId,
              success: item.status === "completed",
              stdout: "",
              stderr: ""
            })
          }
        }
      })

    const onNotification = (method: string, params: unknown): Effect.Effect<void> =>
      Effect.gen(function* () {
        if (st.ended) return
        switch (method) {
          case "turn/started": {
            const p = yield* decodeOr(Wire.TurnStarted, method, params)
            if (p._tag === "None") return
            const turnId = deputyTurn(p.value.turn.id)
            st.activeCodexTurn = p.value.turn.id
            yield* status.set({ type: "running", turnId })
            return yield* emit(turnId, { type: "turn_started", turnId })
          }
          case "turn/completed": {
            const p = yield* decodeOr(Wire.TurnCompleted, method, params)
            if (p._tag === "None") return
            const { turn } = p.value
            const turnId = deputyTurn(turn.id)
            // A fast turn can end before its turn/start response is read: remember it, so that response
            // does not make a finished turn active again (a second turn end, an interrupt of nothing).
            if (st.startsInFlight > 0) st.endedTurns.add(turn.id)
            if (turn.status === "interrupted") {
              return yield* endTurn(turnId, [{ type: "turn_aborted", turnId, reason: "interrupted" }])
            }
            const last = st.lastMessage
            const complete: EventMsg = {
              type: "turn_complete",
              turnId,
              ...(last === undefined ? {} : { lastAgentMessage: last })
            }
            if (turn.status === "failed" && !st.errorReported.has(turnId)) {
              return yield* endTurn(turnId, [
                { type: "error", message: turn.error?.message ?? "turn failed" },
                complete
              ])
            }
            return yield* endTurn(turnId, [complete])
          }
          case "item/started":
          case "item/completed": {
            const p = yield* decodeOr(Wire.ItemNotification, method, params)
            // An item type deputy has no event for (userMessage, plan, mcpToolCall, …) is not parsed: a
            // failed parse builds an error with a stack, twice a turn for the user's own message.
            if (p._tag === "None" || !Wire.THREAD_ITEM_TYPES.has(p.value.item.type)) return
            const item = Wire.ThreadItem.safeParse(p.value.item)
            if (!item.success) return
            const turnId = deputyTurn(p.value.turnId)
            return yield* method === "item/started"
              ? onItemStarted(turnId, item.data)
              : onItemCompleted(turnId, item.data)
          }
          case "item/agentMessage/delta": {
            const p = yield* decodeOr(Wire.Delta, method, params)
            if (p._tag === "None") return
            return yield* emit(deputyTurn(p.value.turnId), { type: "agent_message_delta", delta: p.value.delta })
          }
          case "item/reasoning/summaryTextDelta":
          case "item/reasoning/textDelta": {
            const p = yield* decodeOr(Wire.Delta, method, params)
            if (p._tag === "None") return
            return yield* emit(deputyTurn(p.value.turnId), { type: "agent_reasoning_delta", delta: p.value.delta })
          }
          case "thread/tokenUsage/updated": {
            const p = yield* decodeOr(Wire.TokenUsageUpdated, method, params)
            if (p._tag === "None") return
            // `last` is the latest model request; `total` is cumulative per thread (reference §2.4).
            const { last } = p.value.tokenUsage
            return yield* emit(deputyTurn(p.value.turnId), {
              type: "token_count",
              inputTokens: last.inputTokens,
              outputTokens: last.outputTokens,
              totalTokens: last.totalTokens
            })
          }
          case "error": {
            const p = yield* decodeOr(Wire.ErrorNotification, method, params)
            if (p._tag === "None") return
            const turnId = deputyTurn(p.value.turnId)
            // willRetry:true is informational ("Reconnecting... 1/1"): a warning, not an error.
            if (p.value.willRetry) return yield* emit(turnId, { type: "warning", message: p.value.error.message })
            st.errorReported.add(turnId)
            return yield* emit(turnId, { type: "error", message: p.value.error.message })
          }
          case "warning": {
            const p = yield* decodeOr(Wire.WarningNotification, method, params)
            if (p._tag === "None") return
            return yield* emit(currentTurn(), { type: "warning", message: p.value.message })
          }
          case "configWarning": {
            const p = yield* decodeOr(Wire.ConfigWarningNotification, method, params)
            if (p._tag === "None") return
            const message = p.value.details ? `${p.value.summary}: ${p.value.details}` : p.value.summary
            return yield* emit(currentTurn(), { type: "warning", message })
          }
          case "serverRequest/resolved": {
            const p = yield* decodeOr(Wire.ServerRequestResolved, method, params)
            if (p._tag === "None") return
            for (const map of [st.exec, st.patch, st.input]) {
              for (const [key, id] of map) if (id === p.value.requestId) map.delete(key)
            }
            return
          }
          default:
            if (!IGNORED_NOTIFICATIONS.has(method))
              yield* Effect.logDebug(`${PROCESS_NAME}: ignored notification ${method}`)
        }
      })

    /**
     * §30: a request under an id that is still pending is refused at once (decline, no answers): the
     * parent's answer names the id, so it would otherwise reach whichever request holds it.
     */
    const refuseDuplicate = (request: JsonRpc.IncomingRequest, turnId: string, id: string) =>
      Effect.gen(function* () {
        const message = `${PROCESS_NAME}: ${request.method} refused: a request with id ${id} is still pending`
        yield* Effect.logWarning(message)
        yield* refuse(rpc, request)
        yield* emit(turnId, { type: "error", message })
      })

    const onRequest = (request: JsonRpc.IncomingRequest): Effect.Effect<void> =>
      Effect.gen(function* () {
        if (st.ended) return yield* refuse(rpc, request)
        const invalid = (error: { readonly message: string }) =>
          Effect.logWarning(`${PROCESS_NAME}: bad ${request.method}: ${error.message}`).pipe(
            Effect.zipRight(rpc.respondError(request.id, -32602, `invalid params: ${error.message}`))
          )
        switch (request.method) {
          case "item/commandExecution/requestApproval": {
            const p = yield* decode(
              Wire.CommandApprovalParams,
              `codex ${request.method}`
            )(request.params).pipe(Effect.either)
            if (p._tag === "Left") return yield* invalid(p.left)
            const { itemId, approvalId, reason } = p.right
            const turnId = deputyTurn(p.right.turnId)
            const known = st.commands.get(itemId)
            const command = p.right.command ? commandWords(p.right.command) : (known?.command ?? ["(unknown command)"])
            if (st.exec.has(approvalId ?? itemId)) return yield* refuseDuplicate(request, turnId, approvalId ?? itemId)
            st.exec.set(approvalId ?? itemId, request.id)
            return yield* emit(turnId, {
              type: "exec_approval_request",
              callId: itemId,
              ...(approvalId ? { approvalId } : {}),
              turnId,
              command,
              cwd: p.right.cwd ?? known?.cwd ?? cwd,
              ...(reason ? { reason } : {})
            })
          }
          case "item/fileChange/requestApproval": {
            const p = yield* decode(
              Wire.FileChangeApprovalParams,
              `codex ${request.method}`
            )(request.params).pipe(Effect.either)
            if (p._tag === "Left") return yield* invalid(p.left)
            const { itemId, reason, grantRoot } = p.right
            const turnId = deputyTurn(p.right.turnId)
            if (st.patch.has(itemId)) return yield* refuseDuplicate(request, turnId, itemId)
            st.patch.set(itemId, request.id)
            // The request carries no diff: it is in the fileChange item/started just before (reference §3).
            return yield* emit(turnId, {
              type: "apply_patch_approval_request",
              callId: itemId,
              turnId,
              changes: st.fileChanges.get(itemId) ?? {},
              ...(reason ? { reason } : {}),
              ...(grantRoot ? { grantRoot } : {})
            })
          }
          case "item/tool/requestUserInput": {
            const p = yield* decode(
              Wire.RequestUserInputParams,
              `codex ${request.method}`
            )(request.params).pipe(Effect.either)
            if (p._tag === "Left") return yield* invalid(p.left)
            if (p.right.questions.length === 0) return yield* rpc.respond(request.id, { answers: {} })
            const turnId = deputyTurn(p.right.turnId)
            // §3: the answer names the event id, so the event id is the JSON-RPC request id.
            const eventId = String(request.id)
            if (st.input.has(eventId)) return yield* refuseDuplicate(request, turnId, eventId)
            st.input.set(eventId, request.id)
            return yield* emit(eventId, {
              type: "request_user_input",
              callId: p.right.itemId,
              turnId,
              questions: p.right.questions.map(questionOf)
            })
          }
          default:
            yield* Effect.logWarning(`${PROCESS_NAME}: refused unknown server request ${request.method}`)
            return yield* refuse(rpc, request)
        }
      })

    /** Ends the events for good: one last batch, the final status, then the mailbox's end. */
    const finish = (last: ReadonlyArray<Event>, final: AgentStatus) =>
      Effect.gen(function* () {
        if (st.ended) return
        st.closed = true
        forgetRequests()
        yield* status.set(final)
        yield* emitAll(last)
        st.ended = true
        yield* proc.unroute(codexThreadId)
        yield* events.end
      })

    const onExited = (reason: BackendExited): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (st.ended || st.shuttingDown) return Effect.void
        const message = reason.message
        // §25: a turn whose turn/start was still in flight when the process died ends too, under its own id.
        const starting = st.activeCodexTurn === undefined ? st.waitingTurnIds[0] : undefined
        const turnId = starting ?? currentTurn()
        const last: Array<Event> = [{ id: turnId, msg: { type: "error", message } }]
        if (st.activeCodexTurn !== undefined || starting !== undefined) {
          last.push(...closeOpenItems(), {
            id: turnId,
            msg: { type: "turn_aborted", turnId, reason: "backend_exited" }
          })
        }
        return finish(last, { type: "errored", message })
      })

    const logIgnored = (what: string) => (error: JsonRpcError | BackendExited) =>
      Effect.logDebug(`${PROCESS_NAME}: ${what} failed: ${error.message}`)

    const answer = (map: Map<string, JsonRpc.RequestId>, key: string, result: unknown) =>
      Effect.suspend(() => {
        const id = map.get(key)
        if (id === undefined) return Effect.logDebug(`${PROCESS_NAME}: no pending request ${key} (answered late?)`)
        map.delete(key)
        return rpc.respond(id, result)
      })

    const shutdown = (id: string) =>
      Effect.gen(function* () {
        st.shuttingDown = true
        if (ownsProcess) {
          // Closing stdin is Codex's graceful stop (reference §2.5); the child escalates to SIGTERM, SIGKILL.
          yield* proc.shutdown
        } else {
          if (st.activeCodexTurn !== undefined) {
            const waitEnd = Deferred.await(turnEnded.signal)
            yield* rpc
              .request("turn/interrupt", { threadId: codexThreadId, turnId: st.activeCodexTurn })
              .pipe(Effect.catchAll(logIgnored("turn/interrupt")))
            yield* waitEnd.pipe(Effect.timeoutOption(grace))
          }
          yield* rpc
            .request("thread/unsubscribe", { threadId: codexThreadId })
            .pipe(Effect.timeoutOption(grace), Effect.catchAll(logIgnored("thread/unsubscribe")))
        }
        const turnId = currentTurn()
        const last: Array<Event> =
          st.activeCodexTurn === undefined
            ? []
            : [...closeOpenItems(), { id: turnId, msg: { type: "turn_aborted", turnId, reason: "interrupted" } }]
        last.push({ id, msg: { type: "shutdown_complete" } })
        yield* finish(last, { type: "shutdown" })
      })

    const handleOp = ({ id, op }: Submission): Effect.Effect<void> => {
      switch (op.type) {
        case "user_input":
          return Effect.gen(function* () {
            st.waitingTurnIds.push(id)
            st.startsInFlight++
            const started = yield* rpc
              .request("turn/start", { threadId: codexThreadId, input: op.items.map(inputItem) })
              .pipe(
                Effect.flatMap(decode(Wire.TurnStartResponse, "turn/start result")),
                Effect.either,
                Effect.ensuring(Effect.sync(() => st.startsInFlight--))
              )
            const waiting = st.waitingTurnIds.indexOf(id)
            const endedFirst = started._tag === "Right" && st.endedTurns.has(started.right.turn.id)
            if (st.startsInFlight === 0) st.endedTurns.clear() // nothing left to compare with
            if (started._tag === "Right") {
              const codexTurnId = started.right.turn.id
              if (!st.turnIds.has(codexTurnId)) bindTurn(codexTurnId, id)
              if (waiting !== -1) st.waitingTurnIds.splice(waiting, 1)
              // A turn already running took this input (reference §2.3); its id keeps naming the turn.
              // A turn that already ended (its turn/completed came first) is not made active again.
              if (!endedFirst) st.activeCodexTurn ??= codexTurnId
              return
            }
            // §25: the exit ends the thread, this turn included (it is still waiting, so it gets its turn_aborted).
            if (started.left._tag === "BackendExited") return yield* onExited(started.left)
            if (waiting !== -1) st.waitingTurnIds.splice(waiting, 1)
            yield* emitAll([
              { id, msg: { type: "error", message: `turn/start failed: ${started.left.message}` } },
              { id, msg: { type: "turn_complete", turnId: id } }
            ])
          })
        case "interrupt":
          // "no active turn to interrupt" is not an error for us.
          return st.activeCodexTurn === undefined
            ? Effect.void
            : rpc
                .request("turn/interrupt", { threadId: codexThreadId, turnId: st.activeCodexTurn })
                .pipe(Effect.asVoid, Effect.catchAll(logIgnored("turn/interrupt")))
        case "exec_approval":
          return answer(st.exec, op.id, { decision: DECISIONS[op.decision] })
        case "patch_approval":
          return answer(st.patch, op.id, { decision: DECISIONS[op.decision] })
        case "user_input_answer":
          return answer(st.input, op.id, { answers: op.response.answers })
        case "shutdown":
          return shutdown(id)
      }
    }

    const inbox = yield* Mailbox.make<Submission>()
    yield* Effect.forkScoped(
      Effect.gen(function* () {
        while (true) {
          const submission = yield* Mailboxes.take(inbox)
          yield* handleOp(submission)
          if (submission.op.type === "shutdown") return
        }
      }).pipe(Effect.ignore)
    )

    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        // Closed without a shutdown op: on a shared process, leave the thread quietly (bounded).
        if (!ownsProcess && !st.shuttingDown && !rpc.isClosed()) {
          st.shuttingDown = true
          yield* rpc
            .request("thread/unsubscribe", { threadId: codexThreadId })
            .pipe(Effect.interruptible, Effect.timeoutOption(grace), Effect.ignore)
        }
        yield* finish([], { type: "shutdown" })
      })
    )

    yield* emit("", {
      type: "session_configured",
      threadId,
      backend: name,
      backendThreadId: codexThreadId,
      ...(thread.model === undefined ? {} : { model: thread.model }),
      cwd: thread.cwd ?? cwd
    })
    if (spawnOptions.backendThreadId?.trim() && !outcome.resumed) {
      yield* emit("", { type: "warning", message: `resume failed, started fresh: ${outcome.fallbackReason}` })
    }
    yield* status.set({ type: "idle" })
    yield* proc.route(codexThreadId, { notify: onNotification, request: onRequest, exited: onExited })

    return {
      threadId,
      backend: name,
      submit: (submission) =>
        Effect.suspend(() => {
          if (st.closed) return Effect.fail(new AgentClosed({ threadId }))
          if (submission.op.type === "shutdown") st.closed = true // later submits fail at once
          inbox.unsafeOffer(submission)
          return Effect.void
        }),
      events,
      status,
      // §28: Codex's file changes are confined by the delegate to what deputy itself would write.
      workspace: {
        cwd,
        ...(spawnOptions.writableRoots === undefined ? {} : { writableRoots: spawnOptions.writableRoots })
      }
    } satisfies Agent
  }).pipe(Effect.withSpan("CodexAppServer.spawn"))

/** argv for a Codex command string (Codex sends one shell string; reference §3). */
const commandWords = (command: string): Array<string> => {
  const words = shellWords(command)
  return words.length > 0 ? words : ["(empty command)"]
}

/** The app-server backend: processes, backends, the backend's name and the notifications it opts out of. */
export const CodexAppServer = {
  /** The backend's name, `codex`. */
  name,
  /** Starts one app-server process in the caller's scope; several agents may share it (`backendOn`). */
  process: startProcess,
  /** A backend giving each agent its own process. */
  backend,
  /** A backend whose agents share one process. */
  backendOn,
  /** The notifications `initialize` asks Codex not to send: deputy has no event for them. */
  optedOutNotifications: [...IGNORED_NOTIFICATIONS] as ReadonlyArray<string>
} as const
