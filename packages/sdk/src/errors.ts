/**
 * The Promise API's errors: plain `Error` subclasses with the `_tag` of the failure they stand for,
 * a one-line `message` that names what to fix, and the original failure as `cause`. An Effect
 * failure never reaches a caller as a FiberFailure dump: `fromCause` maps every Cause first.
 */
import type { CancelReport, PendingRequest } from "@deputy/core"
import { Cause, Option } from "effect"

/** Every error the Promise API rejects with. `_tag` names what went wrong (`ThreadNotFound`, `InvalidInput`, …). */
export class DeputyError extends Error {
  /** What went wrong, as the matching Effect error's `_tag` (or the SDK's own: `RunAborted`, `RunStalled`, …). */
  readonly _tag: string

  /** An error tagged `tag`; `cause` is the underlying failure, when there is one. */
  constructor(tag: string, message: string, options?: { readonly cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this._tag = tag
    this.name = tag
  }
}

/** A run was cancelled through its AbortSignal: the thread (and its sub-agents) was cancelled, `report` says how. */
export class RunAborted extends DeputyError {
  /** What cancelling the thread ended: each thread of its tree and the approval requests withdrawn. */
  readonly report: CancelReport

  /** A run of `threadId` cancelled, with the cancel's report. */
  constructor(threadId: string, report: CancelReport, reason?: unknown) {
    super("RunAborted", `the run of thread ${threadId} was aborted by its signal; the thread was cancelled`, {
      cause: reason
    })
    this.report = report
  }
}

/**
 * A run waited for something nothing could ever give (Node had nothing left to do): usually an
 * approval nobody answers. The thread was cancelled; `pending` lists what it waited for.
 */
export class RunStalled extends DeputyError {
  /** The approval requests that were waiting, oldest first. */
  readonly pending: ReadonlyArray<PendingRequest>
  /** What cancelling the stalled thread ended. */
  readonly report: CancelReport

  /** A stalled run of `threadId`, with what it waited for. */
  constructor(threadId: string, pending: ReadonlyArray<PendingRequest>, report: CancelReport) {
    const waits =
      pending.length === 0
        ? "an event its agent never sent"
        : pending.map((p) => `${p.kind} request ${p.requestId}${describeRequest(p)}`).join(", ")
    super(
      "RunStalled",
      `the run of thread ${threadId} waits for ${waits} and nothing is left that could answer: decide it in onApproval or the policy, or call deputy.answerApproval(requestId, decision) while the run is in flight`
    )
    this.pending = pending
    this.report = report
  }
}

const describeRequest = (pending: PendingRequest): string => {
  const request = pending.request
  if (request.kind === "exec") return ` (${request.command.join(" ")})`
  if (request.kind === "patch") return ` (${Object.keys(request.changes).join(", ")})`
  return ""
}

/** What to do about the core errors a Promise user meets most; appended to their message. */
const HINTS: Readonly<Record<string, string>> = {
  ThreadNotFound: "start it with deputy.startThread, or resume its rollout with deputy.resumeThread",
  RolloutNotFound: "no rollout has that thread id in this deputy's home: check `home` and the id",
  DuplicateThreadId: "a live thread already has that id: pick another, or resume it",
  DuplicateTurnId: "turn ids must be unique within a thread",
  InvalidInput: "fix the value named above",
  SpawnFailed: "check the backend's options (binary path, cwd) and that it is installed",
  ApprovalsUnsupported: "codexExec cannot ask for approvals: drop onApproval and use a policy that approves everything",
  RequestNotPending: "the request was already answered, withdrawn, or never asked: list deputy.pendingApprovals()",
  AnswerMismatch: "give a decision to exec and patch requests, answers to user-input requests"
}

const hasTag = (u: unknown): u is { readonly _tag: string; readonly message: string } =>
  typeof u === "object" &&
  u !== null &&
  typeof (u as { _tag?: unknown })._tag === "string" &&
  typeof (u as { message?: unknown }).message === "string"

const firstLine = (text: string) => text.split("\n", 1)[0] ?? text

/** @internal The one error a Promise caller sees for an Effect's failure: the failure, an interruption, or a defect. */
export const fromCause = (cause: Cause.Cause<unknown>): DeputyError => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) return fromFailure(failure.value)
  const defect = Cause.dieOption(cause)
  if (Option.isSome(defect)) {
    if (defect.value instanceof DeputyError) return defect.value
    const text = defect.value instanceof Error ? defect.value.message : String(defect.value)
    return new DeputyError("Defect", `deputy failed unexpectedly (a bug): ${firstLine(text)}`, {
      cause: defect.value
    })
  }
  return new DeputyError("Interrupted", "the operation was interrupted: its deputy or thread was closed", { cause })
}

/** @internal An expected failure (a tagged error) as a DeputyError with a hint. */
export const fromFailure = (error: unknown): DeputyError => {
  if (error instanceof DeputyError) return error
  if (hasTag(error)) {
    const hint = HINTS[error._tag]
    const message = firstLine(error.message) || error._tag
    return new DeputyError(error._tag, hint === undefined ? message : `${message} (${hint})`, { cause: error })
  }
  return new DeputyError("Failed", firstLine(String(error)), { cause: error })
}
