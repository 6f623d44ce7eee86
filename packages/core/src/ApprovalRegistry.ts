/**
 * The root approval registry: every request of a whole tree of sub-agents, pending in one place
 * until someone answers it by id. It wraps the root's Parent: a request is first put to that Parent
 * (a policy, callbacks); if it gives no answer, the request stays pending for a program or a person
 * to answer through the registry, in any order. Lives as long as its layer.
 */
import type { ReviewDecision, ThreadId, UserInputResponse } from "@deputy/protocol"
import { Clock, Context, Data, Deferred, Effect, Layer, type Stream } from "effect"
import { Parent, type ParentError, ParentFailed, type ParentRequest, type ParentService } from "./Parent.js"
import * as StatusCell from "./StatusCell.js"

/** A request waiting for an answer. */
export interface PendingRequest {
  readonly requestId: string
  readonly kind: ParentRequest["kind"]
  /** Thread ids from the root down to the asking thread. */
  readonly path: ReadonlyArray<ThreadId>
  readonly agentName?: string
  /** What is asked, whole. */
  readonly request: ParentRequest
  /** When it was asked (epoch millis, on the Effect clock). */
  readonly since: number
}

/** The answer named a request that is not pending: already answered, withdrawn, or never asked. */
export class RequestNotPending extends Data.TaggedError("RequestNotPending")<{ readonly requestId: string }> {
  override get message() {
    return `request ${this.requestId} is not pending (answered, withdrawn, or never asked)`
  }
}

/** The answer does not fit the request: a decision for a question, or answers for an approval. */
export class AnswerMismatch extends Data.TaggedError("AnswerMismatch")<{
  readonly requestId: string
  readonly kind: ParentRequest["kind"]
}> {
  override get message() {
    return `request ${this.requestId} is a ${this.kind} request: ${this.kind === "user_input" ? "it needs answers" : "it needs a decision"}`
  }
}

/** The registry's service. */
export interface ApprovalRegistryService {
  /** Every pending request, oldest first. */
  readonly pending: Effect.Effect<ReadonlyArray<PendingRequest>>
  /** The pending list now and after every change. */
  readonly changes: Stream.Stream<ReadonlyArray<PendingRequest>>
  /** Answers an exec or patch request. */
  readonly decide: (
    requestId: string,
    decision: ReviewDecision
  ) => Effect.Effect<void, RequestNotPending | AnswerMismatch>
  /** Answers a user-input request. */
  readonly respond: (
    requestId: string,
    response: UserInputResponse
  ) => Effect.Effect<void, RequestNotPending | AnswerMismatch>
}

type Answer =
  | { readonly type: "decision"; readonly decision: ReviewDecision }
  | {
      readonly type: "response"
      readonly response: UserInputResponse
    }

interface Slot {
  readonly entry: PendingRequest
  readonly answer: Deferred.Deferred<Answer>
}

/** Every pending request of the tree, answerable by id. */
export class ApprovalRegistry extends Context.Tag("@deputy/core/ApprovalRegistry")<
  ApprovalRegistry,
  ApprovalRegistryService
>() {
  /** Wraps the Parent below it (asked first) and provides the registry and the registry-backed Parent. */
  static readonly layer: Layer.Layer<ApprovalRegistry | Parent, never, Parent> = Layer.effectContext(
    Effect.gen(function* () {
      const { registry, parent } = yield* make(yield* Parent)
      return Context.make(ApprovalRegistry, registry).pipe(Context.add(Parent, parent))
    })
  )
}

const make = (inner: ParentService) =>
  Effect.gen(function* () {
    const slots = new Map<string, Slot>()
    const list = yield* StatusCell.make<ReadonlyArray<PendingRequest>>([])
    // Suspended: the list is read when it runs, not when this line is.
    const publish = Effect.suspend(() => list.set([...slots.values()].map((slot) => slot.entry)))

    const remove = (requestId: string) => Effect.suspend(() => (slots.delete(requestId) ? publish : Effect.void))

    /**
     * Parks the request; the inner parent's answer or the registry's, whichever comes first, wins. A second
     * request under an id already pending is refused (§30): an answer by that id would be ambiguous.
     */
    const ask = <A>(request: ParentRequest, innerAsk: Effect.Effect<A, ParentError>, fromRegistry: (a: Answer) => A) =>
      Effect.suspend(() =>
        slots.has(request.requestId)
          ? Effect.fail(
              new ParentFailed({
                requestId: request.requestId,
                reason: "a request with the same id is already pending (one request, one answer)"
              })
            )
          : park(request, innerAsk, fromRegistry)
      )

    const park = <A>(request: ParentRequest, innerAsk: Effect.Effect<A, ParentError>, fromRegistry: (a: Answer) => A) =>
      Effect.gen(function* () {
        const answer = yield* Deferred.make<Answer>()
        const entry: PendingRequest = {
          requestId: request.requestId,
          kind: request.kind,
          path: request.path,
          ...(request.agentName === undefined ? {} : { agentName: request.agentName }),
          request,
          since: yield* Clock.currentTimeMillis
        }
        slots.set(request.requestId, { entry, answer })
        yield* publish
        // An inner parent that gives no answer leaves the request to whoever answers through the registry.
        const innerAnswer = Effect.catchAll(innerAsk, () => Effect.never)
        return yield* Effect.raceFirst(innerAnswer, Effect.map(Deferred.await(answer), fromRegistry))
      }).pipe(Effect.ensuring(remove(request.requestId)))

    const answer = (requestId: string, given: Answer): Effect.Effect<void, RequestNotPending | AnswerMismatch> =>
      Effect.suspend((): Effect.Effect<void, RequestNotPending | AnswerMismatch> => {
        const slot = slots.get(requestId)
        if (slot === undefined) return Effect.fail(new RequestNotPending({ requestId }))
        const wantsResponse = slot.entry.kind === "user_input"
        if (wantsResponse !== (given.type === "response")) {
          return Effect.fail(new AnswerMismatch({ requestId, kind: slot.entry.kind }))
        }
        slots.delete(requestId) // a second answer to the same id is stale at once
        return Effect.zipRight(Deferred.succeed(slot.answer, given), publish)
      })

    const decision = (a: Answer): ReviewDecision => (a.type === "decision" ? a.decision : "denied")
    const response = (a: Answer): UserInputResponse => (a.type === "response" ? a.response : { answers: {} })

    const parent: ParentService = {
      requestExecApproval: (request) => ask(request, inner.requestExecApproval(request), decision),
      requestPatchApproval: (request) => ask(request, inner.requestPatchApproval(request), decision),
      requestUserInput: (request) => ask(request, inner.requestUserInput(request), response),
      withdraw: (requestId) => Effect.zipRight(remove(requestId), inner.withdraw(requestId))
    }
    const registry: ApprovalRegistryService = {
      pending: list.get,
      changes: list.changes,
      decide: (requestId, d) => answer(requestId, { type: "decision", decision: d }),
      respond: (requestId, r) => answer(requestId, { type: "response", response: r })
    }
    return { registry, parent }
  })
