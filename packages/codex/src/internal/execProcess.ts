/**
 * One `codex exec` child process, owned by the scope it is started in. The child runs in its own
 * process group with exactly the environment given; closing the scope kills the group (SIGTERM,
 * then SIGKILL after a grace), so nothing outlives its turn. Stdout is read once, as lines, into a
 * bounded mailbox (a full one pauses the pipe: a slow reader holds the child back); stderr is always
 * drained, each line logged at debug level and the last few kept for error messages.
 *
 * Why node:child_process and plain listeners, not @effect/platform's Command and streams (issue 12,
 * the exec backend against @openai/codex-sdk): Command checks the working directory on libuv's
 * thread pool before every spawn and writes stdin from a fiber of its own, and every chunk of stdout
 * and stderr went through several stream stages; that was most of the CPU deputy spent on a turn
 * beyond the SDK's, and a few milliseconds of its wall time on 2 busy cores. Here the prompt is
 * written and stdin closed as the child starts (as the SDK does) or once `stdinAfter` is done, a
 * chunk's lines go into the mailbox from the pipe's own callback, and a fiber runs only when the
 * mailbox is full.
 *
 * No orphans: the child runs under core's supervisor (`ProcessSupervisor.spawn`): after the group is
 * killed, whatever Codex started outside it goes too (§33), and if this process dies, even by
 * SIGKILL, the supervisor ends it all. That sweep (a request to the supervisor and a scan of /proc,
 * 5–11 ms of a turn on 2 busy cores) and the wait for stderr's end follow a child that exited by itself
 * without holding its scope's close when the owner gives `sweepLater` (`internal/behindTurns.ts`): the
 * group is SIGKILLed first, at the close, so only what left the group is still to end, and the
 * owner's close waits for that.
 */
import { Mailboxes } from "@deputy/core"
import {
  Cause,
  Data,
  Deferred,
  Duration,
  Effect,
  Exit,
  type Fiber,
  FiberRef,
  FiberRefs,
  LogLevel,
  Mailbox,
  Option,
  Runtime,
  type Scope
} from "effect"
import { LineTooLong, lineSplitter } from "./lines.js"
import { startPiped } from "./pipedChild.js"

/** What starting a child needs. */
export interface ExecProcessConfig {
  readonly binary: string
  readonly args: ReadonlyArray<string>
  readonly cwd: string
  /** The child's whole environment (nothing is inherited). */
  readonly env: Readonly<Record<string, string>>
  /** Written to the child's stdin, which is then closed. */
  readonly stdin: string
  /**
   * When given, stdin is written only once this is done; the child starts meanwhile (Codex loads its
   * config before it reads its prompt). Interrupted, with the child killed, if the scope closes first.
   */
  readonly stdinAfter?: Effect.Effect<void>
  /** How long SIGTERM may take before SIGKILL. */
  readonly killGrace: Duration.DurationInput
  /** The longest stdout line, in characters (§36). Default 64 MiB. */
  readonly maxLineLength?: number
  /**
   * Runs the supervisor's sweep after a child that exited by itself (its group already SIGKILLed), so
   * the scope's close need not wait for it (`internal/behindTurns.ts`). Without it, and after a kill, the
   * close waits for the sweep.
   */
  readonly sweepLater?: (sweep: Effect.Effect<void>) => Effect.Effect<void>
}

/** The child could not be started: node's reason (ENOENT for a missing program or working directory; a NUL byte refused). */
export class ExecStartFailed extends Data.TaggedError("ExecStartFailed")<{
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message() {
    return this.reason
  }
}

/** Reading the child's stdout failed (the pipe broke). */
export class ExecReadFailed extends Data.TaggedError("ExecReadFailed")<{ readonly reason: string }> {
  override get message() {
    return this.reason
  }
}

/** A running child, as its turn reads it. */
export interface ExecProcess {
  readonly pid: number
  /** Stdout, one line per message, ending at end-of-file (failing only if reading fails or a line is too long). */
  readonly lines: Mailbox.ReadonlyMailbox<string, ExecReadFailed | LineTooLong>
  /** Waits for the child to exit: its exit code, or null when a signal ended it. */
  readonly exitCode: Effect.Effect<number | null>
  /** The last stderr lines, once stderr has ended (or after a short wait). */
  readonly stderrTail: Effect.Effect<ReadonlyArray<string>>
  /** Why reading stdout stopped before its end (a line past the bound, a broken pipe), if it did. */
  readonly readFailure: () => string | undefined
  /** Kills the process group: SIGTERM, SIGKILL after the grace. Never fails; done when the child is gone. */
  readonly kill: Effect.Effect<void>
}

const STDOUT_CAPACITY = 64
const STDERR_TAIL = 20
const STDERR_WAIT = Duration.seconds(1)

const describe = (cause: unknown) => (cause instanceof Error ? cause.message : String(cause))

/** The pipes and process of a started child. */
interface Spawned {
  readonly pid: number
  readonly stdin: NodeJS.WritableStream
  readonly stdout: NodeJS.ReadableStream & { destroy: () => void }
  readonly stderr: NodeJS.ReadableStream & { destroy: () => void }
  /** Its exit code, null when a signal ended it. */
  readonly exited: Deferred.Deferred<number | null>
  /** The supervisor's sweep of what it left outside its group, once the group was SIGKILLed here (`endKilled`). */
  readonly end: Effect.Effect<void>
}

/**
 * Spawns the child detached (it leads a process group of its own) under supervision, and writes the
 * prompt and closes stdin at once unless told to wait (`stdinAfter`). Its exit is listened for in the
 * tick of the spawn, so an exit right away is never missed.
 */
const spawnChild = (config: ExecProcessConfig): Effect.Effect<Spawned, ExecStartFailed> =>
  Effect.flatMap(Deferred.make<number | null>(), (exited) =>
    startPiped(
      config.binary,
      config.args,
      { cwd: config.cwd, env: config.env, grace: config.killGrace },
      ({ child }) => {
        child.once("exit", (code) => Deferred.unsafeDone(exited, Effect.succeed(code)))
        child.stdin?.on("error", () => {}) // EPIPE when it exits without reading; its exit says the rest
        if (config.stdinAfter === undefined) child.stdin?.end(config.stdin)
        child.stdout?.setEncoding("utf8")
        child.stderr?.setEncoding("utf8")
      }
    ).pipe(
      Effect.mapError((failed) => new ExecStartFailed(failed)),
      Effect.flatMap(({ child, endKilled }) => {
        const { stdin, stdout, stderr } = child
        if (stdin === null || stdout === null || stderr === null) {
          return Effect.die("codex exec started without stdio pipes")
        }
        return Effect.succeed({ pid: child.pid ?? 0, stdin, stdout, stderr, exited, end: endKilled })
      })
    )
  )

/**
 * Feeds `readable`'s lines into `mailbox` from the pipe's callbacks: bounded lines (§36), in order;
 * when the mailbox is full the pipe pauses and one fiber offers the rest, resuming it after. The
 * mailbox ends at end-of-file (failing with LineTooLong past the bound, `onTooLong` called, or with
 * ExecReadFailed when reading fails).
 */
const feedLines = (
  readable: Spawned["stdout"],
  mailbox: Mailbox.Mailbox<string, ExecReadFailed | LineTooLong>,
  run: <A>(effect: Effect.Effect<A>) => Fiber.RuntimeFiber<A>,
  options: { readonly maxLength?: number; readonly onTooLong: () => void; readonly onFailure: (reason: string) => void }
) => {
  const splitter = lineSplitter({
    ...(options.maxLength === undefined ? {} : { maxLength: options.maxLength }),
    source: "codex exec stdout"
  })
  let finished = false
  /** Ends the mailbox with `exit` (a no-op once it ended) and stops reading; a failure drops the rest of the pipe. */
  const finish = (exit: Exit.Exit<void, ExecReadFailed | LineTooLong>) => {
    if (finished) return
    finished = true
    readable.removeListener("data", onData)
    mailbox.unsafeDone(exit)
    if (Exit.isFailure(exit)) {
      const failure = Cause.failureOption(exit.cause)
      if (Option.isSome(failure)) options.onFailure(failure.value.message)
      readable.destroy() // nobody reads the rest
      if (splitter.failure() !== undefined) options.onTooLong()
    }
  }
  /** Offers `lines`, then ends with `end` if given; a full mailbox pauses the pipe until they are all in. */
  const deliver = (lines: ReadonlyArray<string>, end?: Exit.Exit<void, ExecReadFailed | LineTooLong>) => {
    if (finished) return
    const rest = lines.length === 0 ? lines : mailbox.unsafeOfferAll(lines)
    if (rest.length === 0) {
      if (end !== undefined) finish(end)
      return
    }
    readable.pause()
    run(Mailboxes.offerAll(mailbox, rest)).addObserver((offered) => {
      // Lines left over: the mailbox was shut down (its owner closed), so nobody reads on.
      if (Exit.isSuccess(offered) && offered.value.length > 0)
        return finish(Exit.fail(new ExecReadFailed({ reason: "no longer read" })))
      if (end !== undefined) finish(end)
      else readable.resume()
    })
  }
  const onData = (chunk: string) => {
    const lines = splitter.push(chunk)
    if (lines instanceof LineTooLong) return finish(Exit.fail(lines))
    // Lines the chunk completed before the one past the bound come first; then the mailbox fails.
    const failure = splitter.failure()
    deliver(lines, failure === undefined ? undefined : Exit.fail(failure))
  }
  readable.on("data", onData)
  readable.once("end", () => {
    const failure = splitter.failure()
    const last = failure === undefined ? splitter.end() : undefined
    deliver(last === undefined ? [] : [last], failure === undefined ? Exit.void : Exit.fail(failure))
  })
  readable.once("error", (cause) => finish(Exit.fail(new ExecReadFailed({ reason: describe(cause) }))))
}

/**
 * Drains `readable`'s lines (bounded: past the bound they are no longer logged) into `tail`, logged
 * at debug level when that level is on; `ended` completes when the pipe ends.
 */
const drainStderr = (
  readable: Spawned["stderr"],
  tail: Array<string>,
  log: ((lines: ReadonlyArray<string>) => void) | undefined,
  ended: Deferred.Deferred<void>
) => {
  const splitter = lineSplitter({ source: "codex exec stderr" })
  const keep = (lines: ReadonlyArray<string>) => {
    for (const line of lines) {
      tail.push(line)
      if (tail.length > STDERR_TAIL) tail.shift()
    }
    if (lines.length > 0) log?.(lines)
  }
  readable.on("data", (chunk: string) => {
    const lines = splitter.push(chunk)
    if (!(lines instanceof LineTooLong)) keep(lines)
  })
  const done = () => {
    if (splitter.failure() === undefined) {
      const last = splitter.end()
      if (last !== undefined) keep([last])
    }
    Deferred.unsafeDone(ended, Exit.void)
  }
  readable.once("end", done)
  readable.once("error", done)
}

/** Starts the child in the caller's scope. Fails only when it cannot be spawned (no such binary, bad cwd, a NUL byte in an argument or the env). */
export const startExecProcess = (config: ExecProcessConfig): Effect.Effect<ExecProcess, ExecStartFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const runtime = yield* Effect.runtime<never>()
    const run = Runtime.runFork(runtime)
    const debug = LogLevel.greaterThanEqual(
      LogLevel.Debug,
      FiberRefs.getOrDefault(runtime.fiberRefs, FiberRef.currentMinimumLogLevel)
    )
    const log = debug
      ? (lines: ReadonlyArray<string>) =>
          void run(Effect.forEach(lines, (line) => Effect.logDebug(`codex stderr: ${line}`), { discard: true }))
      : undefined
    const lines = yield* Mailbox.make<string, ExecReadFailed | LineTooLong>({ capacity: STDOUT_CAPACITY })
    const tail: Array<string> = []
    let readFailure: string | undefined
    const stderrEnded = yield* Deferred.make<void>()
    const { child, kill } = yield* Effect.acquireRelease(
      Effect.map(spawnChild(config), (child) => {
        const group = process.platform === "win32" ? child.pid : -child.pid
        const signal = (name: NodeJS.Signals) =>
          Effect.sync(() => {
            try {
              process.kill(group, name)
            } catch {
              // the group is gone
            }
          })
        const waitExit = Deferred.await(child.exited).pipe(Effect.interruptible, Effect.timeoutOption(config.killGrace))
        // SIGTERM, SIGKILL past the grace; then SIGKILL the group once more, so nothing the child started in it outlives it.
        const kill = Effect.gen(function* () {
          if (!(yield* Deferred.isDone(child.exited))) {
            yield* signal("SIGTERM")
            if (Option.isNone(yield* waitExit)) {
              yield* signal("SIGKILL")
              yield* waitExit
            }
          }
          yield* signal("SIGKILL")
        })
        drainStderr(child.stderr, tail, log, stderrEnded)
        // §36: a line past the bound (default 64 MiB) fails the mailbox with LineTooLong, and the child
        // goes (nobody reads the rest: it would block on a full pipe), so its turn ends.
        feedLines(child.stdout, lines, run, {
          ...(config.maxLineLength === undefined ? {} : { maxLength: config.maxLineLength }),
          onTooLong: () => void run(kill),
          onFailure: (reason) => {
            readFailure = reason
          }
        })
        return { child, kill }
      }),
      // Killed first (its group: SIGKILLed even after an exit, so whatever stayed in it goes now); then
      // what it left outside its group (the supervisor's sweep) and its last stderr lines (the pipe ends
      // once all that is gone), bounded: behind the close after an exit by itself, when the owner
      // allows, else before the close ends. A fiber still offering stdout lines stops with the mailbox.
      ({ child, kill }) =>
        Effect.gen(function* () {
          const exited = yield* Deferred.isDone(child.exited)
          yield* kill
          yield* lines.shutdown
          const rest = child.end.pipe(
            Effect.zipRight(Deferred.await(stderrEnded).pipe(Effect.timeoutOption(STDERR_WAIT))),
            Effect.zipRight(Effect.sync(() => child.stderr.destroy()))
          )
          yield* exited && config.sweepLater !== undefined ? config.sweepLater(rest) : rest
        })
    )
    if (config.stdinAfter !== undefined) {
      yield* Effect.forkScoped(
        Effect.zipRight(
          config.stdinAfter,
          Effect.sync(() => child.stdin.end(config.stdin))
        )
      )
    }
    return {
      pid: child.pid,
      lines,
      exitCode: Deferred.await(child.exited),
      stderrTail: Deferred.await(stderrEnded).pipe(
        Effect.timeoutOption(STDERR_WAIT),
        Effect.map(() => [...tail])
      ),
      kill,
      readFailure: () => readFailure
    }
  })
