/**
 * The `codex-exec` backend (§26): each turn runs one `codex exec --json` process, and every turn
 * after the first runs `codex exec resume <id> --json`, where `<id>` is the Codex thread id from the
 * first turn's `thread.started`. The process's JSONL stdout becomes deputy events line by line;
 * lines that do not parse are logged and skipped, never fatal.
 *
 * An agent lives in the scope it was spawned in and owns there: a driver fiber taking ops one at a
 * time, at most one turn fiber (which owns that turn's child process, in its own process group),
 * and the bounded events mailbox. A turn ends when Codex says it ended (`turn.completed`, `turn.failed`),
 * as soon as the line arrives; the child's exit (killed past `exitGrace`), its group's SIGKILL and the
 * supervisor's sweep of what it left outside its group (§33) follow behind the turn, and closing the
 * scope waits for all of it. The next turn's child starts at once but is given its prompt only once
 * the last one has exited: a Codex thread has one writer, and `codex exec` reads its prompt before it
 * opens any thread (test/codex-mock-model.test.ts checks that of the real CLI), so its start-up
 * overlaps the last child's exit. Closing the scope kills a running turn's child and ends the events.
 * The Codex thread id is kept in an atomically written pointer file (§22), by default
 * `<deputy home>/codex-exec/<deputy thread id>`, so a later process can resume the thread; resuming
 * falls back to a fresh Codex thread, with a `warning`, when `exec resume` fails (§23).
 *
 * Approvals cannot reach the parent: `codex exec` has no approval channel, so Codex always runs
 * with `approval_policy="never"` and the sandbox chosen here; commands the sandbox would not allow
 * are refused to the model, never asked about. A backend given a Policy that could deny anything
 * is refused with ApprovalsUnsupported (`checkPolicy`), and approval answers sent to an agent are
 * ignored with a `warning`.
 */
import {
  type Agent,
  AgentClosed,
  type Backend,
  childEnvironment,
  deputyHome,
  describeExecRule,
  Mailboxes,
  type Policy,
  type RuleDecision,
  readPointer,
  resumeWithFallback,
  SpawnFailed,
  type SpawnOptions,
  StatusCell,
  TurnRunner,
  writePointer
} from "@deputy/core"
import {
  type AgentStatus,
  canonicalUuid,
  type Event,
  type EventMsg,
  type FileChanges,
  newThreadId,
  type Submission,
  type ThreadId,
  type UserInputItem
} from "@deputy/protocol"
import { FileSystem, Path } from "@effect/platform"
import { Cause, Data, Duration, Effect, Exit, Fiber, Mailbox, Option, Scope } from "effect"
import { behindTurns } from "./internal/behindTurns.js"
import { resolveCodexCommand } from "./internal/codexBinary.js"
import { type Decoded, decodeExecLine, type ExecItem } from "./internal/execJsonl.js"
import { type ExecProcess, startExecProcess } from "./internal/execProcess.js"
import { shellWords } from "./internal/shellWords.js"

/** The backend's name, in `session_configured` and rollouts. */
export const name = "codex-exec"

/** What a codex-exec agent needs: files for the pointer (its child processes are node's own). */
export type Requirements = FileSystem.FileSystem | Path.Path

/** Codex's sandbox for model-run commands (`sandbox_mode`). */
export type SandboxMode = "read-only" | "workspace-write" | "danger-full-access"

/** Settings shared by every agent of a codex-exec backend. */
export interface Options {
  /**
   * The only mode there is, stated so nobody expects otherwise: Codex runs with
   * `approval_policy="never"` and never asks; the sandbox alone limits what it does.
   */
  readonly approvalMode: "never-ask"
  /** Codex's sandbox for commands. Default `"read-only"`. */
  readonly sandbox?: SandboxMode
  /** A policy the caller meant to apply: accepted only if it approves everything (see `checkPolicy`). */
  readonly policy?: Policy
  /** The Codex executable. Default: the native binary of the `@openai/codex` package, else `codex` on PATH. */
  readonly binary?: string
  /** Arguments put before `exec` (e.g. a script path when `binary` is `node`). */
  readonly binaryArgs?: ReadonlyArray<string>
  /** `--model`. Default: Codex's configured model. */
  readonly model?: string
  /** More `-c key=value` overrides (values written as TOML). `approval_policy` and `sandbox_mode` are always ours. */
  readonly config?: Readonly<Record<string, string | number | boolean>>
  /** CODEX_HOME for the child. Default: the parent's CODEX_HOME, if any. */
  readonly codexHome?: string
  /** Variables added to the child's allowlisted environment (e.g. the model provider's key); `undefined` removes one. */
  readonly env?: Readonly<Record<string, string | undefined>>
  /** The working directory when the spawn options name none. Default `process.cwd()`. */
  readonly cwd?: string
  /** The deputy home for the default pointer path. Default: `DEPUTY_HOME`, else `~/.deputy`. */
  readonly home?: string
  /** Where a thread's Codex thread id is kept. Default `<home>/codex-exec/<thread id>`. */
  readonly pointerPath?: (threadId: ThreadId) => string
  /** Capacity of the events mailbox; a full one holds the child's stdout back (§6). Default 1024. */
  readonly eventsCapacity?: number
  /** How long a killed child gets between SIGTERM and SIGKILL. Default 2 s. */
  /** The longest stdout line `codex exec` may print, in characters (§36). Default 64 MiB; past it the turn fails. */
  readonly maxLineLength?: number
  readonly killGrace?: Duration.DurationInput
  /** How long a child may take to exit after its turn ended before it is killed. Default 5 s. */
  readonly exitGrace?: Duration.DurationInput
}

/** The Codex executable's JSONL stream names this source in logs. */
const SOURCE = "codex exec stdout"
const DEFAULT_CAPACITY = 1024
const DEFAULT_KILL_GRACE = Duration.seconds(2)
const DEFAULT_EXIT_GRACE = Duration.seconds(5)

/** The folder of codex-exec pointer files, relative to the deputy home. */
export const POINTER_DIR = "codex-exec"

/**
 * The backend cannot honour what it was given: `codex exec` has no channel for approvals, so a
 * policy that could refuse (or an approval mode other than `never-ask`) would be silently ignored.
 */
export class ApprovalsUnsupported extends Data.TaggedError("ApprovalsUnsupported")<{
  readonly reasons: ReadonlyArray<string>
}> {
  override get message() {
    return `codex-exec runs Codex with approvals off (codex exec has no approval channel), so it cannot apply: ${this.reasons.join("; ")}`
  }
}

/**
 * Why a policy needs approvals the exec backend cannot ask for; empty when it approves everything.
 * A policy approves everything when its default is `approved` or `approved_for_session` and none of
 * its exec or patch rules decides `denied` or `ask` (§31: nobody could be asked, and `codex exec` would
 * run what a person was meant to decide). Allow rules are redundant and fixed answers are never asked
 * for, so both are harmless.
 */
export const policyNeeds = (policy: Policy): ReadonlyArray<string> => {
  const reasons: Array<string> = []
  const refuses = (decision: RuleDecision) => decision === "denied" || decision === "ask"
  const verb = (decision: RuleDecision) => (decision === "ask" ? "asks" : "denies")
  if (refuses(policy.default)) reasons.push(`its default decision is ${JSON.stringify(policy.default)}`)
  policy.exec.forEach((rule, index) => {
    if (refuses(rule.decision)) reasons.push(`exec rule ${index} (${describeExecRule(rule)}) ${verb(rule.decision)}`)
  })
  policy.patch.forEach((rule, index) => {
    if (refuses(rule.decision))
      reasons.push(`patch rule ${index} (glob ${JSON.stringify(rule.glob)}) ${verb(rule.decision)}`)
  })
  return reasons
}

/** Succeeds when `policy` approves everything; else fails with ApprovalsUnsupported naming each rule that could refuse. */
export const checkPolicy = (policy: Policy): Effect.Effect<void, ApprovalsUnsupported> =>
  Effect.suspend(() => {
    const reasons = policyNeeds(policy)
    return reasons.length === 0 ? Effect.void : Effect.fail(new ApprovalsUnsupported({ reasons }))
  })

/**
 * A backend whose agents run `codex exec --json`. Fails with ApprovalsUnsupported when the options
 * ask for approvals (a refusing policy, or an approval mode other than `never-ask`).
 */
export const backend = (options: Options): Effect.Effect<Backend<Requirements>, ApprovalsUnsupported> =>
  Effect.gen(function* () {
    yield* checkOptions(options)
    return { name, spawn: (spawnOptions: SpawnOptions) => spawn({ ...options, ...spawnOptions }) }
  })

const checkOptions = (options: Options): Effect.Effect<void, ApprovalsUnsupported> =>
  options.approvalMode === "never-ask"
    ? options.policy === undefined
      ? Effect.void
      : checkPolicy(options.policy)
    : Effect.fail(
        new ApprovalsUnsupported({
          reasons: [`approvalMode ${JSON.stringify(options.approvalMode)} (only "never-ask" exists)`]
        })
      )

/** The pointer file holding the Codex thread id of deputy thread `threadId`. */
export const pointerPathOf = (
  threadId: ThreadId,
  options: Pick<Options, "home" | "pointerPath"> = {}
): Effect.Effect<string, never, Path.Path> =>
  Effect.gen(function* () {
    if (options.pointerPath !== undefined) return options.pointerPath(threadId)
    const paths = yield* Path.Path
    const home = options.home === undefined ? yield* deputyHome : paths.resolve(options.home)
    return paths.join(home, POINTER_DIR, threadId)
  })

/** The Codex thread id stored for deputy thread `threadId`, if any (the pointer's trimmed text). */
export const readCodexThreadId = (threadId: ThreadId, options: Pick<Options, "home" | "pointerPath"> = {}) =>
  Effect.flatMap(pointerPathOf(threadId, options), readPointer)

/**
 * Starts one agent in the caller's scope. Its first event is `session_configured` (event id `""`),
 * carrying the Codex thread id it will resume, if one is known (from `backendThreadId`, else the
 * pointer file). Fails with SpawnFailed when the working directory is not a directory, or when the
 * options ask for approvals (as `backend` would refuse them). Starts no process: the first
 * `user_input` does.
 */
export const spawn = (options: Options & SpawnOptions): Effect.Effect<Agent, SpawnFailed, Scope.Scope | Requirements> =>
  Effect.gen(function* () {
    // Spawning directly must not dodge the refusal `backend` makes.
    yield* checkOptions(options).pipe(
      Effect.mapError((error) => new SpawnFailed({ backend: name, reason: error.message, cause: error }))
    )
    const fs = yield* FileSystem.FileSystem
    const paths = yield* Path.Path
    const threadId = options.threadId ?? newThreadId()
    const cwd = paths.resolve(options.cwd ?? process.cwd())
    const info = yield* fs.stat(cwd).pipe(Effect.option)
    if (Option.isNone(info) || info.value.type !== "Directory") {
      return yield* new SpawnFailed({ backend: name, reason: `working directory ${cwd} is not a directory` })
    }
    const pointer = yield* pointerPathOf(threadId, options)
    const startup: Array<EventMsg> = []
    let priorId = options.backendThreadId?.trim() || undefined
    if (priorId === undefined) {
      const stored = yield* readPointer(pointer).pipe(
        Effect.catchAll((error) =>
          Effect.as(
            Effect.sync(() =>
              startup.push({ type: "warning", message: `${error.message}; the Codex thread starts fresh` })
            ),
            Option.none<string>()
          )
        )
      )
      priorId = Option.getOrUndefined(stored)
    }
    if (priorId === undefined && (options.history?.length ?? 0) > 0) {
      startup.push({
        type: "warning",
        message:
          "codex-exec cannot replay a history into Codex and knows no Codex thread to resume; the Codex thread starts fresh"
      })
    }

    const capacity = Math.max(1, Math.floor(options.eventsCapacity ?? DEFAULT_CAPACITY))
    const events = yield* Mailbox.make<Event>({ capacity })
    const inbox = yield* Mailbox.make<Inbox>()
    const status = yield* StatusCell.make<AgentStatus>({ type: "pending_init" })
    const state: AgentState = { closed: false, codexThreadId: priorId, exiting: undefined }
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        state.closed = true
        yield* status.set({ type: "shutdown" })
        yield* events.end
      })
    )
    // Closed after the turns' fibers (finalizers run in reverse): what a last turn left running
    // behind it (its child's exit, the sweep after it) is waited for.
    const later = yield* behindTurns
    const codex = resolveCodexCommand(options.binary)
    const config: TurnConfig = {
      threadId,
      cwd,
      pointer,
      events,
      state,
      binary: codex.file,
      baseArgs: [...codex.prefix, ...(options.binaryArgs ?? [])],
      flags: flagsOf(options),
      env: childEnvironment({
        ...options.env,
        ...(options.codexHome === undefined ? {} : { CODEX_HOME: options.codexHome })
      }),
      killGrace: options.killGrace ?? DEFAULT_KILL_GRACE,
      ...(options.maxLineLength === undefined ? {} : { maxLineLength: options.maxLineLength }),
      exitGrace: options.exitGrace ?? DEFAULT_EXIT_GRACE,
      later
    }
    const configured: EventMsg = {
      type: "session_configured",
      threadId,
      backend: name,
      cwd,
      ...(options.model === undefined ? {} : { model: options.model }),
      ...(priorId === undefined ? {} : { backendThreadId: priorId })
    }
    yield* events.offerAll([configured, ...startup].map((msg) => ({ id: "", msg })))
    yield* status.set({ type: "idle" })
    const turns = yield* TurnRunner.make({
      events,
      status,
      inbox,
      announce: true,
      run: (turnId, items: ReadonlyArray<UserInputItem>) => runTurn(config, turnId, items)
    })
    yield* Effect.forkScoped(driver({ config, inbox, turns }).pipe(Effect.annotateLogs({ backend: name, threadId })))

    return {
      threadId,
      backend: name,
      submit: (submission: Submission) =>
        Effect.suspend(() => {
          if (state.closed) return Effect.fail(new AgentClosed({ threadId }))
          if (submission.op.type === "shutdown") state.closed = true // later submits fail at once
          inbox.unsafeOffer({ _tag: "Op", submission })
          return Effect.void
        }),
      events,
      status,
      workspace: {
        cwd: config.cwd,
        ...(options.writableRoots === undefined ? {} : { writableRoots: options.writableRoots })
      }
    }
  })

/** `-c` overrides and flags shared by `exec` and `exec resume` (resume has no `--sandbox`, so `-c` it is). */
const flagsOf = (options: Options): ReadonlyArray<string> => {
  const overrides: Record<string, string | number | boolean> = {
    ...options.config,
    approval_policy: "never", // exec has no approval channel: nothing may wait for an answer
    sandbox_mode: options.sandbox ?? "read-only"
  }
  return [
    "--json",
    "--skip-git-repo-check",
    ...(options.model === undefined ? [] : ["--model", options.model]),
    ...Object.entries(overrides).flatMap(([key, value]) => ["-c", `${key}=${tomlValue(value)}`])
  ]
}

// TOML basic strings accept JSON's escapes; numbers and booleans print the same in both.
const tomlValue = (value: string | number | boolean) =>
  typeof value === "string" ? JSON.stringify(value) : String(value)

interface AgentState {
  closed: boolean
  /** The Codex thread to resume next turn; set by every `thread.started`. */
  codexThreadId: string | undefined
  /** The last turn's child, still exiting after its turn ended: the next child's prompt waits for it. */
  exiting: Fiber.Fiber<void> | undefined
}

interface TurnConfig {
  readonly threadId: ThreadId
  readonly cwd: string
  readonly pointer: string
  readonly events: Mailbox.Mailbox<Event>
  readonly state: AgentState
  readonly binary: string
  readonly baseArgs: ReadonlyArray<string>
  readonly flags: ReadonlyArray<string>
  readonly env: Readonly<Record<string, string>>
  readonly killGrace: Duration.DurationInput
  readonly maxLineLength?: number
  readonly exitGrace: Duration.DurationInput
  /** Runs `work` behind the turn on a fiber of its own (a child's exit, its sweep), awaited when the agent closes. */
  readonly later: (work: Effect.Effect<void>) => Effect.Effect<Fiber.Fiber<void>>
}

/** A child that exited (or could not start) before saying which Codex thread it runs. */
class ExecFailed extends Data.TaggedError("ExecFailed")<{ readonly reason: string }> {
  override get message() {
    return this.reason
  }
}

/** A child past its `thread.started`, with the lines it printed before that. */
interface Opened {
  readonly child: ExecProcess
  readonly codexThreadId: string
  readonly before: ReadonlyArray<string>
}

/** The next stdout line; none at end-of-file (a read error counts as the end, with a warning). */
const nextLine = (child: ExecProcess): Effect.Effect<Option.Option<string>> =>
  Mailboxes.take(child.lines).pipe(
    Effect.map(Option.some),
    Effect.catchAll((error) =>
      error._tag === "NoSuchElementException"
        ? Effect.succeedNone
        : Effect.as(Effect.logWarning(`reading ${SOURCE} failed: ${error.message}`), Option.none())
    )
  )

/**
 * Why a child ended: why its stdout stopped being read, if it did (then it was killed for it), else its
 * code and the last meaningful stderr line (Codex prints `Error: …` there).
 */
const exitReason = (what: string, child: ExecProcess) =>
  Effect.gen(function* () {
    const code = yield* child.exitCode
    const readFailure = child.readFailure()
    if (readFailure !== undefined) return `${what} was stopped: ${readFailure}`
    const lines = (yield* child.stderrTail).map((line) => line.trim()).filter((line) => line !== "")
    const last = lines.filter((line) => line.startsWith("Error")).at(-1) ?? lines.at(-1)
    const how = code === null ? "was killed by a signal" : `exited with code ${code}`
    return `${what} ${how}${last === undefined ? "" : `: ${last}`}`
  })

/**
 * Starts a child with `args`, its prompt held back until `after` is done, and reads until its
 * `thread.started`; fails with ExecFailed if it ends first.
 */
const open = (
  config: TurnConfig,
  what: string,
  args: ReadonlyArray<string>,
  prompt: string,
  after: Effect.Effect<void> | undefined
) =>
  Effect.gen(function* () {
    const child = yield* startExecProcess({
      binary: config.binary,
      args: [...config.baseArgs, ...args],
      cwd: config.cwd,
      env: config.env,
      stdin: prompt,
      ...(after === undefined ? {} : { stdinAfter: after }),
      killGrace: config.killGrace,
      sweepLater: (sweep) => Effect.asVoid(config.later(sweep)),
      ...(config.maxLineLength === undefined ? {} : { maxLineLength: config.maxLineLength })
    }).pipe(Effect.mapError((error) => new ExecFailed({ reason: `${what} could not start: ${error.message}` })))
    const before: Array<string> = []
    while (true) {
      const line = yield* nextLine(child)
      if (Option.isNone(line)) return yield* new ExecFailed({ reason: yield* exitReason(what, child) })
      const decoded = decodeExecLine(line.value)
      if (decoded._tag === "Line" && decoded.line.type === "thread.started") {
        return { child, codexThreadId: decoded.line.thread_id, before } satisfies Opened
      }
      before.push(line.value)
    }
  })

/** The prompt (text items, one paragraph each) and the image flags of a user input; URL images cannot be passed. */
const inputOf = (items: ReadonlyArray<UserInputItem>) => {
  const texts: Array<string> = []
  const images: Array<string> = []
  let skipped = 0
  for (const item of items) {
    if (item.type === "text") texts.push(item.text)
    else if (item.type === "local_image") images.push(`--image=${item.path}`)
    else skipped++
  }
  return { prompt: texts.join("\n\n"), images, skipped }
}

/**
 * Plays one turn: resumes the Codex thread (or starts one, §23), translates the child's stdout
 * until Codex says the turn ended, and returns the turn's last event. The child's exit (bounded by
 * `exitGrace`, then it is killed) goes on behind the turn; the next turn's child starts at once, its
 * prompt held until that is over: a Codex thread has one writer. Never fails; interrupting it kills
 * the child.
 */
const runTurn = (
  config: TurnConfig,
  turnId: string,
  items: ReadonlyArray<UserInputItem>
): Effect.Effect<EventMsg, never, Requirements> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function* () {
      const { state } = config
      const previous = state.exiting
      const after = previous === undefined ? undefined : Effect.asVoid(Fiber.await(previous))
      // The child lives in this scope: closed when the turn fails or is interrupted, else behind the turn.
      const scope = yield* Scope.make()
      const played = yield* Effect.exit(restore(Scope.extend(playTurn(config, turnId, items, after), scope)))
      if (Exit.isSuccess(played) && played.value.exiting !== undefined) {
        const child = played.value.exiting
        // Forked from an uninterruptible region, so made interruptible again: its bound interrupts the wait.
        const exit = Effect.ensuring(Effect.interruptible(awaitExit(config, child)), Scope.close(scope, Exit.void))
        state.exiting = yield* config.later(exit)
        return played.value.last
      }
      yield* Scope.close(scope, played)
      return yield* played.pipe(Effect.map((p) => p.last))
    })
  )

/** Reads what a child prints after its turn's end (it belongs to no turn) until it exits; killed past `exitGrace`. */
const awaitExit = (config: TurnConfig, child: ExecProcess) =>
  Effect.gen(function* () {
    const drained = Effect.gen(function* () {
      while (Option.isSome(yield* nextLine(child))) {
        // lines after the turn's end belong to no turn
      }
      return yield* child.exitCode
    })
    if (Option.isNone(yield* Effect.timeoutOption(drained, config.exitGrace))) yield* child.kill
  })

/** A turn's last event, and its child when that is still to exit (the turn ended by Codex's word). */
interface Played {
  readonly last: EventMsg
  readonly exiting?: ExecProcess
}

/** The turn itself, its child in the caller's scope, its prompt held until `after` is done. */
const playTurn = (
  config: TurnConfig,
  turnId: string,
  items: ReadonlyArray<UserInputItem>,
  after: Effect.Effect<void> | undefined
): Effect.Effect<Played, never, Requirements | Scope.Scope> =>
  Effect.gen(function* () {
    const { events, state } = config
    const emit = (msg: EventMsg) => Effect.asVoid(Mailboxes.offer(events, { id: turnId, msg }))
    const { prompt, images, skipped } = inputOf(items)
    if (skipped > 0) yield* emit({ type: "warning", message: `codex exec takes no image URLs; ${skipped} skipped` })
    const run = (what: string, head: ReadonlyArray<string>) =>
      open(config, what, [...head, ...config.flags, ...images, "-"], prompt, after)

    const priorId = state.codexThreadId
    const outcome = yield* resumeWithFallback({
      priorId,
      resume: (id) =>
        canonicalUuid(id) === undefined
          ? // Codex takes a non-UUID for a thread *name* and quietly starts a new thread; say so instead.
            Effect.fail(new ExecFailed({ reason: `${JSON.stringify(id)} is not a Codex thread id (a UUID)` }))
          : run("codex exec resume", ["exec", "resume", id]),
      start: run("codex exec", ["exec"])
    })
    const { child, codexThreadId } = outcome.value
    if (priorId !== undefined && !outcome.resumed) {
      yield* emit({
        type: "warning",
        message: `resuming Codex thread ${priorId} failed (${outcome.fallbackReason}); started a fresh Codex thread ${codexThreadId}`
      })
    } else if (priorId !== undefined && canonicalUuid(codexThreadId) !== canonicalUuid(priorId)) {
      yield* emit({
        type: "warning",
        message: `codex exec resume ${priorId} continued as Codex thread ${codexThreadId}`
      })
    }
    if (codexThreadId !== state.codexThreadId || !outcome.resumed) {
      state.codexThreadId = codexThreadId
      // §22: the id must survive this process so a later one can resume; losing it costs only continuity.
      yield* writePointer(config.pointer, `${codexThreadId}\n`).pipe(
        Effect.catchAll((error) => emit({ type: "warning", message: `${error.message}; the next child cannot resume` }))
      )
    }

    const translator = translate(config, turnId, emit)
    for (const line of outcome.value.before) yield* translator.line(line)
    while (translator.ended === undefined) {
      const line = yield* nextLine(child)
      if (Option.isNone(line)) break
      yield* translator.line(line.value)
    }
    const ended = translator.ended
    // The turn is over; the child should exit at once, behind the turn.
    if (ended !== undefined) return { last: ended, exiting: child } satisfies Played
    yield* emit({ type: "error", message: `${yield* exitReason("codex exec", child)} before the turn ended` })
    return { last: { type: "turn_aborted", turnId, reason: "backend_exited" } } satisfies Played
  }).pipe(
    Effect.catchTag("ExecFailed", (error) =>
      Effect.as(Mailboxes.offer(config.events, { id: turnId, msg: { type: "error", message: error.reason } }), {
        last: { type: "turn_aborted", turnId, reason: "backend_exited" }
      } satisfies Played)
    )
  )

/**
 * Translates one child's stdout lines into events (see the README's table). Keeps what pairs
 * begin and end events, the last agent message, and the turn's end once a line ends it.
 */
const translate = (config: TurnConfig, turnId: string, emit: (msg: EventMsg) => Effect.Effect<void>) => {
  const begun = new Set<string>()
  let lastAgentMessage: string | undefined
  let lastError: string | undefined
  const state: { ended: EventMsg | undefined; line: (text: string) => Effect.Effect<void> } = {
    ended: undefined,
    line: (text) => (text.trim() === "" ? Effect.void : handle(decodeExecLine(text), text))
  }
  const complete = (): EventMsg => ({
    type: "turn_complete",
    turnId,
    ...(lastAgentMessage === undefined ? {} : { lastAgentMessage })
  })
  const begin = (item: ExecItem): EventMsg | undefined => {
    if (begun.has(item.id)) return undefined
    begun.add(item.id)
    if (item.type === "command_execution") {
      const words = shellWords(item.command)
      const command: [string, ...Array<string>] = [words[0] ?? item.command, ...words.slice(1)]
      return { type: "exec_command_begin", callId: item.id, turnId, command, cwd: config.cwd }
    }
    if (item.type === "file_change") {
      return { type: "patch_apply_begin", callId: item.id, turnId, autoApproved: true, changes: changesOf(item) }
    }
    return undefined
  }
  const onItem = (phase: "item.started" | "item.updated" | "item.completed", item: ExecItem): Array<EventMsg> => {
    switch (item.type) {
      case "agent_message":
        if (phase !== "item.completed") return []
        lastAgentMessage = item.text
        return [{ type: "agent_message", message: item.text }]
      case "reasoning":
        return phase === "item.completed" ? [{ type: "agent_reasoning", text: item.text }] : []
      case "error":
        // An `error` item is Codex's non-fatal notice (e.g. unknown model metadata).
        return phase === "item.completed" ? [{ type: "warning", message: item.message }] : []
      case "command_execution":
      case "file_change": {
        const started = begin(item)
        const out = started === undefined ? [] : [started]
        if (phase !== "item.completed") return out
        if (item.type === "command_execution") {
          out.push({
            type: "exec_command_end",
            callId: item.id,
            turnId,
            exitCode: item.exit_code ?? null,
            stdout: item.aggregated_output,
            stderr: ""
          })
        } else {
          out.push({
            type: "patch_apply_end",
            callId: item.id,
            turnId,
            success: item.status === "completed",
            stdout: "",
            stderr: ""
          })
        }
        return out
      }
    }
  }
  const handle = (decoded: Decoded, text: string): Effect.Effect<void> => {
    if (decoded._tag === "Invalid") {
      return Effect.logWarning(`skipped an unparseable ${SOURCE} line: ${decoded.issues.join("; ")}`).pipe(
        Effect.annotateLogs({ line: text.slice(0, 500) })
      )
    }
    if (decoded._tag === "Unknown") return Effect.logDebug(`skipped a ${SOURCE} line of unknown type ${decoded.type}`)
    if (state.ended !== undefined) return Effect.logDebug(`skipped a ${SOURCE} line after the turn ended`)
    const { line, item } = decoded
    const out: Array<EventMsg> = []
    switch (line.type) {
      case "thread.started":
      case "turn.started":
        break
      case "item.started":
      case "item.updated":
      case "item.completed":
        if (item !== undefined) out.push(...onItem(line.type, item))
        break
      case "error":
        lastError = line.message
        out.push({ type: "error", message: line.message })
        break
      case "turn.failed":
        // A fatal error prints `error` then `turn.failed` with the same message: report it once.
        if (line.error.message !== lastError) out.push({ type: "error", message: line.error.message })
        state.ended = complete()
        break
      case "turn.completed":
        if (line.usage !== undefined) {
          // Codex reports the thread's cumulative usage here, not this turn's.
          const { input_tokens: inputTokens, output_tokens: outputTokens } = line.usage
          out.push({ type: "token_count", inputTokens, outputTokens, totalTokens: inputTokens + outputTokens })
        }
        state.ended = complete()
        break
    }
    return Effect.forEach(out, emit, { discard: true })
  }
  return state
}

/** A file_change item's paths as deputy file changes; exec reports no contents or diffs, so those are empty. */
const changesOf = (item: Extract<ExecItem, { type: "file_change" }>): FileChanges =>
  Object.fromEntries(
    item.changes.map(({ path, kind }) => [
      path,
      kind === "add"
        ? { type: "add", content: "" }
        : kind === "delete"
          ? { type: "delete" }
          : { type: "update", unifiedDiff: "" }
    ])
  )

/** What the driver takes: ops, and the end of the turn it started. */
type Inbox = { readonly _tag: "Op"; readonly submission: Submission } | TurnRunner.TurnDone<EventMsg>

/**
 * The op side: takes ops one at a time, starts turns (queueing inputs that arrive during one, since
 * a Codex thread has one writer), kills the running child on interrupt and shutdown. It alone
 * changes status (through its TurnRunner, which emits each turn's last event after the status).
 */
const driver = (options: {
  readonly config: TurnConfig
  readonly inbox: Mailbox.Mailbox<Inbox>
  readonly turns: TurnRunner.TurnRunner<ReadonlyArray<UserInputItem>, EventMsg, Requirements>
}): Effect.Effect<void, never, Requirements> =>
  Effect.gen(function* () {
    const { config, inbox, turns } = options
    const { events, state } = config
    let isDone = false

    const warn = (id: string, message: string) => Mailboxes.offer(events, { id, msg: { type: "warning", message } })

    const handle = (message: Inbox): Effect.Effect<void, never, Requirements> => {
      if (message._tag === "TurnDone") {
        return turns.done(message, (turnId, exit) =>
          Exit.isSuccess(exit)
            ? turns.end(turnId, exit.value)
            : Effect.gen(function* () {
                yield* events.offer({
                  id: turnId,
                  msg: { type: "error", message: `codex-exec turn failed: ${Cause.pretty(exit.cause)}` }
                })
                yield* turns.end(turnId, { type: "turn_aborted", turnId, reason: "backend_exited" })
              })
        )
      }
      const { id, op } = message.submission
      switch (op.type) {
        case "user_input":
          return turns.start(id, op.items) // after the running turn: one child per Codex thread at a time
        case "exec_approval":
        case "patch_approval":
        case "user_input_answer":
          return warn(
            id,
            `codex-exec cannot take ${op.type}: codex exec has no approval channel (approvals are off); ignored`
          )
        case "interrupt":
          // A no-op when idle; interrupting the turn fiber closes its scope, which kills the child's process group.
          return turns.interrupt
        case "shutdown":
          return Effect.zipRight(
            turns.shutdown(id),
            Effect.sync(() => {
              state.closed = true
              isDone = true
            })
          )
      }
    }

    while (!isDone) {
      const [messages] = yield* Mailboxes.takeAll(inbox)
      for (const message of messages) {
        yield* handle(message)
        if (isDone) return
      }
    }
  })
