/**
 * The ThreadManager: starts, resumes and forks threads and keeps the live ones in a registry
 * (§10–§16). It joins five parts, each its own module with its own state and tests:
 *   LiveThreads  the registry of live threads, reservations and the duplicate guard (§11–§13)
 *   Caps         caps on live threads and their slot pools, queueing, CapDeadlock
 *   Launch       the launch of one thread (start, resume, fork): agent, first event, rollout, delegate
 *   Trees        nested sub-agents, cascading cancel and its complete report (§14, §35)
 *   OpLog        the ops submitted to live threads, bounded
 * Each thread owns a child scope of the manager's threads scope; the manager lives as long as its
 * layer, and closing it shuts every thread down at once (§8).
 */
import { type Event, type Op, type RolloutMeta, type SessionSource, ThreadId } from "@deputy/protocol"
import type { FileSystem, Path } from "@effect/platform"
import {
  Context,
  Duration,
  Effect,
  ExecutionStrategy,
  Layer,
  Option,
  PubSub,
  Stream as S,
  Scope,
  type Stream
} from "effect"
import type { Backend, SpawnFailed } from "./Agent.js"
import type { CallerCannotAnswer, Delegate, DelegateOptions, OpsClosed, ShutdownOutcome } from "./Delegate.js"
import type { InvalidInput } from "./errors.js"
import type { ForkSnapshot } from "./ForkSnapshot.js"
import type { CapDeadlock, SpawnQueueFull } from "./internal/Caps.js"
import * as Caps from "./internal/Caps.js"
import { decode } from "./internal/decode.js"
import type { DuplicateTurnId, RolloutPathMismatch, SessionConfiguredNotFirst } from "./internal/Launch.js"
import * as Launch from "./internal/Launch.js"
import * as LiveThreads from "./internal/LiveThreads.js"
import { type DuplicateThreadId, ThreadNotFound } from "./internal/LiveThreads.js"
import type { OpLogEntry } from "./internal/OpLog.js"
import * as OpLog from "./internal/OpLog.js"
import type { TreeCancelled } from "./internal/Trees.js"
import * as Trees from "./internal/Trees.js"
import type { Parent } from "./Parent.js"
import { type RolloutError, RolloutStore, type RolloutStoreOptions, type RolloutWarning } from "./Rollout.js"

export { CapDeadlock, SpawnQueueFull } from "./internal/Caps.js"
export { DuplicateTurnId, RolloutPathMismatch, SessionConfiguredNotFirst } from "./internal/Launch.js"
export { DuplicateThreadId, ThreadNotFound } from "./internal/LiveThreads.js"
export type { OpLogEntry } from "./internal/OpLog.js"
export { TreeCancelled } from "./internal/Trees.js"

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

/**
 * What cancelling a thread ended: each thread of its live subtree (children first), those that ended on
 * their own while the cancel ran included, with how each ended; and the requests withdrawn.
 */
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
  /** How many entries `opLog` keeps at most. Default 10,000. */
  readonly opLogLimit?: number
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
  ) => Effect.Effect<string, InvalidInput | DuplicateTurnId | OpsClosed | CallerCannotAnswer>
  /** The caller's events (filtered as the delegate's options say). */
  readonly events: Stream.Stream<Event>
  /** The delegate underneath, for status, take, close and cancel. */
  readonly delegate: Delegate
  /** The rollout file, once it exists. */
  readonly rolloutPath: Effect.Effect<Option.Option<string>>
  /** False once the agent has been shut down. */
  readonly isRunning: Effect.Effect<boolean>
  /** What resuming repaired in the rollout (a torn last line cut off, a newline added); empty otherwise. */
  readonly repairs: ReadonlyArray<RolloutWarning>
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
  /**
   * Cancels a thread and its whole live subtree, children first, and reports every thread of it that
   * ended meanwhile, with how (§35). Fails with ThreadNotFound when no live thread has the id.
   */
  readonly cancel: (threadId: string) => Effect.Effect<CancelReport, InvalidInput | ThreadNotFound>
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
  /**
   * The ops submitted to live threads, in order: a thread's ops leave with it, and past the manager's
   * `opLogLimit` (default 10,000) the oldest go first.
   */
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

const decodeThreadId = decode(ThreadId, "thread id")
const CREATED_BUFFER = 1024

const make = (options: ThreadManagerOptions) =>
  Effect.gen(function* () {
    const store = yield* RolloutStore
    yield* store.markCrashed // threads a dead deputy process left open end as `crashed` (no orphans)
    // §8: closing the manager closes every thread's scope at once (Interrupt → Shutdown → drain each),
    // so the whole close is bounded by one drain bound, not one per thread.
    const scope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.parallel)
    const created = yield* PubSub.sliding<ThreadId>(CREATED_BUFFER)
    const registry = LiveThreads.make()
    const caps = Caps.make(options.limits ?? {})
    const opLog = OpLog.make(options.opLogLimit)
    const startTimeout = Duration.decode(options.startTimeout ?? "60 seconds")
    // Trees start sub-agents through the launch, and the launch asks the trees: joined late, by name.
    const trees: Trees.Trees = Trees.make({ registry, caps, store, start: (start) => launch.start(start) })
    const launch = Launch.make({ scope, registry, caps, trees, opLog, store, created, startTimeout })
    const visible = (threadId: string) =>
      Effect.flatMap(decodeThreadId(threadId), (id) =>
        Option.match(
          Option.filter(registry.get(id), (entry) => !entry.internal),
          {
            onNone: () => Effect.fail(new ThreadNotFound({ threadId: id })),
            onSome: (entry) => Effect.succeed(entry.thread)
          }
        )
      )
    return ThreadManager.of({
      start: launch.start,
      resume: launch.resume,
      fork: launch.fork,
      get: visible,
      list: Effect.sync(() =>
        registry
          .entries()
          .filter((entry) => !entry.internal)
          .map((entry) => entry.thread.threadId)
          .sort()
      ),
      remove: (threadId) =>
        Effect.flatMap(decodeThreadId(threadId), (id) =>
          Effect.map(
            registry.drop(id),
            Option.map((entry) => entry.thread.threadId)
          )
        ),
      shutdownAll: registry.shutdownAll,
      cancel: trees.cancel,
      queued: Effect.sync(caps.queued),
      subtree: trees.subtree,
      created: Effect.map(PubSub.subscribe(created), (queue) => S.fromQueue(queue)),
      opLog: Effect.sync(opLog.entries)
    })
  })
