/**
 * One `codex exec` child process, owned by the scope it is started in. The child runs in its own
 * process group with exactly the environment given; closing the scope kills the group (SIGTERM,
 * then SIGKILL after a grace), so nothing outlives its turn. Stdout is read once, as lines, into a
 * bounded mailbox (a slow reader holds the child back); stderr is always drained, each line logged
 * at debug level and the last few kept for error messages.
 *
 * No orphans: the child runs under core's supervisor (`ProcessSupervisor.supervise`): after the group is
 * killed, whatever Codex started outside it goes too (§33), and if this process dies, even by
 * SIGKILL, the supervisor ends it all. That sweep (a request to the supervisor and a scan of /proc,
 * 5–11 ms a turn on 2 busy cores) and the wait for stderr's end follow a child that exited by itself
 * without holding its scope's close when the owner gives `sweepLater` (see `backgroundSweeps`): the
 * group is SIGKILLed first, at the close, so only what left the group is still to end, and the
 * owner's close waits for that.
 */
import { ProcessSupervisor } from "@deputy/core"
import { Command, type CommandExecutor } from "@effect/platform"
import { BadArgument, type PlatformError } from "@effect/platform/Error"
import { Duration, Effect, Fiber, Mailbox, Option, Scope, Stream } from "effect"
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
  /**
   * Runs the supervisor's sweep after a child that exited by itself (its group already SIGKILLed), so
   * the scope's close need not wait for it (`backgroundSweeps`). Without it, and after a kill, the
   * close waits for the sweep.
   */
  readonly sweepLater?: (sweep: Effect.Effect<void>) => Effect.Effect<void>
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
}

const STDOUT_CAPACITY = 64
const STDERR_TAIL = 20
const STDERR_WAIT = Duration.seconds(1)

// Scope close alone sends SIGTERM and waits forever (STYLE: things that bite), so escalate to SIGKILL;
// then SIGKILL the group once more, so nothing the child started outlives it.
const killEscalating = (child: CommandExecutor.Process, grace: Duration.DurationInput) =>
  Effect.gen(function* () {
    if (yield* child.isRunning) {
      const stopped = yield* child.kill("SIGTERM").pipe(Effect.interruptible, Effect.timeoutOption(grace))
      if (stopped._tag === "None") yield* child.kill("SIGKILL").pipe(Effect.interruptible, Effect.timeout(grace))
    }
    yield* child.kill("SIGKILL").pipe(Effect.ignore) // fails (ignored) once the group is empty
  }).pipe(Effect.ignore)

const isInvalidArgument = (defect: unknown): defect is Error =>
  defect instanceof Error && (defect as NodeJS.ErrnoException).code === "ERR_INVALID_ARG_VALUE"

/** Starts the child in the caller's scope. Fails only when it cannot be spawned (no such binary, bad cwd, a NUL byte in an argument or the env). */
export const startExecProcess = (
  config: ExecProcessConfig
): Effect.Effect<ExecProcess, PlatformError, Scope.Scope | CommandExecutor.CommandExecutor> =>
  Effect.gen(function* () {
    const supervision = ProcessSupervisor.supervise(config.env, { grace: config.killGrace })
    const command = Command.make(config.binary, ...config.args).pipe(
      Command.workingDirectory(config.cwd),
      Command.env(supervision.env, { extendEnv: false }),
      Command.stdin(Stream.make(new TextEncoder().encode(config.stdin)))
    )
    // The platform spawns every child detached: Codex leads a process group of its own. Node refuses
    // some strings before any process exists (a NUL byte in an argument or the env), throwing where
    // the platform does not catch: a failed start, like a missing binary, not a defect.
    const child = yield* Command.start(command).pipe(
      Effect.catchSomeDefect((defect) =>
        isInvalidArgument(defect)
          ? Option.some(
              new BadArgument({ module: "Command", method: "start", description: defect.message, cause: defect })
            )
          : Option.none()
      )
    )
    supervision.watch(child.pid)
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
      Effect.forkDaemon // ended by the finalizer, which may leave it running behind the close
    )
    // Killed first (its group: SIGKILLed even after an exit, so whatever stayed in it goes now); then
    // what it left outside its group (the supervisor's sweep) and its last stderr lines logged (the
    // pipe ends once all that is gone), bounded: behind the close after an exit by itself, when the
    // owner allows, else before the close ends.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        const exited = !(yield* child.isRunning.pipe(Effect.orElseSucceed(() => true)))
        yield* kill
        const rest = supervision.end.pipe(
          Effect.zipRight(Fiber.await(stderr).pipe(Effect.interruptible, Effect.timeoutOption(STDERR_WAIT))),
          Effect.zipRight(Fiber.interrupt(stderr))
        )
        yield* exited && config.sweepLater !== undefined ? config.sweepLater(rest) : rest
      })
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
      kill
    }
  })

/**
 * Where `sweepLater` sweeps run: each on a fiber of its own, so a turn reports as soon as its child
 * exited (as @openai/codex-sdk does); closing the scope this runs in waits for every sweep still under
 * way (each bounded by its grace plus a few seconds), and sweeps asked for after that run inline.
 */
export const backgroundSweeps: Effect.Effect<(sweep: Effect.Effect<void>) => Effect.Effect<void>, never, Scope.Scope> =
  Effect.gen(function* () {
    // Made at the first sweep: an agent that never ran a turn holds no set.
    let live: Set<Fiber.RuntimeFiber<void>> | undefined
    let closed = false
    yield* Scope.addFinalizer(
      yield* Effect.scope,
      Effect.suspend(() => {
        closed = true
        return live === undefined ? Effect.void : Effect.asVoid(Fiber.awaitAll(live))
      })
    )
    return (sweep) =>
      Effect.suspend(() => {
        if (closed) return sweep
        return Effect.map(Effect.forkDaemon(sweep), (fiber) => {
          live ??= new Set()
          const set = live
          set.add(fiber)
          fiber.addObserver(() => set.delete(fiber))
        })
      })
  })
