/**
 * Trees of threads: starting a nested sub-agent for its parent (`spawnChild`), cancelling a thread's
 * whole live subtree with a complete report (§35), and listing a subtree (§14). While a tree is being
 * cancelled no sub-agent may start in it. The set of trees being cancelled belongs to one manager and
 * holds a root only while its cancel runs.
 */
import { type RolloutMeta, ThreadId } from "@deputy/protocol"
import { type Context, Data, Effect, Option } from "effect"
import { type ChildOutcome, type SpawnChild, SpawnFailed } from "../Agent.js"
import type { InvalidInput } from "../errors.js"
import type { Parent } from "../Parent.js"
import type { RolloutError, RolloutStoreService } from "../Rollout.js"
import type { CancelReport, StartOptions, Thread, ThreadStartError } from "../ThreadManager.js"
import type { Caps } from "./Caps.js"
import { decode } from "./decode.js"
import { type LiveThreads, ThreadNotFound } from "./LiveThreads.js"

/** A sub-agent was not started because its tree is being cancelled. */
export class TreeCancelled extends Data.TaggedError("TreeCancelled")<{
  readonly threadId: string
  readonly cancelled: string
}> {
  override get message() {
    return `thread ${this.threadId} not started: its ancestor ${this.cancelled} is being cancelled`
  }
}

/** The thread a nested sub-agent is started for. */
export interface ParentThread {
  readonly threadId: ThreadId
  readonly depth: number
  /** Thread ids from the root down to this thread's parent. */
  readonly ancestors: ReadonlyArray<ThreadId>
  /** The context the parent thread was started in: its sub-agents' requests climb to the same Parent. */
  readonly context: Context.Context<Parent>
}

/** The trees of one manager. */
export interface Trees {
  /** Starts nested sub-agents of `parent`, each for one turn (the Agent port's SpawnChild). */
  readonly spawnChild: (parent: ParentThread) => SpawnChild
  /** Cancels a thread's live subtree children first and reports every thread of it that ended (§35). */
  readonly cancel: (threadId: string) => Effect.Effect<CancelReport, InvalidInput | ThreadNotFound>
  /** The thread, then every descendant (from rollouts and live threads), first-seen order (§14). */
  readonly subtree: (threadId: string) => Effect.Effect<ReadonlyArray<ThreadId>, InvalidInput | RolloutError>
  /** The first of `ancestors` whose tree is being cancelled now, if any. */
  readonly cancelledAncestor: (ancestors: ReadonlyArray<ThreadId>) => ThreadId | undefined
}

const decodeThreadId = decode(ThreadId, "thread id")

/** Trees over `registry`; `start` starts one thread (the manager's). */
export const make = (deps: {
  readonly registry: LiveThreads
  readonly caps: Caps
  readonly store: RolloutStoreService
  readonly start: <R>(options: StartOptions<R>) => Effect.Effect<Thread, ThreadStartError, R | Parent>
}): Trees => {
  const { registry, caps, store } = deps
  // Roots of trees being cancelled right now: no sub-agent starts in them.
  const cancelling = new Set<ThreadId>()
  // Per root being cancelled: sub-agents whose start had passed the check before the cancel began and
  // that registered while it ran. One may end on its own between two rounds, unseen by both (§35).
  const joinedLate = new Map<ThreadId, Array<Thread>>()

  /** Runs one nested sub-agent for one turn under `parent`; interrupting the wait cancels its subtree. */
  const spawnChild =
    (parent: ParentThread): SpawnChild =>
    (request) => {
      // The child's id is chosen first, so a child that cannot start is still named in its parent's report (§35).
      const childId = ThreadId.parse(crypto.randomUUID())
      let isStarted = false
      const asSpawnFailed = (error: { readonly message: string }) =>
        error instanceof SpawnFailed
          ? new SpawnFailed({ backend: error.backend, reason: error.reason, cause: error.cause, threadId: childId })
          : new SpawnFailed({ backend: request.backend.name, reason: error.message, cause: error, threadId: childId })
      return Effect.gen(function* () {
        yield* caps.waitForChild(parent.threadId)
        const child = yield* deps
          .start({
            backend: request.backend,
            threadId: childId,
            source: { type: "sub_agent", parentThreadId: parent.threadId, depth: parent.depth + 1 },
            ...(request.name === undefined ? {} : { name: request.name }),
            delegate: {
              ancestors: [...parent.ancestors, parent.threadId],
              ...(request.name === undefined ? {} : { agentName: request.name })
            }
          })
          .pipe(Effect.provide(parent.context), Effect.mapError(asSpawnFailed))
        isStarted = true
        yield* Effect.sync(() => {
          for (const id of [...parent.ancestors, parent.threadId]) joinedLate.get(id)?.push(child)
        })
        if (request.onStarted) yield* request.onStarted(child.threadId)
        yield* Effect.mapError(
          child.submit({ type: "user_input", items: [{ type: "text", text: request.input }] }),
          asSpawnFailed
        )
        const outcome = yield* turnOutcome(child)
        yield* registry.drop(child.threadId)
        return outcome
      }).pipe(
        Effect.scoped, // the parent counts as waiting until its child is done
        // Cancelling the parent's wait cancels the child's whole subtree.
        Effect.onInterrupt(() => (isStarted ? Effect.ignore(cancel(childId)) : Effect.void))
      )
    }

  const cancel = (threadId: string) =>
    Effect.flatMap(decodeThreadId(threadId), (root) =>
      Effect.gen(function* () {
        if (Option.isNone(registry.get(root))) return yield* new ThreadNotFound({ threadId: root })
        // While the tree is cancelling no sub-agent may start in it; one already starting is caught next round.
        const owner = !cancelling.has(root)
        cancelling.add(root)
        if (owner) joinedLate.set(root, [])
        return yield* cancelRounds(root).pipe(
          Effect.ensuring(
            Effect.sync(() => {
              if (!owner) return
              cancelling.delete(root)
              joinedLate.delete(root)
            })
          )
        )
      })
    )

  /**
   * Cancels the live subtree children first, again and again until none of it is left. Each round
   * keeps the entries it saw: a thread that ends on its own while an earlier one is being cancelled
   * (a parent whose child was just aborted) is still reported, with how it ended (§35). So is one that
   * registered after a round looked and was gone before the next one did: it joined `joinedLate`.
   */
  const cancelRounds = (root: ThreadId) =>
    Effect.gen(function* () {
      const report = { threads: [] as Array<CancelReport["threads"][number]>, withdrawn: [] as Array<string> }
      const reported = new Set<ThreadId>()
      while (true) {
        const entries = registry.entries()
        const byId = new Map(entries.map((entry) => [entry.thread.threadId, entry]))
        const live = firstSeenDescendants(root, childrenMap(entries.map((e) => e.thread.meta))).flatMap((id) => {
          const entry = byId.get(id)
          return entry === undefined || reported.has(id) ? [] : [entry.thread]
        })
        // Late joiners no longer registered (still registered ones are in `live` already).
        const gone = (joinedLate.get(root) ?? []).filter((t) => !reported.has(t.threadId) && !byId.has(t.threadId))
        if (live.length === 0 && gone.length === 0) return report satisfies CancelReport
        for (const thread of [...gone, ...live.reverse()]) {
          const id = thread.threadId
          reported.add(id)
          // Cancelling a delegate that already shut down only waits for (and returns) how it ended.
          const shutdown = yield* thread.delegate.cancel
          const entry = byId.get(id)
          if (entry !== undefined) yield* registry.drop(id, entry)
          report.threads.push({ threadId: id, outcome: shutdown.outcome })
          report.withdrawn.push(...shutdown.withdrawn)
        }
      }
    })

  const subtree = (threadId: string) =>
    Effect.gen(function* () {
      const root = yield* decodeThreadId(threadId)
      const live = registry.entries().map((entry) => entry.thread.meta)
      return firstSeenDescendants(root, childrenMap([...(yield* store.allMetas), ...live]))
    })

  return {
    spawnChild,
    cancel,
    subtree,
    cancelledAncestor: (ancestors) => ancestors.find((id) => cancelling.has(id))
  }
}

/**
 * Reads a child's events until its turn ends. A turn that reported an error, or one of whose own
 * sub-agents failed, ended `failed` even if it then completed (§35); events that end without a turn
 * end mean it was aborted (or failed, after an error).
 */
export const turnOutcome = (child: Thread) =>
  Effect.gen(function* () {
    let failed = false
    while (true) {
      const next = yield* Effect.option(child.delegate.take)
      if (Option.isNone(next)) {
        return { threadId: child.threadId, status: failed ? "failed" : "aborted" } satisfies ChildOutcome
      }
      const msg = next.value.msg
      if (msg.type === "error" || (msg.type === "sub_agent_ended" && msg.status === "failed")) failed = true
      if (msg.type === "turn_aborted") return { threadId: child.threadId, status: "aborted" } satisfies ChildOutcome
      if (msg.type === "turn_complete") {
        return {
          threadId: child.threadId,
          status: failed ? "failed" : "completed",
          ...(msg.lastAgentMessage === undefined ? {} : { lastAgentMessage: msg.lastAgentMessage })
        } satisfies ChildOutcome
      }
    }
  })

/** Parent id → child ids, from threads' metadata, in the order seen. */
export const childrenMap = (metas: ReadonlyArray<RolloutMeta>) => {
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
export const firstSeenDescendants = (root: ThreadId, children: ReadonlyMap<ThreadId, ReadonlyArray<ThreadId>>) => {
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
