/**
 * Caps on live threads and their slot pools (one pool per parent, per tree and per backend that has a
 * cap). A start takes a slot of every pool that caps it, in order, and holds them for its thread's
 * life (the scope it takes them in); starts beyond a cap wait in arrival order. A pool exists only
 * while someone holds or waits for one of its slots, and a tree's record of who holds its slots only
 * while one is held, so a long-lived manager keeps nothing of trees that ended. One Caps belongs to
 * one manager; its maps are touched only between yields.
 */
import type { ThreadId } from "@deputy/protocol"
import { Data, Effect, type Scope } from "effect"
import type { ThreadLimits } from "../ThreadManager.js"
import { makeSlotPool, type SlotPool } from "./slots.js"

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

/** Who asks for slots: the thread, its backend, and for a sub-agent its parent and its tree's root. */
export interface SlotRequest {
  readonly threadId: ThreadId
  readonly backend: string
  readonly parentThreadId?: ThreadId
  readonly treeRoot?: ThreadId
}

/** The caps of one manager. */
export interface Caps {
  /**
   * Takes, in order, a slot of every pool that caps this start (tree, parent, backend), each held until
   * the caller's scope closes. Waits while a pool is full; fails at once with CapDeadlock when only
   * parents waiting for their children hold a tree's slots, or SpawnQueueFull past the queue limit.
   * Interrupting the wait gives up the place in line.
   */
  readonly take: (request: SlotRequest) => Effect.Effect<void, CapDeadlock | SpawnQueueFull, Scope.Scope>
  /** Counts `parent` as waiting for a child of its own until the caller's scope closes. */
  readonly waitForChild: (parent: ThreadId) => Effect.Effect<void, never, Scope.Scope>
  /** How many starts wait for a slot now. */
  readonly queued: () => number
  /** How many pools, tree holder sets and waiting parents exist now (all zero once every thread ended). */
  readonly size: () => { readonly pools: number; readonly trees: number; readonly waitingParents: number }
}

/** Caps for `limits`; no limit means no pool. */
export const make = (limits: ThreadLimits): Caps => {
  const pools = new Map<string, { readonly pool: SlotPool; users: number }>()
  // Which threads hold a slot of each tree pool, and which threads wait for their own children: a
  // tree whose every slot is held by a waiting parent can never give a slot back.
  const treeHolders = new Map<string, Set<ThreadId>>()
  const waitingOnChildren = new Map<ThreadId, number>()
  const isWaiting = (threadId: ThreadId) => (waitingOnChildren.get(threadId) ?? 0) > 0
  let waitingForSlots = 0

  /** The pool for `key`, counted as used by the caller until its scope closes; the last user removes it. */
  const usePool = (key: string, limit: number) =>
    Effect.acquireRelease(
      Effect.sync(() => {
        const found = pools.get(key) ?? { pool: makeSlotPool(limit), users: 0 }
        found.users++
        pools.set(key, found)
        return found.pool
      }),
      () =>
        Effect.sync(() => {
          const found = pools.get(key)
          if (found !== undefined && --found.users === 0) pools.delete(key)
        })
    )

  const holdTreeSlot = (key: string, threadId: ThreadId) =>
    Effect.acquireRelease(
      Effect.sync(() => {
        const holders = treeHolders.get(key) ?? new Set<ThreadId>()
        holders.add(threadId)
        treeHolders.set(key, holders)
      }),
      () =>
        Effect.sync(() => {
          const holders = treeHolders.get(key)
          holders?.delete(threadId)
          if (holders?.size === 0) treeHolders.delete(key)
        })
    )

  const take = (request: SlotRequest) =>
    Effect.gen(function* () {
      const caps: Array<[string, number | undefined]> = [
        [`backend:${request.backend}`, limits.perBackend?.[request.backend]]
      ]
      if (request.parentThreadId !== undefined) {
        const root = request.treeRoot ?? request.parentThreadId
        caps.unshift([`tree:${root}`, limits.perTree], [`parent:${request.parentThreadId}`, limits.perParent])
      }
      for (const [key, limit] of caps) {
        if (limit === undefined) continue
        const pool = yield* usePool(key, limit)
        const isTree = key.startsWith("tree:")
        if (!pool.isFree()) {
          const holders = isTree ? [...(treeHolders.get(key) ?? [])] : []
          if (holders.length > 0 && holders.every(isWaiting)) {
            return yield* new CapDeadlock({ threadId: request.threadId, pool: key, holders })
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
        if (isTree) yield* holdTreeSlot(key, request.threadId)
      }
    })

  const waitForChild = (parent: ThreadId) =>
    Effect.acquireRelease(
      Effect.sync(() => waitingOnChildren.set(parent, (waitingOnChildren.get(parent) ?? 0) + 1)),
      () =>
        Effect.sync(() => {
          const left = (waitingOnChildren.get(parent) ?? 1) - 1
          if (left === 0) waitingOnChildren.delete(parent)
          else waitingOnChildren.set(parent, left)
        })
    ).pipe(Effect.asVoid)

  return {
    take,
    waitForChild,
    queued: () => waitingForSlots,
    size: () => ({ pools: pools.size, trees: treeHolders.size, waitingParents: waitingOnChildren.size })
  }
}
