/**
 * The ThreadManager: starts, resumes and forks threads and keeps the live ones in a registry
 * (§10–§16). Each thread owns a child scope of the manager's scope holding its agent, its delegate
 * and its rollout writer; removing or shutting a thread down closes that scope. The manager lives
 * as long as its layer.
 */
import {
  type Event,
  type Op,
  type RolloutItem,
  type RolloutMeta,
  type SessionSource,
  type Submission,
  type TerminalState,
  ThreadId,
  TurnId
} from "@deputy/protocol"
import type { FileSystem, Path } from "@effect/platform"
import {
  Context,
  Data,
  Duration,
  Effect,
  ExecutionStrategy,
  Exit,
  Layer,
  Option,
  PubSub,
  Ref,
  Stream as S,
  Scope,
  type Stream,
  SynchronizedRef
} from "effect"
import { type AgentClosed, type Backend, type ChildOutcome, type SpawnChild, SpawnFailed } from "./Agent.js"
import { type Delegate, type DelegateOptions, interactive, type OpsClosed, type ShutdownOutcome } from "./Delegate.js"
import type { InvalidInput } from "./errors.js"
import { applyForkSnapshot, type ForkSnapshot } from "./ForkSnapshot.js"
import { decode } from "./internal/decode.js"
import { makeSlotPool, type SlotPool } from "./internal/slots.js"
import type { Parent } from "./Parent.js"
import {
  type RolloutError,
  type RolloutIoFailed,
  RolloutStore,
  type RolloutStoreOptions,
  type RolloutWriter
} from "./Rollout.js"

/** No live thread has this id. */
export class ThreadNotFound extends Data.TaggedError("ThreadNotFound")<{ readonly threadId: string }> {
  override get message() {
    return `no live thread ${this.threadId}`
  }
}

/** A live thread already has this id (§11). */
export class DuplicateThreadId extends Data.TaggedError("DuplicateThreadId")<{ readonly threadId: string }> {
  override get message() {
    return `thread ${this.threadId} already exists`
  }
}

/** This thread already used this turn id (§11). */
export class DuplicateTurnId extends Data.TaggedError("DuplicateTurnId")<{
  readonly threadId: string
  readonly turnId: string
}> {
  override get message() {
    return `thread ${this.threadId} already has a turn ${this.turnId}`
  }
}

/** The agent's first event was not `session_configured` (§10); the agent was shut down. */
export class SessionConfiguredNotFirst extends Data.TaggedError("SessionConfiguredNotFirst")<{
  readonly threadId: string
  readonly got: string
}> {
  override get message() {
    return `thread ${this.threadId}: first event was ${this.got}, expected session_configured`
  }
}

/** A resume named a rollout file other than the running thread's (§12). */
export class RolloutPathMismatch extends Data.TaggedError("RolloutPathMismatch")<{
  readonly threadId: string
  readonly running: string
  readonly requested: string
}> {
  override get message() {
    return `thread ${this.threadId} is running from ${this.running}, not ${this.requested}`
  }
}

/** A sub-agent was not started because its tree is being cancelled. */
export class TreeCancelled extends Data.TaggedError("TreeCancelled")<{
  readonly threadId: string
  readonly cancelled: string
}> {
  override get message() {
    return `thread ${this.threadId} not started: its ancestor ${this.cancelled} is being cancelled`
  }
}

/**
 * A sub-agent was refused rather than queued: every slot of its tree's cap is held by a parent that
 * waits for its own children, so none would ever be given back.
 */
export class CapDeadlock extends Data.TaggedError("CapDeadlock")<{
  readonly threadId: string
  readonly pool: string
  readonly holders: ReadonlyArray<string>
}> {
  override get message() {
    return `thread ${this.threadId} not started: every slot of ${this.pool} is held by a parent waiting for its children (${this.holders.join(", ")})`
  }
}

/** Too many starts already wait for a slot under the manager's limits. */
export class SpawnQueueFull extends Data.TaggedError("SpawnQueueFull")<{
  readonly waiting: number
  readonly queueLimit: number
}> {
  override get message() {
    return `${this.waiting} starts already wait for a slot (queue limit ${this.queueLimit})`
  }
}

/** Why a thread could not be started, resumed or forked. */
export type ThreadStartError =
  | InvalidInput
  | DuplicateThreadId
  | SessionConfiguredNotFirst
  | SpawnFailed
  | RolloutError
  | RolloutPathMismatch
  | ThreadNotFound
  | SpawnQueueFull
  | CapDeadlock
  | TreeCancelled

/** What the manager reports after `shutdownAll`, each list sorted by id (§13). */
export interface ShutdownReport {
  readonly completed: ReadonlyArray<ThreadId>
  readonly submitFailed: ReadonlyArray<ThreadId>
  readonly timedOut: ReadonlyArray<ThreadId>
}

/** What cancelling a thread ended: each thread of its subtree (children first) and the requests withdrawn. */
export interface CancelReport {
  readonly threads: ReadonlyArray<{ readonly threadId: ThreadId; readonly outcome: ShutdownOutcome }>
  readonly withdrawn: ReadonlyArray<string>
}

/**
 * Caps on live threads; starts beyond a cap wait in arrival order. A slot is freed however its thread
 * ends. A parent waiting for its children still holds its slot; a start whose tree's slots are all held
 * by such parents could never get one, so it fails at once with CapDeadlock instead of hanging.
 */
export interface ThreadLimits {
  /** Live sub-agents one thread may have at once. */
  readonly perParent?: number
  /** Live sub-agents in one tree (below its root) at once. */
  readonly perTree?: number
  /** Live threads per backend name. */
  readonly perBackend?: Readonly<Record<string, number>>
  /** How many starts may wait for a slot; one more fails with SpawnQueueFull. Default: no limit. */
  readonly queueLimit?: number
}

/** How a manager is set up. */
export interface ThreadManagerOptions {
  readonly limits?: ThreadLimits
  /** How long a new agent may take to send `session_configured` (§10). Default 60 seconds. */
  readonly startTimeout?: Duration.DurationInput
}

/** One live thread as the manager hands it out. */
export interface Thread {
  readonly threadId: ThreadId
  /** The thread's metadata, as its rollout's first line has (or will have) it. */
  readonly meta: RolloutMeta
  /**
   * Submits an op. A `user_input` may name its turn id (a UUID, canonicalised, unique in the thread);
   * otherwise a fresh one is used. Returns the submission id (the turn id for user input).
   */
  readonly submit: (
    op: Op,
    options?: { readonly turnId?: string }
  ) => Effect.Effect<string, InvalidInput | DuplicateTurnId | OpsClosed>
  /** The caller's events (filtered as the delegate's options say). */
  readonly events: Stream.Stream<Event>
  /** The delegate underneath, for status, take, close and cancel. */
  readonly delegate: Delegate
  /** The rollout file, once it exists. */
  readonly rolloutPath: Effect.Effect<Option.Option<string>>
  /** False once the agent has been shut down. */
  readonly isRunning: Effect.Effect<boolean>
}

/** How to start a thread. */
export interface StartOptions<R> {
  readonly backend: Backend<R>
  /** The thread id to use (any UUID spelling); fresh when absent. */
  readonly threadId?: string
  readonly cwd?: string
  /** Top-level, or a sub-agent of another thread. Default top-level. */
  readonly source?: SessionSource
  readonly name?: string
  /** Internal threads (made by deputy itself) are hidden from `get` and `list` (§16). */
  readonly internal?: boolean
  /** Options for the thread's delegate (capacity, filter, drain bound, …). */
  readonly delegate?: DelegateOptions
}

/** How to resume a thread: by id, or by rollout path (or both, which must agree). */
export interface ResumeOptions<R> extends Omit<StartOptions<R>, "source" | "threadId"> {
  readonly threadId?: string
  readonly rolloutPath?: string
}

/** How to fork a thread. */
export interface ForkOptions<R> extends Omit<StartOptions<R>, "source"> {
  /** The thread to fork (live or only in a rollout). */
  readonly from: string
  readonly snapshot: ForkSnapshot
}

/** One op as the manager submitted it, for tests and audit. */
export interface OpLogEntry {
  readonly threadId: ThreadId
  readonly submission: Submission
}

/** The ThreadManager service. */
export interface ThreadManagerService {
  /** Starts a fresh thread; its first event must be `session_configured`. */
  readonly start: <R>(options: StartOptions<R>) => Effect.Effect<Thread, ThreadStartError, R | Parent>
  /** Resumes a thread from its rollout; a running thread is returned as it is (§12). */
  readonly resume: <R>(options: ResumeOptions<R>) => Effect.Effect<Thread, ThreadStartError, R | Parent>
  /** Forks a thread from a snapshot of its history into a new thread whose rollout is written at once. */
  readonly fork: <R>(options: ForkOptions<R>) => Effect.Effect<Thread, ThreadStartError, R | Parent>
  /** A live, non-internal thread. */
  readonly get: (threadId: string) => Effect.Effect<Thread, ThreadNotFound | InvalidInput>
  /** The ids of live, non-internal threads, sorted. */
  readonly list: Effect.Effect<ReadonlyArray<ThreadId>>
  /** Cancels a thread and its whole live subtree, children first, and reports what that ended. */
  readonly cancel: (threadId: string) => Effect.Effect<CancelReport, InvalidInput>
  /** How many starts wait for a slot under the limits now. */
  readonly queued: Effect.Effect<number>
  /** Takes a thread out of the registry and shuts it down. */
  readonly remove: (threadId: string) => Effect.Effect<Option.Option<ThreadId>, InvalidInput>
  /** Shuts every thread down concurrently, each within `timeout`, and reports (§13). */
  readonly shutdownAll: (timeout: Duration.DurationInput) => Effect.Effect<ShutdownReport>
  /** The thread, then every descendant it spawned (from rollouts and live threads), first-seen order (§14). */
  readonly subtree: (threadId: string) => Effect.Effect<ReadonlyArray<ThreadId>, InvalidInput | RolloutError>
  /** Thread ids as threads are created; a slow subscriber never blocks a spawn (§15). */
  readonly created: Effect.Effect<Stream.Stream<ThreadId>, never, Scope.Scope>
  /** Every op submitted through the manager, in order. */
  readonly opLog: Effect.Effect<ReadonlyArray<OpLogEntry>>
}

/** Registry of live threads. */
export class ThreadManager extends Context.Tag("@deputy/core/ThreadManager")<ThreadManager, ThreadManagerService>() {
  /** A manager whose threads live until the layer's scope closes. Needs a RolloutStore. */
  static readonly layer: Layer.Layer<ThreadManager, never, RolloutStore> = Layer.scoped(
    ThreadManager,
    Effect.suspend(() => make({}))
  )

  /** A manager and the rollout store it needs, in `home` (default `DEPUTY_HOME`, else `~/.deputy`): one layer. */
  static readonly layerHome = (
    options: ThreadManagerOptions & RolloutStoreOptions = {}
  ): Layer.Layer<ThreadManager | RolloutStore, never, FileSystem.FileSystem | Path.Path> =>
    Layer.provideMerge(ThreadManager.layerWith(options), RolloutStore.layer(options))

  /** A manager with options (limits on live threads). */
  static readonly layerWith = (options: ThreadManagerOptions): Layer.Layer<ThreadManager, never, RolloutStore> =>
    Layer.scoped(
      ThreadManager,
      Effect.suspend(() => make(options))
    )
}

interface Entry {
  readonly thread: Thread
  readonly internal: boolean
  readonly scope: Scope.CloseableScope
  readonly shutdown: Effect.Effect<void, AgentClosed>
  readonly flush: Effect.Effect<void>
}

const decodeThreadId = decode(ThreadId, "thread id")
const decodeTurnId = decode(TurnId, "turn id")
const CREATED_BUFFER = 1024

const make = (managerOptions: ThreadManagerOptions) =>
  Effect.gen(function* () {
    const store = yield* RolloutStore
    yield* store.markCrashed // threads a dead deputy process left open end as `crashed` (no orphans)
    const managerScope = yield* Effect.scope
    const registry = yield* SynchronizedRef.make(new Map<ThreadId, Entry>())
    // Ids reserved by starts in flight: a second start with the same id fails at once (§11).
    const reserved = new Set<ThreadId>()
    const created = yield* PubSub.sliding<ThreadId>(CREATED_BUFFER)
    const opLog = yield* Ref.make<ReadonlyArray<OpLogEntry>>([])
    // Roots of trees being cancelled right now (§ trees: no sub-agent starts in a tree being cancelled).
    const cancelling = new Set<ThreadId>()
    const limits = managerOptions.limits ?? {}
    const startTimeout = Duration.decode(managerOptions.startTimeout ?? "60 seconds")
    const pools = new Map<string, SlotPool>()
    let waitingForSlots = 0

    /** Takes, in order, a slot of every pool that caps this start; held for the thread's life (its scope). */
    // Which threads hold a slot of each tree pool, and which threads wait for their own children: a
    // tree whose every slot is held by a waiting parent can never give a slot back.
    const treeHolders = new Map<string, Set<ThreadId>>()
    const waitingOnChildren = new Map<ThreadId, number>()
    const isWaiting = (threadId: ThreadId) => (waitingOnChildren.get(threadId) ?? 0) > 0

    const takeSlots = (options: StartOptions<unknown>, threadId: ThreadId) =>
      Effect.gen(function* () {
        const caps: Array<[string, number | undefined]> = [
          [`backend:${options.backend.name}`, limits.perBackend?.[options.backend.name]]
        ]
        const source = options.source
        if (source?.type === "sub_agent") {
          const root = options.delegate?.ancestors?.[0] ?? source.parentThreadId
          caps.unshift([`tree:${root}`, limits.perTree], [`parent:${source.parentThreadId}`, limits.perParent])
        }
        for (const [key, limit] of caps) {
          if (limit === undefined) continue
          let pool = pools.get(key)
          if (pool === undefined) {
            pool = makeSlotPool(limit)
            pools.set(key, pool)
          }
          const holders = key.startsWith("tree:") ? (treeHolders.get(key) ?? new Set<ThreadId>()) : undefined
          if (!pool.isFree()) {
            if (holders !== undefined && holders.size > 0 && [...holders].every(isWaiting)) {
              return yield* new CapDeadlock({ threadId, pool: key, holders: [...holders] })
            }
            if (limits.queueLimit !== undefined && waitingForSlots >= limits.queueLimit) {
              return yield* new SpawnQueueFull({ waiting: waitingForSlots, queueLimit: limits.queueLimit })
            }
            waitingForSlots++
            yield* Effect.ensuring(
              pool.acquire,
              Effect.sync(() => waitingForSlots--)
            )
          } else {
            yield* pool.acquire
          }
          if (holders !== undefined) {
            holders.add(threadId)
            treeHolders.set(key, holders)
            yield* Effect.addFinalizer(() => Effect.sync(() => holders.delete(threadId)))
          }
        }
      })

    const reserve = (threadId: ThreadId) =>
      SynchronizedRef.modifyEffect(registry, (threads) => {
        if (threads.has(threadId) || reserved.has(threadId)) {
          return Effect.fail(new DuplicateThreadId({ threadId }))
        }
        reserved.add(threadId)
        return Effect.succeed([undefined, threads] as const)
      })

    /** Spawns, checks the first event, wires the rollout and the delegate, registers. */
    const launch = <R>(
      options: StartOptions<R>,
      threadId: ThreadId,
      meta: RolloutMeta,
      rollout: (
        onError: (error: RolloutIoFailed) => Effect.Effect<void>
      ) => Effect.Effect<RolloutWriter, RolloutError, Scope.Scope>,
      history: ReadonlyArray<RolloutItem> | undefined,
      knownTurnIds: Set<string>
    ) =>
      Effect.gen(function* () {
        const scope = yield* Scope.fork(managerScope, ExecutionStrategy.sequential)
        const fail = <E>(error: E) => Scope.close(scope, Exit.void).pipe(Effect.zipRight(Effect.fail(error)))
        // Interrupted half-way (say, a parent cancelled while its child waits for a slot): release it all.
        return yield* Effect.onInterrupt(
          Effect.gen(function* () {
            const ancestors = options.delegate?.ancestors ?? []
            const refuseInCancelledTree = Effect.suspend(() => {
              const cancelled = ancestors.find((id) => cancelling.has(id))
              return cancelled === undefined ? Effect.void : fail(new TreeCancelled({ threadId, cancelled }))
            })
            yield* refuseInCancelledTree
            yield* takeSlots(options, threadId).pipe(
              Scope.extend(scope),
              Effect.onInterrupt(() => Scope.close(scope, Exit.void)),
              Effect.catchAll(fail)
            )
            // The wait for a slot may have outlasted the start of a cancel of this tree.
            yield* refuseInCancelledTree
            const depth = options.source?.type === "sub_agent" ? options.source.depth : 0
            const parentContext = yield* Effect.context<Parent>()
            // §20: a failed rollout write becomes an `error` event for the caller; the next turn tries again.
            let reportError: (error: RolloutIoFailed) => Effect.Effect<void> = () => Effect.void
            const writer = yield* rollout((error) => reportError(error)).pipe(
              Scope.extend(scope),
              Effect.catchAll(fail)
            )
            // No orphans: how the thread ended is recorded after its agent's and delegate's finalizers ran.
            let ending: { readonly state: TerminalState; readonly reason?: string } = { state: "shutdown" }
            let ended: Effect.Effect<void> = Effect.void
            yield* Scope.addFinalizer(
              scope,
              Effect.suspend(() =>
                Effect.zipRight(
                  ended,
                  Effect.suspend(() => writer.terminal(ending.state, ending.reason))
                )
              )
            )
            const agent = yield* options.backend
              .spawn({
                threadId,
                ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
                ...(history === undefined ? {} : { history }),
                ...(meta.backendThreadId === undefined ? {} : { backendThreadId: meta.backendThreadId }),
                depth,
                spawnChild: spawnChildOf(threadId, depth, ancestors, parentContext)
              })
              .pipe(Scope.extend(scope), Effect.catchAll(fail))
            // §10: the first event must be session_configured; anything else shuts the agent down.
            // A backend that never says anything must not hang the start: after the bound it is "no event".
            const first = yield* agent.events.take.pipe(
              Effect.option,
              Effect.timeoutTo({ duration: startTimeout, onTimeout: () => Option.none(), onSuccess: (e) => e })
            )
            yield* Option.match(first, { onNone: () => Effect.void, onSome: writer.event })
            if (Option.isNone(first) || first.value.msg.type !== "session_configured") {
              const got = Option.match(first, {
                onNone: () => `no event within ${Duration.format(startTimeout)}`,
                onSome: (e) => e.msg.type
              })
              yield* agent.submit({ id: "shutdown", op: { type: "shutdown" } }).pipe(Effect.ignore)
              const error = new SessionConfiguredNotFirst({ threadId, got })
              ending = { state: "failed", reason: error.message }
              return yield* fail(error)
            }
            const configured = first.value.msg
            if (configured.backendThreadId !== undefined) yield* writer.setBackendThreadId(configured.backendThreadId)

            const logOp = (submission: Submission) => Ref.update(opLog, (all) => [...all, { threadId, submission }])
            const delegate = yield* interactive(Effect.succeed(agent), {
              ...options.delegate,
              onSubmission: (submission) => Effect.zipRight(writer.submission(submission), logOp(submission)),
              onEvents: writer.events
            }).pipe(Scope.extend(scope))
            reportError = (error) => delegate.report({ type: "error", message: error.message })
            // A running turn aborted by the shutdown, or an agent that died or never ended, is not a clean end.
            ended = Effect.gen(function* () {
              if (!(yield* delegate.isShutDown)) return
              const { outcome } = yield* delegate.awaitShutdown
              const status = yield* agent.status.get
              if (status.type === "errored") ending = { state: "failed", reason: status.message }
              else if (outcome === "aborted") ending = { state: "aborted", reason: "its turn was interrupted" }
              else if (outcome !== "completed") ending = { state: "failed", reason: `shutdown: ${outcome}` }
            })

            const submit: Thread["submit"] = (op, submitOptions) =>
              Effect.gen(function* () {
                if (op.type !== "user_input") return yield* delegate.submit(op)
                const turnId =
                  submitOptions?.turnId === undefined
                    ? TurnId.parse(crypto.randomUUID())
                    : yield* decodeTurnId(submitOptions.turnId)
                if (knownTurnIds.has(turnId)) return yield* new DuplicateTurnId({ threadId, turnId })
                knownTurnIds.add(turnId)
                return yield* delegate.submit(op, turnId)
              })

            const thread: Thread = {
              threadId,
              meta,
              submit,
              events: delegate.events,
              delegate,
              rolloutPath: writer.path,
              isRunning: Effect.map(delegate.isShutDown, (done) => !done)
            }
            const entry: Entry = {
              thread,
              internal: options.internal === true,
              scope,
              shutdown: agent.submit({ id: "shutdown", op: { type: "shutdown" } }),
              flush: Effect.ignore(writer.flush)
            }
            yield* SynchronizedRef.update(registry, (threads) => new Map(threads).set(threadId, entry))
            yield* PubSub.publish(created, threadId)
            return thread
          }),
          () => Scope.close(scope, Exit.void)
        )
      }).pipe(Effect.ensuring(Effect.sync(() => reserved.delete(threadId))))

    const metaFor = (
      threadId: ThreadId,
      backend: string,
      options: { cwd?: string; source?: SessionSource; name?: string },
      forkedFromId?: ThreadId
    ): RolloutMeta => ({
      type: "meta" as const,
      threadId,
      createdAt: new Date().toISOString(),
      backend,
      cwd: options.cwd ?? process.cwd(),
      source: options.source ?? { type: "top_level" },
      ...(forkedFromId === undefined ? {} : { forkedFromId }),
      ...(options.name === undefined ? {} : { name: options.name })
    })

    const start = <R>(options: StartOptions<R>) =>
      Effect.gen(function* () {
        const threadId =
          options.threadId === undefined ? ThreadId.parse(crypto.randomUUID()) : yield* decodeThreadId(options.threadId)
        yield* reserve(threadId)
        const meta = metaFor(threadId, options.backend.name, options)
        // §20: a fresh thread writes no file until its first turn.
        return yield* launch(
          options,
          threadId,
          meta,
          (onError) => store.create(meta, { mode: "lazy", onError }),
          undefined,
          new Set()
        )
      })

    const liveEntry = (threadId: ThreadId) =>
      Effect.map(SynchronizedRef.get(registry), (threads) => Option.fromNullable(threads.get(threadId)))

    const resume = <R>(options: ResumeOptions<R>) =>
      Effect.gen(function* () {
        const named = options.threadId === undefined ? undefined : yield* decodeThreadId(options.threadId)
        const path = options.rolloutPath ?? (named === undefined ? undefined : (yield* store.findById(named)).path)
        if (path === undefined) return yield* new ThreadNotFound({ threadId: "(none given)" })
        const history = yield* store.read(path)
        const threadId = history.meta.threadId
        if (named !== undefined && named !== threadId) {
          return yield* new RolloutPathMismatch({ threadId: named, running: "(not running)", requested: path })
        }
        const live = yield* liveEntry(threadId)
        if (Option.isSome(live)) {
          // §12: a running thread is returned as it is; a stale entry is replaced.
          if (yield* live.value.thread.isRunning) {
            const running = Option.getOrUndefined(yield* live.value.thread.rolloutPath)
            if (options.rolloutPath !== undefined && running !== undefined && running !== options.rolloutPath) {
              return yield* new RolloutPathMismatch({ threadId, running, requested: options.rolloutPath })
            }
            return live.value.thread
          }
          yield* dropEntry(threadId)
        }
        yield* reserve(threadId)
        const knownTurnIds = new Set(
          history.lines.flatMap((item) =>
            item.type === "submission" && item.submission.op.type === "user_input" ? [item.submission.id] : []
          )
        )
        return yield* launch(
          { ...options, cwd: options.cwd ?? history.meta.cwd },
          threadId,
          history.meta,
          (onError) => store.resume(path, { onError }),
          history.lines,
          knownTurnIds
        )
      })

    const fork = <R>(options: ForkOptions<R>) =>
      Effect.gen(function* () {
        const sourceId = yield* decodeThreadId(options.from)
        // A live source's buffered lines are flushed first, so the snapshot sees its whole history.
        const live = yield* liveEntry(sourceId)
        if (Option.isSome(live)) yield* live.value.flush
        const source = yield* store.read((yield* store.findById(sourceId)).path)
        const history = applyForkSnapshot(source.lines, options.snapshot)
        const threadId =
          options.threadId === undefined ? ThreadId.parse(crypto.randomUUID()) : yield* decodeThreadId(options.threadId)
        yield* reserve(threadId)
        const meta = metaFor(
          threadId,
          options.backend.name,
          { ...options, cwd: options.cwd ?? source.meta.cwd, source: source.meta.source },
          sourceId
        )
        const knownTurnIds = new Set<string>()
        // §20: a forked thread writes its rollout at once, starting with the snapshot.
        return yield* launch(
          options,
          threadId,
          meta,
          (onError) => store.create(meta, { mode: "immediate", history, onError }),
          history,
          knownTurnIds
        )
      })

    const dropEntry = (threadId: ThreadId) =>
      SynchronizedRef.modify(registry, (threads) => {
        const entry = threads.get(threadId)
        if (!entry) return [Option.none<Entry>(), threads] as const
        const rest = new Map(threads)
        rest.delete(threadId)
        return [Option.some(entry), rest] as const
      }).pipe(
        Effect.tap(Option.match({ onNone: () => Effect.void, onSome: (entry) => Scope.close(entry.scope, Exit.void) }))
      )

    const shutdownAll = (timeout: Duration.DurationInput) =>
      Effect.gen(function* () {
        const entries = [...(yield* SynchronizedRef.get(registry)).values()]
        const outcomes = yield* Effect.forEach(
          entries,
          (entry) =>
            entry.shutdown.pipe(
              Effect.matchEffect({
                onFailure: () => Effect.succeed("submitFailed" as const),
                onSuccess: () =>
                  entry.thread.delegate.awaitShutdown.pipe(
                    Effect.timeoutTo({
                      duration: timeout,
                      onSuccess: () => "completed" as const,
                      onTimeout: () => "timedOut" as const
                    })
                  )
              }),
              Effect.map((outcome) => [entry.thread.threadId, outcome] as const)
            ),
          { concurrency: "unbounded" }
        )
        const sorted = (kind: string) =>
          outcomes
            .filter(([, o]) => o === kind)
            .map(([id]) => id)
            .sort()
        const report: ShutdownReport = {
          completed: sorted("completed"),
          submitFailed: sorted("submitFailed"),
          timedOut: sorted("timedOut")
        }
        // §13: completed threads leave the registry; the others stay for a retry or a look.
        yield* Effect.forEach(report.completed, dropEntry, { discard: true })
        return report
      })

    const subtree = (threadId: string) =>
      Effect.gen(function* () {
        const root = yield* decodeThreadId(threadId)
        const live = [...(yield* SynchronizedRef.get(registry)).values()].map((entry) => entry.thread.meta)
        return firstSeenDescendants(root, childrenMap([...(yield* store.allMetas), ...live]))
      })

    /** Runs one nested sub-agent for one turn under `parentThreadId`; its requests climb to the same Parent. */
    const spawnChildOf =
      (
        parentThreadId: ThreadId,
        depth: number,
        ancestors: ReadonlyArray<ThreadId>,
        parentContext: Context.Context<Parent>
      ): SpawnChild =>
      (request) => {
        let childId: ThreadId | undefined
        const asSpawnFailed = (error: { readonly message: string }) =>
          new SpawnFailed({ backend: request.backend.name, reason: error.message, cause: error })
        const waiting = Effect.acquireRelease(
          Effect.sync(() => waitingOnChildren.set(parentThreadId, (waitingOnChildren.get(parentThreadId) ?? 0) + 1)),
          () =>
            Effect.sync(() => waitingOnChildren.set(parentThreadId, (waitingOnChildren.get(parentThreadId) ?? 1) - 1))
        )
        return Effect.gen(function* () {
          yield* waiting
          const child = yield* start({
            backend: request.backend,
            source: { type: "sub_agent", parentThreadId, depth: depth + 1 },
            ...(request.name === undefined ? {} : { name: request.name }),
            delegate: {
              ancestors: [...ancestors, parentThreadId],
              ...(request.name === undefined ? {} : { agentName: request.name })
            }
          }).pipe(
            Effect.provide(parentContext),
            Effect.mapError((error) => (error._tag === "SpawnFailed" ? error : asSpawnFailed(error)))
          )
          childId = child.threadId
          if (request.onStarted) yield* request.onStarted(child.threadId)
          yield* Effect.mapError(
            child.submit({ type: "user_input", items: [{ type: "text", text: request.input }] }),
            asSpawnFailed
          )
          const outcome = yield* turnOutcome(child)
          yield* dropEntry(child.threadId)
          return outcome
        }).pipe(
          Effect.scoped, // the parent counts as waiting until its child is done
          // Cancelling the parent's wait cancels the child's whole subtree.
          Effect.onInterrupt(() => (childId === undefined ? Effect.void : Effect.ignore(cancel(childId))))
        )
      }

    /** Reads a child's events until its turn ends; events that end without a turn end mean it was aborted. */
    const turnOutcome = (child: Thread) =>
      Effect.gen(function* () {
        let failed = false
        while (true) {
          const next = yield* Effect.option(child.delegate.take)
          if (Option.isNone(next)) {
            return { threadId: child.threadId, status: failed ? "failed" : "aborted" } satisfies ChildOutcome
          }
          const msg = next.value.msg
          if (msg.type === "error") failed = true
          if (msg.type === "turn_aborted") return { threadId: child.threadId, status: "aborted" } satisfies ChildOutcome
          if (msg.type === "turn_complete") {
            return {
              threadId: child.threadId,
              status: "completed",
              ...(msg.lastAgentMessage === undefined ? {} : { lastAgentMessage: msg.lastAgentMessage })
            } satisfies ChildOutcome
          }
        }
      })

    const cancel = (threadId: string) =>
      Effect.flatMap(decodeThreadId(threadId), (root) => {
        // While the tree is cancelling no sub-agent may start in it; one already starting is caught next round.
        const owner = !cancelling.has(root)
        cancelling.add(root)
        return cancelRounds(root).pipe(Effect.ensuring(Effect.sync(() => owner && cancelling.delete(root))))
      })

    /** Cancels the live subtree children first, again and again until none of it is left. */
    const cancelRounds = (root: ThreadId) =>
      Effect.gen(function* () {
        const report = { threads: [] as Array<CancelReport["threads"][number]>, withdrawn: [] as Array<string> }
        while (true) {
          const threads = yield* SynchronizedRef.get(registry)
          const live = firstSeenDescendants(root, childrenMap([...threads.values()].map((e) => e.thread.meta))).filter(
            (id) => threads.has(id)
          )
          if (live.length === 0) return report satisfies CancelReport
          for (const id of live.reverse()) {
            const entry = (yield* SynchronizedRef.get(registry)).get(id)
            if (entry === undefined) continue
            const shutdown = yield* entry.thread.delegate.cancel
            yield* dropEntry(id)
            report.threads.push({ threadId: id, outcome: shutdown.outcome })
            report.withdrawn.push(...shutdown.withdrawn)
          }
        }
      })

    const visible = (threadId: ThreadId) =>
      Effect.map(
        liveEntry(threadId),
        Option.filter((entry) => !entry.internal)
      )

    const service: ThreadManagerService = {
      start,
      resume,
      fork,
      get: (threadId) =>
        Effect.flatMap(decodeThreadId(threadId), (id) =>
          Effect.flatMap(
            visible(id),
            Option.match({
              onNone: () => Effect.fail(new ThreadNotFound({ threadId: id })),
              onSome: (entry) => Effect.succeed(entry.thread)
            })
          )
        ),
      list: Effect.map(SynchronizedRef.get(registry), (threads) =>
        [...threads.values()]
          .filter((e) => !e.internal)
          .map((e) => e.thread.threadId)
          .sort()
      ),
      remove: (threadId) =>
        Effect.flatMap(decodeThreadId(threadId), (id) =>
          Effect.map(
            dropEntry(id),
            Option.map((e) => e.thread.threadId)
          )
        ),
      shutdownAll,
      cancel,
      queued: Effect.sync(() => waitingForSlots),
      subtree,
      created: Effect.map(PubSub.subscribe(created), (queue) => S.fromQueue(queue)),
      opLog: Ref.get(opLog)
    }
    return service
  })

/** Parent id → child ids, from threads' metadata, in the order seen. */
const childrenMap = (metas: ReadonlyArray<RolloutMeta>) => {
  const children = new Map<ThreadId, Array<ThreadId>>()
  for (const meta of metas) {
    if (meta.source.type !== "sub_agent") continue
    const siblings = children.get(meta.source.parentThreadId) ?? []
    siblings.push(meta.threadId)
    children.set(meta.source.parentThreadId, siblings)
  }
  return children
}

/** `root`, then every descendant breadth-first, each once (§14). */
const firstSeenDescendants = (root: ThreadId, children: ReadonlyMap<ThreadId, ReadonlyArray<ThreadId>>) => {
  const seen = new Set<ThreadId>([root])
  const order: Array<ThreadId> = [root]
  for (let i = 0; i < order.length; i++) {
    for (const child of children.get(order[i]!) ?? []) {
      if (!seen.has(child)) {
        seen.add(child)
        order.push(child)
      }
    }
  }
  return order
}
