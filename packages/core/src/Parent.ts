/**
 * The Parent: whoever answers a sub-agent's approval requests and questions — a policy, a program's
 * callbacks, a person, or the parent's own parent. The delegate asks it while the agent waits, and
 * withdraws a request when the wait is cancelled. Implementations here live as long as their layer.
 */
import { type FileChanges, type Question, ReviewDecision, type ThreadId, UserInputResponse } from "@deputy/protocol"
import { Context, Data, Duration, Effect, Layer, Ref } from "effect"
import type { InvalidInput } from "./errors.js"
import { decode } from "./internal/decode.js"
import {
  type Policy,
  policyExecDecision,
  policyPatchDecision,
  policyUserInputAnswers,
  type RuleDecision
} from "./Policy.js"

/** What every request to a parent carries: who asks, from where in the tree, in which turn. */
interface RequestBase {
  /** Unique among pending requests: `<threadId>:<the agent's id for it>`. */
  readonly requestId: string
  /** The thread that asks. */
  readonly threadId: ThreadId
  /** The turn the agent is in. */
  readonly turnId: string
  /** Thread ids from the root down to the asking thread (the asking thread last). */
  readonly path: ReadonlyArray<ThreadId>
  /** The asking agent's name, when it has one. */
  readonly agentName?: string
}

/** A request to run a command. */
export interface ExecApprovalRequest extends RequestBase {
  readonly kind: "exec"
  readonly command: ReadonlyArray<string>
  readonly cwd: string
  readonly reason?: string
}

/** A request to change files. Every path it touches was already confined to the agent's workspace (§28). */
export interface PatchApprovalRequest extends RequestBase {
  readonly kind: "patch"
  readonly changes: FileChanges
  /** The agent's working directory. */
  readonly cwd: string
  /**
   * Every path the patch touches, `movePath` destinations included, resolved with symlinks followed:
   * relative to the real cwd, or absolute inside a root the caller added. Sorted, unique. Policy globs
   * and session approvals see these, never the paths as the agent wrote them.
   */
  readonly paths: ReadonlyArray<string>
  readonly reason?: string
  readonly grantRoot?: string
}

/** A request to answer questions. */
export interface UserInputRequest extends RequestBase {
  readonly kind: "user_input"
  readonly questions: ReadonlyArray<Question>
}

/** Any request a parent can be asked. */
export type ParentRequest = ExecApprovalRequest | PatchApprovalRequest | UserInputRequest

/** The parent gave no answer (nobody was asked, or the deadline passed). The delegate treats it as `denied`. */
export class NoAnswer extends Data.TaggedError("NoAnswer")<{ readonly requestId: string; readonly reason: string }> {
  override get message() {
    return `no answer to ${this.requestId}: ${this.reason}`
  }
}

/** The parent failed while answering. The delegate treats it as `denied`. */
export class ParentFailed extends Data.TaggedError("ParentFailed")<{
  readonly requestId: string
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message() {
    return `parent failed to answer ${this.requestId}: ${this.reason}`
  }
}

/** Why a parent gave no decision. */
export type ParentError = NoAnswer | ParentFailed

/** The parent's service. Each request waits for the answer; interrupting the wait does not withdraw it — call `withdraw`. */
export interface ParentService {
  /** Waits for a decision on a command. */
  readonly requestExecApproval: (request: ExecApprovalRequest) => Effect.Effect<ReviewDecision, ParentError>
  /** Waits for a decision on a patch. */
  readonly requestPatchApproval: (request: PatchApprovalRequest) => Effect.Effect<ReviewDecision, ParentError>
  /** Waits for answers to questions. */
  readonly requestUserInput: (request: UserInputRequest) => Effect.Effect<UserInputResponse, ParentError>
  /** Tells the parent a request is no longer waiting (so a prompt it shows can close). Never fails. */
  readonly withdraw: (requestId: string) => Effect.Effect<void>
}

/** Plain functions that answer requests, for programs. `undefined` (or a missing function) means no answer. */
export interface ParentCallbacks {
  /** Decides on a command; `signal` aborts when the request is withdrawn. */
  readonly execApproval?: (request: ExecApprovalRequest, signal: AbortSignal) => Promise<unknown> | unknown
  /** Decides on a patch; `signal` aborts when the request is withdrawn. */
  readonly patchApproval?: (request: PatchApprovalRequest, signal: AbortSignal) => Promise<unknown> | unknown
  /** Answers questions; `signal` aborts when the request is withdrawn. */
  readonly userInput?: (request: UserInputRequest, signal: AbortSignal) => Promise<unknown> | unknown
  /** Told when a request is withdrawn. */
  readonly withdrawn?: (requestId: string) => void
}

/** One line of a recording parent's log: a request and what became of it. */
export interface ParentLogEntry {
  readonly request: ParentRequest
  readonly outcome:
    | { readonly type: "pending" }
    | { readonly type: "decided"; readonly decision: ReviewDecision }
    | { readonly type: "answered"; readonly response: UserInputResponse }
    | { readonly type: "failed"; readonly error: ParentError }
    | { readonly type: "withdrawn" }
}

/** The log a recording parent keeps, in the order requests were made. */
export class ParentLog extends Context.Tag("@deputy/core/ParentLog")<
  ParentLog,
  { readonly entries: Effect.Effect<ReadonlyArray<ParentLogEntry>> }
>() {}

/** Answers approval requests and questions for sub-agents. */
export class Parent extends Context.Tag("@deputy/core/Parent")<Parent, ParentService>() {
  /** A parent that answers by rules (fail closed: no matching rule gives the policy's default, `denied` unless set). */
  static readonly layerPolicy = (policy: Policy): Layer.Layer<Parent> =>
    Layer.effect(
      Parent,
      Effect.map(sessionApprovals, (remember) => remember(makePolicy(policy)))
    )

  /** A parent that calls plain async functions; a function that throws or returns garbage gives `denied`. */
  static readonly layerCallbacks = (callbacks: ParentCallbacks): Layer.Layer<Parent> =>
    Layer.effect(
      Parent,
      Effect.map(sessionApprovals, (remember) => remember(makeCallbacks(callbacks)))
    )

  /** Wraps the Parent below it: a request unanswered after `deadline` is withdrawn and gets no answer (so `denied`). */
  static readonly layerDeadline = (deadline: Duration.DurationInput): Layer.Layer<Parent, never, Parent> =>
    Layer.effect(
      Parent,
      Effect.map(Parent, (inner) => withDeadline(inner, deadline))
    )

  /** Wraps the Parent below it, logging every request and its outcome into ParentLog (tests, audit). */
  static readonly layerRecording: Layer.Layer<Parent | ParentLog, never, Parent> = Layer.effectContext(
    Effect.gen(function* () {
      const { parent, log } = yield* recording(yield* Parent)
      return Context.make(Parent, parent).pipe(Context.add(ParentLog, log))
    })
  )
}

const noAnswerFromPolicy = (requestId: string, reason: string) => Effect.fail(new NoAnswer({ requestId, reason }))

/** `ask` leaves the request to someone else: alone, that is no answer (so denied, §5). */
const ruled = (requestId: string, decision: RuleDecision): Effect.Effect<ReviewDecision, NoAnswer> =>
  decision === "ask" ? noAnswerFromPolicy(requestId, "the policy asks a person") : Effect.succeed(decision)

const makePolicy = (policy: Policy): ParentService => ({
  requestExecApproval: (request) =>
    Effect.flatMap(policyExecDecision(policy, request.command), (decision) => ruled(request.requestId, decision)),
  requestPatchApproval: (request) => ruled(request.requestId, policyPatchDecision(policy, request.paths)),
  requestUserInput: (request) => {
    const response = policyUserInputAnswers(policy, request.questions)
    return response ? Effect.succeed(response) : noAnswerFromPolicy(request.requestId, "no answer in the policy")
  },
  withdraw: () => Effect.void
})

const decodeDecision = decode(ReviewDecision, "parent callback decision")
const decodeResponse = decode(UserInputResponse, "parent callback answers")

const makeCallbacks = (callbacks: ParentCallbacks): ParentService => {
  const call =
    <Req extends ParentRequest, A>(
      fn: ((request: Req, signal: AbortSignal) => unknown) | undefined,
      validate: (input: unknown) => Effect.Effect<A, InvalidInput>
    ) =>
    (request: Req): Effect.Effect<A, ParentError> =>
      Effect.gen(function* () {
        const { requestId } = request
        if (fn === undefined) return yield* new NoAnswer({ requestId, reason: `no ${request.kind} callback` })
        const answer = yield* Effect.tryPromise({
          try: async (signal) => fn(request, signal),
          catch: (cause) => new ParentFailed({ requestId, reason: "callback threw", cause })
        })
        if (answer === undefined) return yield* new NoAnswer({ requestId, reason: "callback returned nothing" })
        return yield* Effect.mapError(
          validate(answer),
          (invalid) => new ParentFailed({ requestId, reason: invalid.message, cause: invalid })
        )
      })
  return {
    requestExecApproval: call(callbacks.execApproval, decodeDecision),
    requestPatchApproval: call(callbacks.patchApproval, decodeDecision),
    requestUserInput: call(callbacks.userInput, decodeResponse),
    withdraw: (requestId) => Effect.sync(() => callbacks.withdrawn?.(requestId))
  }
}

/**
 * `approved_for_session` is remembered per thread (§28): the exact same command, or a patch touching the
 * exact same set of resolved paths (destinations included), asked again by that thread is approved
 * without asking. Anything else — a subset, a superset, one more `movePath` — is asked again.
 */
const sessionApprovals = Effect.sync(() => (inner: ParentService): ParentService => {
  const remembered = new Set<string>()
  const rememberIfSession = (key: string) => (decision: ReviewDecision) =>
    Effect.sync(() => {
      if (decision === "approved_for_session") remembered.add(key)
      return decision
    })
  const ask =
    <Req extends ExecApprovalRequest | PatchApprovalRequest>(
      key: (request: Req) => string,
      asking: (request: Req) => Effect.Effect<ReviewDecision, ParentError>
    ) =>
    (request: Req) => {
      const k = `${request.threadId}\u0000${key(request)}`
      return remembered.has(k)
        ? Effect.succeed<ReviewDecision>("approved_for_session")
        : Effect.flatMap(asking(request), rememberIfSession(k))
    }
  return {
    ...inner,
    requestExecApproval: ask((r) => `exec\u0000${r.command.join("\u0000")}`, inner.requestExecApproval),
    requestPatchApproval: ask((r) => `patch\u0000${r.paths.join("\u0000")}`, inner.requestPatchApproval)
  }
})

const withDeadline = (inner: ParentService, deadline: Duration.DurationInput): ParentService => {
  const bounded =
    <Req extends ParentRequest, A>(asking: (request: Req) => Effect.Effect<A, ParentError>) =>
    (request: Req) =>
      asking(request).pipe(
        Effect.timeoutFail({
          duration: deadline,
          onTimeout: () =>
            new NoAnswer({ requestId: request.requestId, reason: `no answer within ${Duration.format(deadline)}` })
        }),
        Effect.tapErrorTag("NoAnswer", () => inner.withdraw(request.requestId))
      )
  return {
    requestExecApproval: bounded(inner.requestExecApproval),
    requestPatchApproval: bounded(inner.requestPatchApproval),
    requestUserInput: bounded(inner.requestUserInput),
    withdraw: inner.withdraw
  }
}

const recording = (inner: ParentService) =>
  Effect.gen(function* () {
    const entries = yield* Ref.make<ReadonlyArray<ParentLogEntry>>([])
    const settle = (request: ParentRequest, outcome: ParentLogEntry["outcome"]) =>
      Ref.update(entries, (all) =>
        all.map((entry) =>
          entry.request === request && entry.outcome.type === "pending" ? { request, outcome } : entry
        )
      )
    const logged =
      <Req extends ParentRequest, A>(
        asking: (request: Req) => Effect.Effect<A, ParentError>,
        outcome: (answer: A) => ParentLogEntry["outcome"]
      ) =>
      (request: Req) =>
        Ref.update(
          entries,
          (all): ReadonlyArray<ParentLogEntry> => [...all, { request, outcome: { type: "pending" } }]
        ).pipe(
          Effect.zipRight(asking(request)),
          Effect.tapBoth({
            onSuccess: (answer) => settle(request, outcome(answer)),
            onFailure: (error) => settle(request, { type: "failed", error })
          })
        )
    const parent: ParentService = {
      requestExecApproval: logged(inner.requestExecApproval, (decision) => ({ type: "decided", decision })),
      requestPatchApproval: logged(inner.requestPatchApproval, (decision) => ({ type: "decided", decision })),
      requestUserInput: logged(inner.requestUserInput, (response) => ({ type: "answered", response })),
      withdraw: (requestId) =>
        Ref.update(entries, (all) =>
          all.map((entry) =>
            entry.request.requestId === requestId && entry.outcome.type === "pending"
              ? { request: entry.request, outcome: { type: "withdrawn" } }
              : entry
          )
        ).pipe(Effect.zipRight(inner.withdraw(requestId)))
    }
    return { parent, log: { entries: Ref.get(entries) } }
  })
