/**
 * Runs one real command for an `exec` step and collects its output. The command is core's
 * supervised spawn (`ProcessSupervisor.spawn`: its own process group, marked, §33) with stdin on /dev/null
 * and exactly the given environment. Interrupting the caller kills the group, escalating from
 * SIGTERM to SIGKILL; then, however it ended, the supervisor ends whatever the command left running,
 * in its group or not, so nothing outlives the step, nor this process if it is SIGKILLed.
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
    return `the command printed more than ${this.limit} characters on ${this.stream}; it was killed (the bound on its output)`
  }
}

/** A started command: its result once it has ended and its pipes closed, and how to stop it. */
interface Running {
  readonly result: Effect.Effect<CommandResult>
  readonly stop: Effect.Effect<void>
}

const start = (
  [program, ...args]: readonly [string, ...Array<string>],
  cwd: string,
  env: Readonly<Record<string, string>>,
  maxOutput: number
): Running => {
  const cannotStart = (error: unknown) =>
    `cannot start ${program} in ${cwd}: ${error instanceof Error ? error.message : String(error)}`
  let spawned: ReturnType<typeof ProcessSupervisor.spawn>
  try {
    spawned = ProcessSupervisor.spawn(program, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] })
  } catch (error) {
    // Node refuses some arguments before any process exists (a NUL byte): the same result as a failed start.
    return { result: Effect.succeed({ exitCode: null, stdout: "", stderr: cannotStart(error) }), stop: Effect.void }
  }
  const { child, end } = spawned
  const signal = (name: NodeJS.Signals) => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, name)
    } catch {
      // the group is gone
    }
  }
  const gathered = { stdout: "", stderr: "" }
  let failure: string | undefined
  // §36: gathering stops at the bound and the group is killed, so memory stays bounded.
  for (const stream of ["stdout", "stderr"] as const) {
    child[stream]?.setEncoding("utf8")
    child[stream]?.on("data", (chunk: string) => {
      if (failure !== undefined) return
      if (gathered[stream].length + chunk.length > maxOutput) {
        failure = new OutputTooLong({ stream, limit: maxOutput }).message
        signal("SIGKILL")
      } else gathered[stream] += chunk
    })
  }
  const closed = new Promise<{ readonly code: number | null }>((resolve) => {
    child.once("error", (error) => {
      // It could not start (no such program, or no such cwd: node says ENOENT for both); no "close" follows.
      failure ??= cannotStart(error)
      resolve({ code: null })
    })
    child.once("close", (code) => resolve({ code }))
  })
  const exited = Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) resume(Effect.void)
    else child.once("exit", () => resume(Effect.void))
  })
  return {
    result: Effect.promise(() => closed).pipe(
      Effect.map(({ code }) =>
        failure === undefined ? { exitCode: code, ...gathered } : { exitCode: null, stdout: "", stderr: failure }
      )
    ),
    // SIGTERM alone may never end it (STYLE: things that bite): SIGKILL after the grace.
    stop: Effect.gen(function* () {
      signal("SIGTERM")
      if ((yield* exited.pipe(Effect.timeoutOption(KILL_GRACE)))._tag === "None") {
        signal("SIGKILL")
        yield* exited.pipe(Effect.timeoutOption(KILL_GRACE))
      }
    }).pipe(Effect.zipRight(end))
  }
}

/**
 * Runs `argv` (no shell) in `cwd` with stdin on /dev/null and exactly `env` as its environment
 * (nothing inherited, §32); waits for it to end. Never fails: a command that prints more than
 * `maxOutput` characters (default 64 MiB) on a stream is killed and ends with exit code null and
 * `stderr` saying so; one that cannot start ends the same way.
 */
export const runCommand = (
  argv: readonly [string, ...Array<string>],
  cwd: string,
  env: Readonly<Record<string, string>>,
  maxOutput: number = MAX_OUTPUT
): Effect.Effect<CommandResult> =>
  Effect.acquireUseRelease(
    Effect.sync(() => start(argv, cwd, env, maxOutput)),
    (running) => running.result,
    (running) => running.stop
  )
