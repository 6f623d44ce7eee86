/**
 * The registry of live threads (§10–§13, §16): each live thread's entry (the thread, its scope, whether
 * it is internal) and the ids reserved by starts still in flight, so a duplicate id fails at once
 * (§11). Entries stay until removed: one whose agent has ended is stale, and a resume replaces it
 * (§12). One registry belongs to one manager and lives as long as it; its maps are touched only
 * between yields.
 */
import type { ThreadId } from "@deputy/protocol"
import { Data, type Duration, Effect, Exit, Fiber, Option, Scope } from "effect"
import type { ShutdownReport, Thread } from "../ThreadManager.js"

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

/** One live thread as the registry keeps it. */
export interface Entry {
  readonly thread: Thread
  /** Made by deputy itself: hidden from `list` and `get` (§16). */
  readonly internal: boolean
  /** Holds the thread's agent, delegate and rollout writer; closing it shuts the thread down. */
  readonly scope: Scope.CloseableScope
  /** Writes the thread's buffered rollout lines now. */
  readonly flush: Effect.Effect<void>
}

/** The live threads of one manager. */
export interface LiveThreads {
  /** Reserves an id for a start in flight; DuplicateThreadId when a live thread or another start has it (§11). */
  readonly reserve: (threadId: ThreadId) => Effect.Effect<void, DuplicateThreadId>
  /** Gives a reservation back (the start registered its thread, or failed). */
  readonly unreserve: (threadId: ThreadId) => Effect.Effect<void>
  /** Registers a started thread. */
  readonly add: (entry: Entry) => Effect.Effect<void>
  /** The entry of a live thread, internal ones included. */
  readonly get: (threadId: ThreadId) => Option.Option<Entry>
  /** Every entry, in registration order. */
  readonly entries: () => ReadonlyArray<Entry>
  /** Takes a thread out (only if it is still `expected`, when given) and closes its scope: waits for its shutdown. */
  readonly drop: (threadId: ThreadId, expected?: Entry) => Effect.Effect<Option.Option<Entry>>
  /** Shuts every thread down at once, each within `timeout`, and reports; only completed ones leave (§13). */
  readonly shutdownAll: (timeout: Duration.DurationInput) => Effect.Effect<ShutdownReport>
  /** How many entries and reservations exist now. */
  readonly size: () => { readonly live: number; readonly reserved: number }
}

/** An empty registry. */
export const make = (): LiveThreads => {
  const threads = new Map<ThreadId, Entry>()
  const reserved = new Set<ThreadId>()

  const drop = (threadId: ThreadId, expected?: Entry) =>
    Effect.suspend(() => {
      const entry = threads.get(threadId)
      if (entry === undefined || (expected !== undefined && entry !== expected)) return Effect.succeed(Option.none())
      threads.delete(threadId)
      return Effect.as(Scope.close(entry.scope, Exit.void), Option.some(entry))
    })

  const shutdownAll = (timeout: Duration.DurationInput) =>
    Effect.gen(function* () {
      // §8 for each thread (Interrupt, Shutdown, drain), all at once. A shutdown that outlasts `timeout`
      // goes on in the background: it is bounded by the thread's drain bound, and closing is never cut short.
      const outcomes = yield* Effect.forEach(
        [...threads.values()],
        (entry) =>
          Effect.forkDaemon(entry.thread.delegate.cancel).pipe(
            Effect.flatMap((ending) =>
              Fiber.join(ending).pipe(
                Effect.timeoutTo({
                  duration: timeout,
                  onSuccess: ({ outcome }) =>
                    outcome === "submit_failed"
                      ? ("submitFailed" as const)
                      : outcome === "drain_timeout"
                        ? ("timedOut" as const)
                        : ("completed" as const),
                  onTimeout: () => "timedOut" as const
                })
              )
            ),
            Effect.map((outcome) => [entry, outcome] as const)
          ),
        { concurrency: "unbounded" }
      )
      const sorted = (kind: string) =>
        outcomes
          .filter(([, o]) => o === kind)
          .map(([entry]) => entry.thread.threadId)
          .sort()
      const report: ShutdownReport = {
        completed: sorted("completed"),
        submitFailed: sorted("submitFailed"),
        timedOut: sorted("timedOut")
      }
      // §13: completed threads leave the registry; the others stay for a retry or a look.
      yield* Effect.forEach(
        outcomes.filter(([, o]) => o === "completed"),
        ([entry]) => drop(entry.thread.threadId, entry),
        { discard: true }
      )
      return report
    })

  return {
    reserve: (threadId) =>
      Effect.suspend(() => {
        if (threads.has(threadId) || reserved.has(threadId)) return Effect.fail(new DuplicateThreadId({ threadId }))
        reserved.add(threadId)
        return Effect.void
      }),
    unreserve: (threadId) => Effect.sync(() => void reserved.delete(threadId)),
    add: (entry) => Effect.sync(() => void threads.set(entry.thread.threadId, entry)),
    get: (threadId) => Option.fromNullable(threads.get(threadId)),
    entries: () => [...threads.values()],
    drop,
    shutdownAll,
    size: () => ({ live: threads.size, reserved: reserved.size })
  }
}
