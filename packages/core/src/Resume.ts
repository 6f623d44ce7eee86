/**
 * Resume with fallback (§23), shared by every backend: try to resume a prior thread; on any failure,
 * or a resume that yields no usable id, start fresh so the work still runs, and say which happened.
 */
import { Effect } from "effect"

/** What a resume-or-start produced, and whether it really resumed. */
export interface ResumeOutcome<A> {
  /** The live thread (or whatever the effects produce). */
  readonly value: A
  /** True when the prior thread was resumed; false when a fresh one was started. */
  readonly resumed: boolean
  /** Why the resume was not used, when it was not (an error's message, or "no thread id"). */
  readonly fallbackReason?: string
}

/**
 * Runs `resume` (skipped when there is no prior id); falls back to `start` when it fails or its
 * result is not `usable`. Only `start`'s failure fails the whole.
 */
export const resumeWithFallback = <A, E1, R1, E2, R2>(options: {
  readonly priorId: string | undefined
  readonly resume: (priorId: string) => Effect.Effect<A, E1, R1>
  readonly start: Effect.Effect<A, E2, R2>
  readonly usable?: (value: A) => boolean
}): Effect.Effect<ResumeOutcome<A>, E2, R1 | R2> => {
  const fresh = (fallbackReason: string) =>
    Effect.map(options.start, (value): ResumeOutcome<A> => ({ value, resumed: false, fallbackReason }))
  const priorId = options.priorId?.trim()
  if (!priorId) return fresh("no prior thread id")
  return options.resume(priorId).pipe(
    Effect.matchEffect({
      onFailure: (error) => fresh(describe(error)),
      onSuccess: (value) =>
        options.usable === undefined || options.usable(value)
          ? Effect.succeed<ResumeOutcome<A>>({ value, resumed: true })
          : fresh("the resumed thread has no usable id")
    })
  )
}

const describe = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === "string" ? error : JSON.stringify(error)
