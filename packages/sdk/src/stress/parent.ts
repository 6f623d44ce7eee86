/**
 * The run's parent: how it treats each request (a move drawn from the seed and the request id alone),
 * the plain callbacks it answers with (behind the root ApprovalRegistry, as a program would give them),
 * the person at the registry who answers what the callbacks left pending, and a record of each request
 * as the parent saw it. One parent per run: its records live as long as the run, for the checks.
 */
import { ApprovalRegistry, Parent, type ParentRequest, type PendingRequest } from "@deputy/core"
import { Effect, Layer, Option, type Scope, Stream } from "effect"
import { type Plan, sleep } from "./plan.js"
import { hash, rng } from "./prng.js"

/** How the parent treats one request: drawn from the seed and the request id alone. */
type ParentMove =
  | {
      readonly type: "decide"
      readonly delayMs: number
      readonly decision: "approved" | "approved_for_session" | "denied" | "abort"
    }
  | { readonly type: "throw"; readonly delayMs: number; readonly registryMs: number }
  | { readonly type: "no_answer"; readonly registryMs: number }
  | { readonly type: "never" }

const parentMove = (seed: number, requestId: string, isTopLevel: boolean, mayHang: boolean): ParentMove => {
  const r = rng(hash(seed, `request:${requestId}`))
  const roll = r.next()
  const delayMs = r.int(0, 8)
  if (mayHang && roll < 0.15) return { type: "never" }
  if (roll < 0.25) return { type: "throw", delayMs, registryMs: r.int(0, 8) }
  if (roll < 0.35) return { type: "no_answer", registryMs: r.int(0, 8) }
  // `abort` ends the asking turn `aborted`: only top-level turns get it, so a nested child that was
  // meant to fail is reported failed, never aborted, unless its tree was cancelled.
  const decision = r.pick(
    isTopLevel
      ? (["approved", "approved", "approved", "approved_for_session", "denied", "denied", "abort"] as const)
      : (["approved", "approved", "approved", "approved_for_session", "denied", "denied"] as const)
  )
  return { type: "decide", delayMs, decision }
}

/** One request as the parent saw it. */
export interface ParentRecord {
  readonly request: ParentRequest
  readonly askedAt: number
  /** What the parent's callback gave (undefined: nothing yet, or nothing at all). */
  answered?: { readonly at: number; readonly approving: boolean }
  withdrawnAt?: number
}

/** The run's parent, as `makeParent` gives it. */
export interface StressParent {
  /** Every request that reached the parent (its callback or the registry), by request id. */
  readonly records: ReadonlyMap<string, ParentRecord>
  /** Calls `f` each time a request of top-level thread `threadId` reaches the parent, until `forget`. */
  readonly onRequest: (threadId: string, f: () => void) => void
  /** Stops calling what `onRequest` gave for `threadId`. */
  readonly forget: (threadId: string) => void
  /** The root ApprovalRegistry (and the Parent it is to the threads), answered by the parent's callbacks. */
  readonly registryLayer: Layer.Layer<ApprovalRegistry | Parent>
  /** Forks, in the caller's scope, the person answering at the registry what the callbacks left pending. */
  readonly answerAtRegistry: Effect.Effect<void, never, ApprovalRegistry | Scope.Scope>
}

/** The parent of a run with `seed`, whose top-level agents play `plans` (by thread id). */
export const makeParent = (seed: number, plans: ReadonlyMap<string, Plan>): StressParent => {
  const records = new Map<string, ParentRecord>()
  /** Top-level threads whose requests make the harness cancel them (moment `approval_pending`). */
  const onRequest = new Map<string, () => void>()

  const move = (request: ParentRequest) => {
    const top = request.path[0] as string
    const agentPlan = plans.get(top)
    // Only a top-level thread cancelled once it asks may be left hanging; a nested one would hold its tree.
    const mayHang =
      request.path.length === 1 &&
      agentPlan !== undefined &&
      Option.exists(agentPlan.cancel, (c) => c.moment === "approval_pending")
    return parentMove(seed, request.requestId, request.path.length === 1, mayHang)
  }

  // Made by whichever comes first: the callback, or the person answering at the registry (the registry
  // lists a request before its callback runs).
  const recordOf = (request: ParentRequest): ParentRecord => {
    const known = records.get(request.requestId)
    if (known !== undefined) return known
    const record: ParentRecord = { request, askedAt: performance.now() }
    records.set(request.requestId, record)
    return record
  }

  const answerFor = (request: ParentRequest, approving: boolean): unknown =>
    request.kind === "user_input"
      ? { answers: approving ? { q: { answers: ["a"] } } : {} }
      : approving
        ? "approved"
        : "denied"

  // The parent: plain callbacks (as a program would give), behind the root ApprovalRegistry.
  const callback = async (request: ParentRequest, signal: AbortSignal): Promise<unknown> => {
    const record = recordOf(request)
    onRequest.get(request.threadId)?.()
    const m = move(request)
    if (m.type === "never") return new Promise(() => {}) // answered by nobody: only the cancel ends it
    if (m.type === "no_answer") return undefined // left pending in the registry
    await new Promise((resolve) => setTimeout(resolve, m.delayMs))
    if (signal.aborted) return undefined
    if (m.type === "throw") throw new Error(`parent of ${request.requestId} fails on purpose`)
    const value =
      request.kind === "user_input" ? answerFor(request, m.decision !== "denied" && m.decision !== "abort") : m.decision
    record.answered = {
      at: performance.now(),
      approving:
        request.kind === "user_input"
          ? m.decision !== "denied" && m.decision !== "abort"
          : m.decision.startsWith("approved")
    }
    return value
  }

  const registryLayer = ApprovalRegistry.layer.pipe(
    Layer.provide(
      Parent.layerCallbacks({
        execApproval: callback,
        patchApproval: callback,
        userInput: callback,
        withdrawn: (requestId) => {
          const record = records.get(requestId)
          if (record !== undefined && record.withdrawnAt === undefined) record.withdrawnAt = performance.now()
        }
      })
    )
  )

  // A person at the registry answers what the callbacks left pending (thrown, or no answer), unless
  // the request's move says nobody ever will.
  const answerAtRegistry = Effect.gen(function* () {
    const registry = yield* ApprovalRegistry
    const handled = new Set<string>()
    const answerLater = (p: PendingRequest) => {
      handled.add(p.requestId)
      const m = move(p.request)
      if (m.type !== "throw" && m.type !== "no_answer") return Effect.void
      const approving = (m.registryMs & 1) === 0
      const answer =
        p.kind === "user_input"
          ? registry.respond(p.requestId, { answers: approving ? { q: { answers: ["b"] } } : {} })
          : registry.decide(p.requestId, approving ? "approved" : "denied")
      const note = Effect.sync(() => {
        const record = recordOf(p.request)
        if (record.withdrawnAt === undefined) record.answered = { at: performance.now(), approving }
      })
      return Effect.forkScoped(sleep(m.registryMs).pipe(Effect.zipRight(note), Effect.zipRight(Effect.ignore(answer))))
    }
    yield* Effect.forkScoped(
      Stream.runForEach(registry.changes, (pending) =>
        Effect.forEach(
          pending.filter((p) => !handled.has(p.requestId)),
          answerLater,
          { discard: true }
        )
      )
    )
  })

  return {
    records,
    onRequest: (threadId, f) => {
      onRequest.set(threadId, f)
    },
    forget: (threadId) => {
      onRequest.delete(threadId)
    },
    registryLayer,
    answerAtRegistry
  }
}
