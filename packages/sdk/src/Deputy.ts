/**
 * The Promise / AsyncIterable API. A `Deputy` owns one ManagedRuntime holding a ThreadManager, its
 * rollout store, the approval registry and the parent that answers approvals; it lives until
 * `close()` (or `await using` ends), which shuts every thread down and disposes the runtime, so no
 * fiber, timer, handle or child process is left. Threads are `DeputyThread`s; their runs read the
 * thread's events one turn at a time.
 */
import {
  ApprovalRegistry,
  type CancelReport,
  Delegate,
  type ExecApprovalRequest,
  FairScheduler,
  type ForkSnapshot,
  policy as makePolicy,
  Parent,
  type ParentCallbacks,
  type ParentError,
  type ParentRequest,
  type ParentService,
  type PatchApprovalRequest,
  type PendingRequest,
  type Policy,
  type PolicyInput,
  RolloutStore,
  type ShutdownReport,
  type Thread,
  type ThreadLimits,
  ThreadManager,
  type UserInputRequest
} from "@deputy/core"
import {
  type EventMsg,
  isTurnEnd,
  ReviewDecision,
  type UserInputOp,
  UserInputResponse,
  userText
} from "@deputy/protocol"
import { NodeContext } from "@effect/platform-node"
import { type Cause, Deferred, Effect, Exit, Layer, ManagedRuntime, Option } from "effect"
import { backendOf, type DeputyBackend } from "./backends.js"
import { DeputyError, fromCause, RunAborted, RunStalled } from "./errors.js"

// Node 20.0–20.3 lack Symbol.asyncDispose; `await using` looks it up under this name.
;(Symbol as { asyncDispose?: symbol }).asyncDispose ??= Symbol.for("nodejs.asyncDispose")

/** A parent's answer to a command or a patch. A misspelt one does not compile. */
export type Decision = ReviewDecision

/** A request to approve: a command (`kind: "exec"`) or a patch (`kind: "patch"`). */
export type ApprovalRequest = ExecApprovalRequest | PatchApprovalRequest

/** Given to every callback: `signal` aborts when the request is withdrawn (its run cancelled or its thread closed). */
export interface ApprovalContext {
  readonly signal: AbortSignal
}

/** Decides an approval. `undefined` leaves it pending, answerable by id (`deputy.answerApproval`). */
export type ApprovalCallback = (
  request: ApprovalRequest,
  context: ApprovalContext
) => Decision | undefined | Promise<Decision | undefined>

/** Answers a sub-agent's questions. `undefined` leaves the request pending, answerable by id. */
export type UserInputCallback = (
  request: UserInputRequest,
  context: ApprovalContext
) => UserInputResponse | undefined | Promise<UserInputResponse | undefined>

/** One callback per kind of request, when one function for all does not fit. */
export interface ApprovalCallbacks {
  /** Decides on a command. */
  readonly exec?: (
    request: ExecApprovalRequest,
    context: ApprovalContext
  ) => Decision | undefined | Promise<Decision | undefined>
  /** Decides on a patch. */
  readonly patch?: (
    request: PatchApprovalRequest,
    context: ApprovalContext
  ) => Decision | undefined | Promise<Decision | undefined>
  /** Answers questions. */
  readonly userInput?: UserInputCallback
}

/** How a Deputy is set up. Every field is optional; with none, every approval is denied. */
export interface DeputyOptions {
  /** The state folder for rollouts. Default: `DEPUTY_HOME`, else `~/.deputy`. */
  readonly home?: string
  /**
   * Rules (data) for approvals, checked before any callback: a matching rule decides. Unmatched
   * requests go to the callbacks when there are any (unless the policy sets `default`), else they
   * get the policy's default, `denied`.
   */
  readonly policy?: PolicyInput
  /** Decides what the policy leaves open: one function for commands and patches, or one per kind. */
  readonly onApproval?: ApprovalCallback | ApprovalCallbacks
  /** Answers questions (`request_user_input`) the policy has no answers for. */
  readonly onUserInput?: UserInputCallback
  /** Caps on live threads (per parent, per tree, per backend). */
  readonly limits?: ThreadLimits
  /** The backend `resumeThread` and `forkThread` use when given none. */
  readonly backend?: DeputyBackend
  /** How long a thread's shutdown may take in `close()`, in ms. Default 5000. */
  readonly closeTimeoutMs?: number
  /** Called with deputy's warnings (a callback's unusable answer, …). Default `console.warn`. */
  readonly onWarning?: (message: string) => void
  /** Called as each approval is settled (by a rule, a callback, an answer, or withdrawn): a live log, e.g. for a CLI's JSON lines. */
  readonly onApprovalSettled?: (record: ApprovalRecord) => void
}

/** How to start a thread. */
export interface StartThreadOptions {
  /** What plays the sub-agent: `scripted(…)`, `codex(…)` or `codexExec(…)`. Default: the Deputy's `backend`. */
  readonly backend?: DeputyBackend
  /** The working directory of its commands and patches. */
  readonly cwd?: string
  /** The thread id (a UUID in any spelling). Default: a fresh one. */
  readonly threadId?: string
  /** A name shown with its approval requests. */
  readonly name?: string
}

/** How to resume or fork a thread. */
export interface ContinueThreadOptions {
  /** What plays the sub-agent. Default: the Deputy's `backend`. */
  readonly backend?: DeputyBackend
  /** The working directory. Default: the one in the thread's rollout. */
  readonly cwd?: string
}

/** What a run takes: text, or a whole `user_input` op (several items, images). */
export type RunInput = string | UserInputOp

/** How a run behaves. */
export interface RunOptions {
  /** Aborting it cancels the thread: pending approvals are withdrawn (their callbacks' signals abort) and the run rejects with RunAborted. */
  readonly signal?: AbortSignal
}

/** One event of a run, as the sub-agent produced it (`agent_message`, `exec_command_end`, `turn_complete`, …). */
export type ThreadEvent = EventMsg

/** How an approval of the run was settled. */
export interface ApprovalRecord {
  /** The request, whole. */
  readonly request: ParentRequest
  /** The decision (exec, patch); `abort` when the request was withdrawn. */
  readonly decision?: Decision
  /** The answers (user input). */
  readonly response?: UserInputResponse
  /** Who settled it: a `policy` rule, a `callback`, an `answer` by id, or `withdrawn` (the run was cancelled). */
  readonly by: "policy" | "callback" | "answer" | "withdrawn"
}

/** Token usage, from the last `token_count` of the run. */
export interface Usage {
  readonly inputTokens: number
  readonly outputTokens: number
  readonly totalTokens: number
}

/** What a finished run gives. */
export interface RunResult {
  /** The agent's last message of the turn. */
  readonly finalResponse: string | undefined
  /** Every event of the turn, in order. */
  readonly events: ReadonlyArray<ThreadEvent>
  /** The approvals asked during the turn and how each was settled. */
  readonly approvals: ReadonlyArray<ApprovalRecord>
  /** Token usage, when the backend reported any. */
  readonly usage: Usage | undefined
  /** `completed`, or `aborted` when the turn was interrupted. */
  readonly status: "completed" | "aborted"
}

/** What a Deputy's runtime holds. */
type Services = ThreadManager | ApprovalRegistry | Parent | RolloutStore | NodeContext.NodeContext

const DECISIONS: ReadonlyArray<string> = ReviewDecision.options

/** Runs one request's kind of callback, turning a throw or an unusable value into `denied` with a warning. */
const checked =
  <Req extends ParentRequest, A>(
    fn: ((request: Req, context: ApprovalContext) => unknown) | undefined,
    accept: (value: unknown) => value is A,
    refused: A,
    expected: string,
    warn: (request: ParentRequest, message: string) => void
  ) =>
  async (request: Req, signal: AbortSignal): Promise<A | undefined> => {
    if (fn === undefined) return undefined
    let value: unknown
    try {
      value = await fn(request, { signal })
    } catch (error) {
      warn(request, `the ${request.kind} callback threw (${error instanceof Error ? error.message : String(error)})`)
      return refused
    }
    if (value === undefined || accept(value)) return value as A | undefined
    warn(request, `the ${request.kind} callback returned ${JSON.stringify(value)}, expected ${expected}`)
    return refused
  }

const isDecision = (value: unknown): value is Decision => typeof value === "string" && DECISIONS.includes(value)
const isResponse = (value: unknown): value is UserInputResponse => UserInputResponse.safeParse(value).success

/** Per-thread log of settled approvals, read by runs. */
class ApprovalLog {
  private readonly byThread = new Map<string, Array<ApprovalRecord>>()
  constructor(private readonly onSettled?: (record: ApprovalRecord) => void) {}
  add(record: ApprovalRecord) {
    this.onSettled?.(record)
    const list = this.byThread.get(record.request.threadId) ?? []
    list.push(record)
    this.byThread.set(record.request.threadId, list)
  }
  mark(threadId: string) {
    return this.byThread.get(threadId)?.length ?? 0
  }
  since(threadId: string, mark: number): ReadonlyArray<ApprovalRecord> {
    return (this.byThread.get(threadId) ?? []).slice(mark)
  }
  forget(threadId: string) {
    this.byThread.delete(threadId)
  }
}

/**
 * Delegates work to sub-agents and answers their approvals. Holds live threads until `close()`.
 *
 * ```ts
 * await using deputy = new Deputy({ policy: { exec: [{ prefix: ["echo"], decision: "approved" }] } })
 * const thread = await deputy.startThread({ backend: scripted(script) })
 * const { finalResponse } = await thread.run("review src/")
 * ```
 */
export class Deputy {
  readonly #runtime: ManagedRuntime.ManagedRuntime<Services, never>
  readonly #options: DeputyOptions
  readonly #policy: Policy
  readonly #log: ApprovalLog
  readonly #threads = new Map<string, DeputyThread>()
  readonly #inflight = new Set<RunControl>()
  #closed: Promise<ShutdownReport> | undefined

  /** A Deputy with `options`; nothing starts until the first thread. Throws DeputyError(InvalidInput) on a bad policy. */
  constructor(options: DeputyOptions = {}) {
    this.#options = options
    this.#log = new ApprovalLog(options.onApprovalSettled)
    const hasCallbacks = options.onApproval !== undefined || options.onUserInput !== undefined
    const input = options.policy ?? {}
    try {
      // Requests the rules leave open go to the callbacks, not to the fail-closed default.
      this.#policy = makePolicy(hasCallbacks && input.default === undefined ? { ...input, default: "ask" } : input)
    } catch (error) {
      throw new DeputyError("InvalidInput", `invalid policy: ${firstIssue(error)}`, { cause: error })
    }
    const store = RolloutStore.layer(options.home === undefined ? {} : { home: options.home }).pipe(
      Layer.provide(NodeContext.layer)
    )
    const manager = ThreadManager.layerWith(options.limits === undefined ? {} : { limits: options.limits }).pipe(
      Layer.provide(store)
    )
    const parent = ApprovalRegistry.layer.pipe(Layer.provide(this.#parentLayer()))
    // §37: every fiber of the runtime on the fair scheduler, so streaming never starves timers and I/O.
    this.#runtime = ManagedRuntime.make(Layer.mergeAll(manager, store, parent, NodeContext.layer, FairScheduler.layer))
  }

  /** Starts a thread on a backend. Rejects with a DeputyError (`SpawnFailed`, `DuplicateThreadId`, `InvalidInput`, …). */
  async startThread(options: StartThreadOptions = {}): Promise<DeputyThread> {
    const backend = this.#backendFor(options.backend)
    return this.#open(
      Effect.flatMap(backendOf(backend, this.#backendContext()), (b) =>
        Effect.flatMap(ThreadManager, (manager) =>
          manager.start({
            backend: b,
            ...defined({ cwd: options.cwd, threadId: options.threadId, name: options.name }),
            delegate: this.#delegateOptions(options.name)
          })
        )
      )
    )
  }

  /** Resumes a thread from its rollout in this Deputy's home; a live thread is returned as it is. */
  async resumeThread(threadId: string, options: ContinueThreadOptions = {}): Promise<DeputyThread> {
    const backend = this.#backendFor(options.backend)
    return this.#open(
      Effect.flatMap(backendOf(backend, this.#backendContext()), (b) =>
        Effect.flatMap(ThreadManager, (manager) =>
          manager.resume({ backend: b, threadId, ...defined({ cwd: options.cwd }), delegate: this.#delegateOptions() })
        )
      )
    )
  }

  /** Forks a thread (live, or only in its rollout) from a snapshot of its history into a new thread. */
  async forkThread(
    threadId: string,
    snapshot: ForkSnapshot,
    options: ContinueThreadOptions = {}
  ): Promise<DeputyThread> {
    const backend = this.#backendFor(options.backend)
    return this.#open(
      Effect.flatMap(backendOf(backend, this.#backendContext()), (b) =>
        Effect.flatMap(ThreadManager, (manager) =>
          manager.fork({
            backend: b,
            from: threadId,
            snapshot,
            ...defined({ cwd: options.cwd }),
            delegate: this.#delegateOptions()
          })
        )
      )
    )
  }

  /** The ids of the live threads, sorted. */
  async listThreads(): Promise<ReadonlyArray<string>> {
    return this.#run(Effect.flatMap(ThreadManager, (manager) => manager.list))
  }

  /** Every approval request waiting for an answer (the callbacks gave none), oldest first. */
  async pendingApprovals(): Promise<ReadonlyArray<PendingRequest>> {
    return this.#run(Effect.flatMap(ApprovalRegistry, (registry) => registry.pending))
  }

  /** Answers a pending request by id: a decision for a command or patch, answers for questions. */
  async answerApproval(requestId: string, answer: Decision | UserInputResponse): Promise<void> {
    const pending = (await this.pendingApprovals()).find((p) => p.requestId === requestId)
    await this.#run(
      Effect.flatMap(ApprovalRegistry, (registry) =>
        typeof answer === "string" ? registry.decide(requestId, answer) : registry.respond(requestId, answer)
      )
    )
    if (pending !== undefined) {
      this.#log.add({
        request: pending.request,
        by: "answer",
        ...(typeof answer === "string" ? { decision: answer } : { response: answer })
      })
    }
  }

  /**
   * Shuts every thread down (each within `closeTimeoutMs`) and releases everything the Deputy holds.
   * Resolves to the shutdown report; calling it again gives the same report.
   */
  close(): Promise<ShutdownReport> {
    this.#closed ??= (async () => {
      for (const run of this.#inflight)
        run.stop(new DeputyError("DeputyClosed", "the deputy was closed during the run"))
      const timeout = this.#options.closeTimeoutMs ?? 5000
      const exit = await this.#runtime.runPromiseExit(
        Effect.flatMap(ThreadManager, (manager) => manager.shutdownAll(timeout))
      )
      await this.#runtime.dispose()
      this.#threads.clear()
      this.#setStallWatch(false)
      if (Exit.isFailure(exit)) throw fromCause(exit.cause)
      return exit.value
    })()
    return this.#closed
  }

  /** `await using deputy = new Deputy(…)` closes it at the end of the block. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  // ---- internals shared with DeputyThread ----

  /** Runs an effect on this Deputy's runtime; a failure rejects with a DeputyError, never a FiberFailure. */
  async #run<A, E>(effect: Effect.Effect<A, E, Services>, signal?: AbortSignal): Promise<A> {
    if (this.#closed !== undefined) throw new DeputyError("DeputyClosed", "this deputy was closed: make a new one")
    const exit = await this.#runtime.runPromiseExit(effect, signal === undefined ? undefined : { signal })
    if (Exit.isSuccess(exit)) return exit.value
    throw fromCause(exit.cause as Cause.Cause<unknown>)
  }

  /** @internal */
  static run<A, E>(deputy: Deputy, effect: Effect.Effect<A, E, Services>, signal?: AbortSignal): Promise<A> {
    return deputy.#run(effect, signal)
  }

  /** @internal */
  static log(deputy: Deputy): ApprovalLog {
    return deputy.#log
  }

  /** @internal */
  static beginRun(deputy: Deputy, run: RunControl): void {
    deputy.#inflight.add(run)
    deputy.#setStallWatch(true)
  }

  /** @internal */
  static endRun(deputy: Deputy, run: RunControl): void {
    deputy.#inflight.delete(run)
    if (deputy.#inflight.size === 0) deputy.#setStallWatch(false)
  }

  /** @internal */
  static forget(deputy: Deputy, threadId: string): void {
    deputy.#threads.delete(threadId)
    deputy.#log.forget(threadId)
  }

  #backendFor(backend: DeputyBackend | undefined): DeputyBackend {
    const chosen = backend ?? this.#options.backend
    if (chosen === undefined) {
      throw new DeputyError(
        "NoBackend",
        "no backend: pass { backend: scripted(…) | codex(…) | codexExec(…) } here or to new Deputy()"
      )
    }
    return chosen
  }

  #backendContext() {
    return { policy: this.#policy, home: this.#options.home }
  }

  #delegateOptions(name?: string) {
    return {
      // token_count is kept (runs report usage); the rest of the default filter stays.
      filter: (msg: EventMsg) => msg.type === "token_count" || Delegate.defaultEventFilter(msg),
      ...(name === undefined ? {} : { agentName: name })
    }
  }

  async #open<E>(start: Effect.Effect<Thread, E, Services>): Promise<DeputyThread> {
    const thread = await this.#run(start)
    const existing = this.#threads.get(thread.threadId)
    if (existing !== undefined) return existing
    const wrapped = new DeputyThread(this, thread)
    this.#threads.set(thread.threadId, wrapped)
    return wrapped
  }

  #warn(request: ParentRequest | undefined, message: string) {
    const text = `deputy: ${message}${request === undefined ? "" : ` for ${request.requestId}`}; denied`
    ;(this.#options.onWarning ?? console.warn)(text)
    const thread = request === undefined ? undefined : this.#threads.get(request.threadId)
    if (thread !== undefined) void thread.warn(text)
  }

  /**
   * The parent under the registry: the policy first, then the callbacks for what it leaves open.
   * Whatever neither answers stays pending in the registry.
   */
  #parentLayer(): Layer.Layer<Parent> {
    const options = this.#options
    const warn = (request: ParentRequest, message: string) => this.#warn(request, message)
    const perKind: ApprovalCallbacks =
      typeof options.onApproval === "function"
        ? { exec: options.onApproval, patch: options.onApproval }
        : (options.onApproval ?? {})
    const userInput = perKind.userInput ?? options.onUserInput
    const callbacks: ParentCallbacks = {
      ...(perKind.exec === undefined
        ? {}
        : { execApproval: checked(perKind.exec, isDecision, "denied", DECISIONS.join(" | "), warn) }),
      ...(perKind.patch === undefined
        ? {}
        : { patchApproval: checked(perKind.patch, isDecision, "denied", DECISIONS.join(" | "), warn) }),
      ...(userInput === undefined
        ? {}
        : {
            userInput: checked(
              userInput,
              isResponse,
              { answers: {} },
              "{ answers: { [questionId]: { answers: string[] } } }",
              warn
            )
          })
    }
    const log = this.#log
    return Layer.effect(
      Parent,
      Effect.gen(this, function* () {
        const byPolicy = yield* Effect.provide(Parent, Parent.layerPolicy(this.#policy))
        const byCallback = yield* Effect.provide(Parent, Parent.layerCallbacks(callbacks))
        // Requests being asked, by id: a withdrawal is logged with its request.
        const asked = new Map<string, ParentRequest>()
        const chain =
          <Req extends ParentRequest, A>(
            pick: (p: ParentService) => (request: Req) => Effect.Effect<A, ParentError>,
            toRecord: (a: A) => Pick<ApprovalRecord, "decision" | "response">
          ) =>
          (request: Req): Effect.Effect<A, ParentError> => {
            const settled = (by: ApprovalRecord["by"]) => (a: A) =>
              Effect.sync(() => {
                asked.delete(request.requestId)
                log.add({ request, by, ...toRecord(a) })
              })
            return Effect.sync(() => asked.set(request.requestId, request)).pipe(
              Effect.zipRight(pick(byPolicy)(request)),
              Effect.tap(settled("policy")),
              Effect.catchTag("NoAnswer", () => Effect.tap(pick(byCallback)(request), settled("callback"))),
              // Unanswered, the request waits in the registry for an answer by id. It waits on a Deferred,
              // not on Effect.never (whose ref'd interval would keep Node alive for ever): an idle process
              // then shows the run can never finish, and the stall watch fails it.
              Effect.catchTag("NoAnswer", () => Effect.flatMap(Deferred.make<A>(), Deferred.await))
            )
          }
        const decision = (d: Decision) => ({ decision: d })
        const service: ParentService = {
          requestExecApproval: chain((p) => p.requestExecApproval, decision),
          requestPatchApproval: chain((p) => p.requestPatchApproval, decision),
          requestUserInput: chain(
            (p) => p.requestUserInput,
            (response: UserInputResponse) => ({ response })
          ),
          withdraw: (requestId) =>
            Effect.zipRight(
              Effect.sync(() => {
                const request = asked.get(requestId)
                asked.delete(requestId)
                if (request !== undefined) log.add({ request, by: "withdrawn", decision: "abort" })
              }),
              byCallback.withdraw(requestId)
            )
        }
        return service
      })
    )
  }

  /** Node ran out of work while runs wait: those runs can never finish, so they fail instead of Node exiting 0. */
  readonly #onBeforeExit = () => {
    if (this.#inflight.size === 0) return
    let pending: ReadonlyArray<PendingRequest> = []
    const exit = this.#runtime.runSyncExit(Effect.flatMap(ApprovalRegistry, (registry) => registry.pending))
    if (Exit.isSuccess(exit)) pending = exit.value
    for (const run of this.#inflight) {
      run.stall(pending.filter((p) => p.request.threadId === run.threadId))
    }
  }

  #setStallWatch(on: boolean) {
    process.off("beforeExit", this.#onBeforeExit)
    if (on) process.on("beforeExit", this.#onBeforeExit)
  }
}

const firstIssue = (error: unknown) => {
  if (typeof error === "object" && error !== null && "issues" in error && Array.isArray(error.issues)) {
    return (error.issues as Array<{ path: Array<PropertyKey>; message: string }>)
      .map((i) => `${i.path.map(String).join(".") || "(root)"}: ${i.message}`)
      .join("; ")
  }
  return error instanceof Error ? error.message : String(error)
}

const defined = <T extends object>(value: T): { [K in keyof T]: Exclude<T[K], undefined> } =>
  Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as {
    [K in keyof T]: Exclude<T[K], undefined>
  }

/** One run in flight: what stops it (its signal, a stall, the deputy closing), and why. */
class RunControl {
  readonly controller = new AbortController()
  reason:
    | { readonly type: "signal"; readonly cause: unknown }
    | { readonly type: "stalled"; readonly pending: ReadonlyArray<PendingRequest> }
    | { readonly type: "closed"; readonly error: DeputyError }
    | undefined
  constructor(readonly threadId: string) {}
  abort(cause: unknown) {
    this.reason ??= { type: "signal", cause }
    this.controller.abort()
  }
  stall(pending: ReadonlyArray<PendingRequest>) {
    this.reason ??= { type: "stalled", pending }
    this.controller.abort()
  }
  stop(error: DeputyError) {
    this.reason ??= { type: "closed", error }
    this.controller.abort()
  }
}

/** One sub-agent thread. Runs are one at a time; `close()` cancels it and its sub-agents. */
export class DeputyThread {
  /** The thread's id (a canonical UUID). */
  readonly id: string
  readonly #deputy: Deputy
  readonly #thread: Thread
  #busy = false
  #closed: Promise<CancelReport> | undefined

  /** @internal Made by `Deputy.startThread`, `resumeThread` and `forkThread`. */
  constructor(deputy: Deputy, thread: Thread) {
    this.#deputy = deputy
    this.#thread = thread
    this.id = thread.threadId
  }

  /** The thread's rollout file, once it exists (a fresh thread writes none before its first turn). */
  async rolloutPath(): Promise<string | undefined> {
    return Option.getOrUndefined(await Deputy.run(this.#deputy, this.#thread.rolloutPath))
  }

  /** Runs one turn and resolves when it ends. Rejects with RunAborted (signal), RunStalled, or another DeputyError. */
  async run(input: RunInput, options: RunOptions = {}): Promise<RunResult> {
    const mark = Deputy.log(this.#deputy).mark(this.id)
    const events: Array<ThreadEvent> = []
    for await (const event of this.runStreamed(input, options)) events.push(event)
    const end = events.at(-1)
    let lastMessage: string | undefined
    let usage: Usage | undefined
    for (const e of events) {
      if (e.type === "agent_message") lastMessage = e.message
      if (e.type === "token_count") {
        usage = { inputTokens: e.inputTokens, outputTokens: e.outputTokens, totalTokens: e.totalTokens }
      }
    }
    return {
      finalResponse: (end?.type === "turn_complete" ? end.lastAgentMessage : undefined) ?? lastMessage,
      events,
      approvals: Deputy.log(this.#deputy).since(this.id, mark),
      usage,
      status: end?.type === "turn_complete" ? "completed" : "aborted"
    }
  }

  /**
   * Runs one turn and yields its events as they come; ends after `turn_complete` or `turn_aborted`.
   * Leaving the loop early (or aborting the signal) cancels the thread.
   */
  async *runStreamed(input: RunInput, options: RunOptions = {}): AsyncGenerator<ThreadEvent, void, undefined> {
    if (this.#closed !== undefined)
      throw new DeputyError("ThreadClosed", `thread ${this.id} was closed: start or resume another`)
    if (this.#busy) {
      throw new DeputyError("RunInProgress", `thread ${this.id} is already running a turn: await it before the next`)
    }
    this.#busy = true
    const control = new RunControl(this.id)
    const signal = options.signal
    const onAbort = () => control.abort(signal?.reason)
    if (signal?.aborted) onAbort()
    signal?.addEventListener("abort", onAbort, { once: true })
    Deputy.beginRun(this.#deputy, control)
    let turnEnded = false
    try {
      const op = typeof input === "string" ? userText(input) : input
      if (control.reason === undefined) await Deputy.run(this.#deputy, this.#thread.submit(op))
      while (control.reason === undefined) {
        const exit = await Deputy.run(
          this.#deputy,
          Effect.exit(Effect.option(this.#thread.delegate.take)),
          control.controller.signal
        ).catch((error: unknown) => (control.reason === undefined ? Promise.reject(error) : undefined))
        if (exit === undefined || control.reason !== undefined) break
        if (Exit.isFailure(exit)) throw fromCause(exit.cause)
        if (Option.isNone(exit.value)) {
          throw this.#closed !== undefined
            ? new DeputyError("ThreadClosed", `thread ${this.id} was closed during the run`)
            : new DeputyError("ThreadEnded", `thread ${this.id} ended before its turn did (its agent stopped)`)
        }
        const msg = exit.value.value.msg
        yield msg
        if (isTurnEnd(msg)) {
          turnEnded = true
          return
        }
      }
      throw await this.#stopped(control)
    } finally {
      signal?.removeEventListener("abort", onAbort)
      Deputy.endRun(this.#deputy, control)
      this.#busy = false
      // The caller left the loop mid-turn: nobody reads the rest, so the thread is cancelled (§7).
      if (!turnEnded && control.reason === undefined) await this.close().catch(() => undefined)
    }
  }

  /** Why a run stopped early, as the error it rejects with. */
  async #stopped(control: RunControl): Promise<DeputyError> {
    const reason = control.reason
    if (reason?.type === "closed") return reason.error
    const report = await this.close()
    if (reason?.type === "stalled") return new RunStalled(this.id, reason.pending, report)
    return new RunAborted(this.id, report, reason?.type === "signal" ? reason.cause : undefined)
  }

  /** @internal Adds a warning event to this thread's events (a callback's unusable answer). */
  async warn(message: string): Promise<void> {
    if (this.#closed !== undefined) return
    await Deputy.run(this.#deputy, this.#thread.delegate.report({ type: "warning", message })).catch(() => undefined)
  }

  /**
   * Cancels the thread and its sub-agents: pending approvals are withdrawn, the agent is interrupted,
   * shut down and drained. Resolves to the report; calling it again gives the same report.
   */
  close(): Promise<CancelReport> {
    this.#closed ??= Deputy.run(
      this.#deputy,
      Effect.flatMap(ThreadManager, (manager) => manager.cancel(this.id))
    ).finally(() => Deputy.forget(this.#deputy, this.id))
    return this.#closed
  }

  /** `await using thread = await deputy.startThread(…)` closes it at the end of the block. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }
}
