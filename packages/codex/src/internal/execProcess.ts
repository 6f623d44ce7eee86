/**
 * One `codex exec` child process, owned by the scope it is started in. The child runs in its own
 * process group with exactly the environment given; closing the scope kills the group (SIGTERM,
 * then SIGKILL after a grace), so nothing outlives its turn. Stdout is read once, as lines, into a
 * bounded mailbox (a slow reader holds the child back); stderr is always drained, each line logged
 * at debug level and the last few kept for error messages.
 *
 * No orphans: the child runs under core's watchdog (`Watchdog.command`, lifeline `parent`, since
 * its stdin carries the prompt), which leads the group and ends it within ~100 ms of this process
 * dying, even by SIGKILL. A binary that cannot start shows as exit 127 with the watchdog's stderr
 * line (`startFailure`).
 */
import { Watchdog } from "@deputy/core"
import { Command, type CommandExecutor } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { Duration, Effect, Fiber, Mailbox, type Option, type Scope, Stream } from "effect"
import { type LineTooLong, splitLinesBounded } from "./lines.js"

/** What starting a child needs. */
export interface ExecProcessConfig {
  readonly binary: string
  readonly args: ReadonlyArray<string>
  readonly cwd: string
  /** The child's whole environment (nothing is inherited). */
  readonly env: Readonly<Record<string, string>>
  /** Written to the child's stdin, which is then closed. */
  readonly stdin: string
  /** How long SIGTERM may take before SIGKILL. */
  readonly killGrace: Duration.DurationInput
  /** The longest stdout line, in characters (§36). Default 64 MiB. */
  readonly maxLineLength?: number
}

/** A running child, as its turn reads it. */
export interface ExecProcess {
  readonly pid: number
  /** Stdout, one line per message, ending at end-of-file (failing only if reading fails). */
  readonly lines: Mailbox.ReadonlyMailbox<string, PlatformError | LineTooLong>
  /** Waits for the child to exit: its exit code, or null when a signal ended it. */
  readonly exitCode: Effect.Effect<number | null>
  /** The last stderr lines, once stderr has ended (or after a short wait). */
  readonly stderrTail: Effect.Effect<ReadonlyArray<string>>
  /** Kills the process group: SIGTERM, SIGKILL after the grace. Never fails; done when the child is gone. */
  readonly kill: Effect.Effect<void>
  /**
   * Waits for the exit and stderr's end: the reason when the binary could not start at all (no such
   * file, not executable), none for any other exit.
   */
  readonly startFailure: Effect.Effect<Option.Option<string>>
}

const STDOUT_CAPACITY = 64
const STDERR_TAIL = 20
const STDERR_WAIT = Duration.seconds(1)

// Scope close alone sends SIGTERM and waits forever (STYLE: things that bite), so escalate to SIGKILL;
// then SIGKILL the group once more, so nothing the child started outlives it.
const killEscalating = (child: CommandExecutor.Process, grace: Duration.DurationInput) =>
  Effect.gen(function* () {
    if (yield* child.isRunning) {
      // Past the watchdog's own grace: it must live to SIGKILL what left the group (§33).
      const stopped = yield* child
        .kill("SIGTERM")
        .pipe(Effect.interruptible, Effect.timeoutOption(Duration.sum(grace, Duration.seconds(1))))
      if (stopped._tag === "None") yield* child.kill("SIGKILL").pipe(Effect.interruptible, Effect.timeout(grace))
    }
    yield* child.kill("SIGKILL").pipe(Effect.ignore) // fails (ignored) once the group is empty
  }).pipe(Effect.ignore)

/** Starts the child in the caller's scope. Fails only when it cannot be spawned (no such binary, bad cwd). */
export const startExecProcess = (
  config: ExecProcessConfig
): Effect.Effect<ExecProcess, PlatformError, Scope.Scope | CommandExecutor.CommandExecutor> =>
  Effect.gen(function* () {
    // The watchdog (node) gets the child's env alone, no NODE_OPTIONS of ours; the prompt reaches Codex
    // through its stdin, so the lifeline is the watchdog's parent pid.
    const command = Watchdog.command(config.binary, config.args, { lifeline: "parent", grace: config.killGrace }).pipe(
      Command.workingDirectory(config.cwd),
      Command.env(config.env, { extendEnv: false }),
      Command.stdin(Stream.make(new TextEncoder().encode(config.stdin)))
    )
    // The platform spawns every child detached: the watchdog leads a process group that holds Codex.
    const child = yield* Command.start(command)
    const kill = killEscalating(child, config.killGrace)

    const tail: Array<string> = []
    const stderr = yield* child.stderr.pipe(
      Stream.decodeText(),
      splitLinesBounded({ source: "codex exec stderr" }), // past the bound: stop logging it
      Stream.runForEach((line) => {
        tail.push(line)
        if (tail.length > STDERR_TAIL) tail.shift()
        return Effect.logDebug(`codex stderr: ${line}`)
      }),
      Effect.ignore,
      Effect.forkScoped
    )
    // Killed first, then its last stderr lines logged (the pipe ends with the group), bounded.
    yield* Effect.addFinalizer(() =>
      kill.pipe(Effect.zipRight(Fiber.await(stderr).pipe(Effect.interruptible, Effect.timeoutOption(STDERR_WAIT))))
    )
    // §36: a line past the bound (default 64 MiB) fails the stream with LineTooLong and kills the child.
    const lines = yield* Mailbox.fromStream(
      child.stdout.pipe(
        Stream.decodeText(),
        splitLinesBounded({
          ...(config.maxLineLength === undefined ? {} : { maxLength: config.maxLineLength }),
          source: "codex exec stdout"
        }),
        // Nobody reads the rest, so the child would block on a full pipe: it goes, and its turn ends.
        Stream.tapError((error) => (error._tag === "LineTooLong" ? kill : Effect.void))
      ),
      { capacity: STDOUT_CAPACITY }
    )
    const exitCode = child.exitCode.pipe(
      Effect.map((code): number | null => code),
      Effect.orElseSucceed(() => null) // ended by a signal
    )
    const stderrTail = Fiber.await(stderr).pipe(
      Effect.timeoutOption(STDERR_WAIT),
      Effect.map(() => [...tail])
    )
    return {
      pid: child.pid,
      lines,
      exitCode,
      stderrTail,
      kill,
      startFailure: Effect.zipWith(exitCode, stderrTail, (code, lines) => Watchdog.spawnFailure(code, lines.join("\n")))
    }
  })
