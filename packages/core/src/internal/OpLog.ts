/**
 * The manager's op log: the ops submitted to its live threads, in submission order, for tests and
 * audit (the rollout is the durable record). It is bounded twice: a thread's ops leave with the
 * thread, and past `limit` entries the oldest go first. Appending is O(1), never a copy of the log.
 * One log belongs to one manager and lives as long as it; only that manager's fibers touch it, between
 * yields, so plain mutable maps are safe.
 */
import type { Submission, ThreadId } from "@deputy/protocol"

/** One op as the manager submitted it. */
export interface OpLogEntry {
  readonly threadId: ThreadId
  readonly submission: Submission
}

/** The log of one manager. */
export interface OpLog {
  /** Records one op of a live thread; drops the oldest entry when the log is full. */
  readonly append: (threadId: ThreadId, submission: Submission) => void
  /** Drops every op of a thread that left. */
  readonly forget: (threadId: ThreadId) => void
  /** The entries now, oldest first (a copy). */
  readonly entries: () => ReadonlyArray<OpLogEntry>
  /** How many entries and threads the log holds now. */
  readonly size: () => { readonly entries: number; readonly threads: number }
}

/** How many entries a manager's op log keeps by default. */
export const DEFAULT_OP_LOG_LIMIT = 10_000

/** An empty log keeping at most `limit` entries. */
export const make = (limit: number = DEFAULT_OP_LOG_LIMIT): OpLog => {
  // Sequence number → entry; a Map iterates in insertion order, so the first key is the oldest.
  const entries = new Map<number, OpLogEntry>()
  const byThread = new Map<ThreadId, Set<number>>()
  let next = 0
  const remove = (seq: number) => {
    const entry = entries.get(seq)
    if (entry === undefined) return
    entries.delete(seq)
    const own = byThread.get(entry.threadId)
    own?.delete(seq)
    if (own?.size === 0) byThread.delete(entry.threadId)
  }
  return {
    append: (threadId, submission) => {
      if (limit <= 0) return
      const seq = next++
      entries.set(seq, { threadId, submission })
      const own = byThread.get(threadId) ?? new Set<number>()
      own.add(seq)
      byThread.set(threadId, own)
      if (entries.size > limit) remove(entries.keys().next().value as number)
    },
    forget: (threadId) => {
      for (const seq of byThread.get(threadId) ?? []) entries.delete(seq)
      byThread.delete(threadId)
    },
    entries: () => [...entries.values()],
    size: () => ({ entries: entries.size, threads: byThread.size })
  }
}
