/**
 * What ends a command, as an exit code and one line for stderr. Every failure the CLI reports is a
 * CliError; the line names what to fix, never a stack (`--verbose` adds the cause's).
 */
import { Data } from "effect"

/** Exit codes: 0 done, 1 the turn failed, 2 bad usage or input, 124 timeout, 130 cancelled. */
export const ExitCode = {
  ok: 0,
  failed: 1,
  usage: 2,
  timeout: 124,
  cancelled: 130
} as const
/** One of the exit codes. */
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode]

/** A command ended with `code`; `message` is the one line printed on stderr (empty: print nothing). */
export class CliError extends Data.TaggedError("CliError")<{
  readonly code: ExitCode
  readonly message: string
  readonly cause?: unknown
}> {}

/** Bad usage or input (exit 2). */
export const usage = (message: string, cause?: unknown) =>
  new CliError({ code: ExitCode.usage, message, ...(cause === undefined ? {} : { cause }) })

/** The first line of an error's message. */
export const oneLine = (error: unknown): string => {
  const text = error instanceof Error ? error.message : String(error)
  return (text.split("\n").find((line) => line.trim() !== "") ?? text).trim()
}
