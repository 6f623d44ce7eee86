/**
 * The launch of one thread: `start`, `resume` and `fork` pick its id, metadata and rollout, then one
 * path spawns its agent, checks the first event (§10), wires the rollout writer and the delegate, and
 * registers it. Each thread owns a child scope of the manager's threads scope holding its slots, its
 * rollout writer, its agent and its delegate; closing that scope ends the thread, records how it ended
 * and takes its ops out of the op log. Nothing here outlives the manager.
 */
import {
  type RolloutItem,
  type RolloutMeta,
  type SessionSource,
  type Submission,
  type TerminalState,
  ThreadId,
  TurnId
} from "@deputy/protocol"
import { Data, Duration, Effect, ExecutionStrategy, Exit, Option, PubSub, Scope } from "effect"
import { type Delegate, interactive } from "../Delegate.js"
import { applyForkSnapshot } from "../ForkSnapshot.js"
import * as Mailboxes from "../Mailboxes.js"
import type { Parent } from "../Parent.js"
import type { RolloutError, RolloutIoFailed, RolloutStoreService, RolloutWriter } from "../Rollout.js"
import type { ForkOptions, ResumeOptions, StartOptions, Thread, ThreadStartError } from "../ThreadManager.js"
import type * as Caps from "./Caps.js"
import { decode } from "./decode.js"
import { type Entry, type LiveThreads, ThreadNotFound } from "./LiveThreads.js"
import type { OpLog } from "./OpLog.js"
import { TreeCancelled, type Trees } from "./Trees.js"

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

const decodeThreadId = decode(ThreadId, "thread id")
const decodeTurnId = decode(TurnId, "turn id")

/** The pools a start takes a slot of: its backend's, and for a sub-agent its parent's and its tree's. */
const slotRequest = (options: StartOptions<unknown>, threadId: ThreadId): Caps.SlotRequest => {
  const source = options.source
  if (source?.type !== "sub_agent") return { threadId, backend: options.backend.name }
  return {
    threadId,
    backend: options.backend.name,
    parentThreadId: source.parentThreadId,
    treeRoot: options.delegate?.ancestors?.[0] ?? source.parentThreadId
  }
}

/** A thread's submit: a `user_input` gets a turn id, the caller's (a UUID, canonicalised) or a fresh one, unique in the thread (§11). */
const submitWithTurnIds =
  (threadId: ThreadId, delegate: Delegate, knownTurnIds: Set<string>): Thread["submit"] =>
  (op, options) =>
    Effect.gen(function* () {
      if (op.type !== "user_input") return yield* delegate.submit(op)
      const turnId =
        options?.turnId === undefined ? TurnId.parse(crypto.randomUUID()) : yield* decodeTurnId(options.turnId)
      if (knownTurnIds.has(turnId)) return yield* new DuplicateTurnId({ threadId, turnId })
      knownTurnIds.add(turnId)
      return yield* delegate.submit(op, turnId)
    })

/** Starts, resumes and forks threads of one manager. */
export interface Launch {
  /** Starts a fresh thread; its first event must be `session_configured`. */
  readonly start: <R>(options: StartOptions<R>) => Effect.Effect<Thread, ThreadStartError, R | Parent>
  /** Resumes a thread from its rollout; a running thread is returned as it is (§12). */
  readonly resume: <R>(options: ResumeOptions<R>) => Effect.Effect<Thread, ThreadStartError, R | Parent>
  /** Forks a thread from a snapshot of its history into a new thread whose rollout is written at once. */
  readonly fork: <R>(options: ForkOptions<R>) => Effect.Effect<Thread, ThreadStartError, R | Parent>
}

/** Launches threads into `scope` (closed in parallel with the manager), registering them in `registry`. */
export const make = (deps: {
  readonly scope: Scope.Scope
  readonly registry: LiveThreads
  readonly caps: Caps.Caps
  readonly trees: Trees
  readonly opLog: OpLog
  readonly store: RolloutStoreService
  readonly created: PubSub.PubSub<ThreadId>
  /** How long a new agent may take to send `session_configured` (§10). */
  readonly startTimeout: Duration.Duration
}): Launch => {
  const { registry, caps, trees, opLog, store } = deps

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
      const scope = yield* Scope.fork(deps.scope, ExecutionStrategy.sequential)
      // Runs last: the thread's ops (its shutdown's included) leave the op log with it.
      yield* Scope.addFinalizer(
        scope,
        Effect.sync(() => opLog.forget(threadId))
      )
      const fail = <E>(error: E) => Scope.close(scope, Exit.void).pipe(Effect.zipRight(Effect.fail(error)))
      const parentContext = yield* Effect.context<Parent>()
      // Interrupted half-way (say, a parent cancelled while its child waits for a slot): release it all.
      // Everything the thread holds (its slot, rollout writer, agent, delegate) lives in its scope.
      return yield* Effect.onInterrupt(
        Effect.gen(function* () {
          const ancestors = options.delegate?.ancestors ?? []
          const refuseInCancelledTree = Effect.suspend(() => {
            const cancelled = trees.cancelledAncestor(ancestors)
            return cancelled === undefined ? Effect.void : fail(new TreeCancelled({ threadId, cancelled }))
          })
          yield* refuseInCancelledTree
          yield* caps.take(slotRequest(options, threadId)).pipe(
            Effect.onInterrupt(() => Scope.close(scope, Exit.void)),
            Effect.catchAll(fail)
          )
          // The wait for a slot may have outlasted the start of a cancel of this tree.
          yield* refuseInCancelledTree
          const depth = options.source?.type === "sub_agent" ? options.source.depth : 0
          // §20: a failed rollout write becomes an `error` event for the caller; the next turn tries again.
          let reportError: (error: RolloutIoFailed) => Effect.Effect<void> = () => Effect.void
          const writer = yield* rollout((error) => reportError(error)).pipe(Effect.catchAll(fail))
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
              spawnChild: trees.spawnChild({ threadId, depth, ancestors, context: parentContext })
            })
            .pipe(Effect.catchAll(fail))
          // §10: the first event must be session_configured; anything else shuts the agent down.
          // A backend that never says anything must not hang the start: after the bound it is "no event".
          // Most backends have said it by now: then no timer (a race forks two fibers).
          const first = yield* Option.getOrElse(agent.events.unsafeSize(), () => 0) > 0
            ? Effect.option(Mailboxes.take(agent.events))
            : Mailboxes.take(agent.events).pipe(
                Effect.option,
                Effect.timeoutTo({ duration: deps.startTimeout, onTimeout: () => Option.none(), onSuccess: (e) => e })
              )
          yield* Option.match(first, { onNone: () => Effect.void, onSome: writer.event })
          if (Option.isNone(first) || first.value.msg.type !== "session_configured") {
            const got = Option.match(first, {
              onNone: () => `no event within ${Duration.format(deps.startTimeout)}`,
              onSome: (e) => e.msg.type
            })
            yield* agent.submit({ id: "shutdown", op: { type: "shutdown" } }).pipe(Effect.ignore)
            const error = new SessionConfiguredNotFirst({ threadId, got })
            ending = { state: "failed", reason: error.message }
            return yield* fail(error)
          }
          const configured = first.value.msg
          if (configured.backendThreadId !== undefined) yield* writer.setBackendThreadId(configured.backendThreadId)

          const logOp = (submission: Submission) => Effect.sync(() => opLog.append(threadId, submission))
          const delegate = yield* interactive(Effect.succeed(agent), {
            ...options.delegate,
            onSubmission: (submission) => Effect.zipRight(writer.submission(submission), logOp(submission)),
            onEvents: writer.events
          })
          // Closing the thread waits for its delegate's shutdown (§8) even when another fiber began it
          // (a cancel, shutdownAll): its agent is released only after the drain.
          yield* Scope.addFinalizer(scope, Effect.asVoid(delegate.cancel))
          reportError = (error) => delegate.report({ type: "error", message: error.message })
          // §35: resume says what it repaired, to the caller and on the Thread.
          yield* Effect.forEach(writer.repairs, (repair) =>
            delegate.report({ type: "warning", message: repair.message })
          )
          // A running turn aborted by the shutdown, or an agent that died or never ended, is not a clean end.
          ended = Effect.gen(function* () {
            if (!(yield* delegate.isShutDown)) return
            const { outcome } = yield* delegate.awaitShutdown
            const status = yield* agent.status.get
            if (status.type === "errored") ending = { state: "failed", reason: status.message }
            else if (outcome === "aborted") ending = { state: "aborted", reason: "its turn was interrupted" }
            else if (outcome !== "completed") ending = { state: "failed", reason: `shutdown: ${outcome}` }
          })

          const thread: Thread = {
            threadId,
            meta,
            repairs: writer.repairs,
            submit: submitWithTurnIds(threadId, delegate, knownTurnIds),
            events: delegate.events,
            delegate,
            rolloutPath: writer.path,
            isRunning: Effect.map(delegate.isShutDown, (done) => !done)
          }
          const entry: Entry = {
            thread,
            internal: options.internal === true,
            scope,
            flush: Effect.ignore(writer.flush)
          }
          yield* registry.add(entry)
          yield* PubSub.publish(deps.created, threadId)
          return thread
        }).pipe(Scope.extend(scope)),
        () => Scope.close(scope, Exit.void)
      )
    }).pipe(Effect.ensuring(registry.unreserve(threadId)))

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
      yield* registry.reserve(threadId)
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
      const live = registry.get(threadId)
      if (Option.isSome(live)) {
        // §12: a running thread is returned as it is; a stale entry is replaced.
        if (yield* live.value.thread.isRunning) {
          const running = Option.getOrUndefined(yield* live.value.thread.rolloutPath)
          if (options.rolloutPath !== undefined && running !== undefined && running !== options.rolloutPath) {
            return yield* new RolloutPathMismatch({ threadId, running, requested: options.rolloutPath })
          }
          return live.value.thread
        }
        yield* registry.drop(threadId)
      }
      yield* registry.reserve(threadId)
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
      const live = registry.get(sourceId)
      if (Option.isSome(live)) yield* live.value.flush
      const source = yield* store.read((yield* store.findById(sourceId)).path)
      const history = applyForkSnapshot(source.lines, options.snapshot)
      const threadId =
        options.threadId === undefined ? ThreadId.parse(crypto.randomUUID()) : yield* decodeThreadId(options.threadId)
      yield* registry.reserve(threadId)
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

  return { start, resume, fork }
}
