/**
 * Runs one real command for an `exec` step and collects its output. The child lives in a scope of
 * its own: interrupting the caller closes it, which kills the child's process group, escalating
 * from SIGTERM to SIGKILL so nothing outlives the turn. It runs under core's watchdog (stdin
 * lifeline), so it dies with its group even if this process is SIGKILLed.
 */
import { Watchdog } from "@deputy/core"
import { Command, type CommandExecutor } from "@effect/platform"
import { Data, Duration, Effect, Option, Stream } from "effect"

/** How a command ended: `exitCode` null when it was killed by a signal or could not start (then `stderr` says why). */
export interface CommandResult {
  readonly exitCode: number | null
  readonly stdout: string
  readonly stderr: string
}

// Past the watchdog's own 2 s grace: the watchdog must live to SIGKILL what left its group (§33).
const KILL_GRACE = Duration.seconds(3)

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

// §36: gathering stops at the bound (the scope then kills the command), so memory stays bounded.
const text = <E>(bytes: Stream.Stream<Uint8Array, E>, stream: "stdout" | "stderr", limit: number) =>
  Stream.decodeText(bytes).pipe(
    Stream.runFoldEffect("", (gathered, chunk) =>
      gathered.length + chunk.length > limit
        ? Effect.fail(new OutputTooLong({ stream, limit }))
        : Effect.succeed(gathered + chunk)
    )
  )

// Scope close alone sends SIGTERM and waits forever (STYLE: things that bite), so escalate to SIGKILL.
const killEscalating = (process: CommandExecutor.Process) =>
  Effect.gen(function* () {
    if (!(yield* process.isRunning)) return
    const stopped = yield* process.kill("SIGTERM").pipe(Effect.interruptible, Effect.timeoutOption(KILL_GRACE))
    if (stopped._tag === "None") yield* process.kill("SIGKILL").pipe(Effect.interruptible, Effect.timeout(KILL_GRACE))
  }).pipe(Effect.ignore)

/**
 * Runs `argv` (no shell) in `cwd` with an empty stdin (/dev/null) and exactly `env` as its environment
 * (nothing inherited, §32); waits for it to end. Never fails: a command that prints more than
 * `maxOutput` characters (default 64 MiB) on a stream is killed and ends with exit code null and
 * `stderr` saying so.
 */
export const runCommand = (
  argv: readonly [string, ...Array<string>],
  cwd: string,
  env: Readonly<Record<string, string>>,
  maxOutput: number = MAX_OUTPUT
): Effect.Effect<CommandResult, never, CommandExecutor.CommandExecutor> =>
  Effect.scoped(
    Effect.gen(function* () {
      const [program, ...args] = argv
      // The watchdog's stdin is its lifeline (left open, fed nothing); the command reads /dev/null.
      const command = Watchdog.command(program, args).pipe(
        Command.workingDirectory(cwd),
        Command.env(env, { extendEnv: false })
      )
      const process = yield* Command.start(command)
      yield* Effect.addFinalizer(() => killEscalating(process))
      const [stdout, stderr, exitCode] = yield* Effect.all(
        [
          text(process.stdout, "stdout", maxOutput),
          text(process.stderr, "stderr", maxOutput),
          process.exitCode.pipe(
            Effect.map((code): number | null => code),
            Effect.orElseSucceed(() => null) // killed by a signal
          )
        ],
        { concurrency: "unbounded" }
      )
      // A program that could not start is a null exit code, as when spawning it directly fails.
      return { exitCode: Option.isSome(Watchdog.spawnFailure(exitCode, stderr)) ? null : exitCode, stdout, stderr }
    })
  ).pipe(Effect.catchAll((error) => Effect.succeed({ exitCode: null, stdout: "", stderr: error.message })))
