/**
 * Runs one real command for an `exec` step and collects its output. The command is run by core's
 * process supervisor (`ProcessSupervisor.run`: spawned by the supervisor process, not by deputy's, in
 * its own process group, marked, §33) with stdin on /dev/null and exactly the given environment.
 * Interrupting the caller kills the group, escalating from SIGTERM to SIGKILL; then, however it
 * ended, the supervisor ends whatever the command left running, in its group or not, so nothing
 * outlives the step, nor this process if it is SIGKILLed.
 */
import { ProcessSupervisor } from "@deputy/core"
import { Data, Duration, Effect } from "effect"

/** How a command ended: `exitCode` null when it was killed by a signal or could not start (then `stderr` says why). */
export interface CommandResult {
  readonly exitCode: number | null
  readonly stdout: string
  readonly stderr: string
}

// How long the command's group gets between SIGTERM and SIGKILL.
const KILL_GRACE = Duration.seconds(2)

/** The most a command may print on one stream (§36): 64 MiB. Past it the command is killed. */
export const MAX_OUTPUT = 64 * 1024 * 1024

/** A command printed more than the bound on one of its streams. */
export class OutputTooLong extends Data.TaggedError("OutputTooLong")<{
  readonly stream: "stdout" | "stderr"
  readonly limit: number
}> {
  override get message() {
    return `the command printed more than ${this.limit} bytes on ${this.stream}; it was killed (the bound on its output)`
  }
}

/**
 * Runs `argv` (no shell) in `cwd` with stdin on /dev/null and exactly `env` as its environment
 * (nothing inherited, §32); waits for it to end. Never fails: a command that prints more than
 * `maxOutput` bytes (default 64 MiB) on a stream is killed and ends with exit code null and
 * `stderr` saying so; one that cannot start ends the same way, and so does one whose supervisor is
 * lost while it runs.
 */
export const runCommand = (
  argv: readonly [string, ...Array<string>],
  cwd: string,
  env: Readonly<Record<string, string>>,
  maxOutput: number = MAX_OUTPUT
): Effect.Effect<CommandResult> =>
  ProcessSupervisor.run(argv, { cwd, env, maxOutput, grace: KILL_GRACE }).pipe(
    Effect.map((result): CommandResult => {
      if (result._tag === "Exited") return { exitCode: result.exitCode, stdout: result.stdout, stderr: result.stderr }
      if (result._tag === "NotStarted") return failed(`cannot start ${argv[0]} in ${cwd}: ${result.reason}`)
      if (result._tag === "OutputTooLong") {
        return failed(new OutputTooLong({ stream: result.stream, limit: result.limit }).message)
      }
      return failed(`the result of ${argv[0]} in ${cwd} is lost: ${result.reason}`)
    })
  )

const failed = (stderr: string): CommandResult => ({ exitCode: null, stdout: "", stderr })
