/**
 * One long-lived child process (the Codex app-server), owned by the scope it is started in.
 *
 * Why node:child_process and not @effect/platform's Command: the app-server needs a stdin we write
 * to for its whole life and close on purpose (Codex's graceful shutdown is stdin EOF), a pid known
 * at once for group signals from any fiber (tests SIGKILL it), and a release that escalates
 * close → SIGTERM → SIGKILL with bounded waits; wrapping `spawn` in `acquireRelease` gives all three
 * without putting a CommandExecutor in every agent's requirements.
 *
 * No orphans: the child is spawned under core's supervisor (`ProcessSupervisor.spawn`), the leader of a new
 * process group; every signal goes to the whole group (`kill(-pid)`), so the commands Codex runs die
 * with it, what they left outside the group goes once Codex is gone (§33), and if this process dies
 * (even SIGKILL) the supervisor ends it all.
 */
import { Deferred, Duration, Effect, type Scope, Stream } from "effect"
import { type NotStarted, startPiped } from "./pipedChild.js"

/** How a child ended. */
export interface ChildExit {
  readonly code: number | null
  readonly signal: string | null
}

/** A running child. */
export interface Child {
  readonly pid: number
  /** Stdout as UTF-8 text chunks; ends at EOF. Read it once. */
  readonly output: Stream.Stream<string, unknown>
  /** Writes one line to stdin; dropped once stdin is closed or broken. */
  readonly write: (line: string) => Effect.Effect<void>
  /** Waits for the child to exit. */
  readonly exit: Effect.Effect<ChildExit>
  /** The exit, if it happened already. */
  readonly exitNow: () => ChildExit | undefined
  /** Sends `signal` to the child's whole process group. Never fails. */
  readonly signal: (signal: NodeJS.Signals) => Effect.Effect<void>
  /** Closes stdin, then SIGTERM after `grace`, then SIGKILL after another `grace`; done when the child and what it left are gone. */
  readonly terminate: Effect.Effect<void>
  /** The last few KB of stderr (for error messages). */
  readonly stderrTail: () => string
}

/** The child could not be started (no such binary, bad cwd, …). */
export type SpawnError = NotStarted

const STDERR_TAIL = 8 * 1024

/** Starts `file args…` in the caller's scope; closing the scope runs `terminate`. */
export const spawnChild = (config: {
  readonly file: string
  readonly args: ReadonlyArray<string>
  readonly cwd: string
  readonly env: Readonly<Record<string, string>>
  readonly grace: Duration.DurationInput
}): Effect.Effect<Child, SpawnError, Scope.Scope> => Effect.acquireRelease(start(config), (child) => child.terminate)

const start = (config: {
  readonly file: string
  readonly args: ReadonlyArray<string>
  readonly cwd: string
  readonly env: Readonly<Record<string, string>>
  readonly grace: Duration.DurationInput
}): Effect.Effect<Child, SpawnError> =>
  Effect.gen(function* () {
    const exited = yield* Deferred.make<ChildExit>()
    let exit: ChildExit | undefined
    // Listened for in the tick of the spawn: the child may exit before this fiber runs again.
    const { child: proc, endKilled } = yield* startPiped(
      config.file,
      config.args,
      { cwd: config.cwd, env: config.env, grace: config.grace },
      ({ child }) => {
        child.once("exit", (code, signal) => {
          exit = { code, signal }
          Deferred.unsafeDone(exited, Effect.succeed(exit))
        })
      }
    )
    // A write after the child died raises EPIPE on stdin; the exit is reported through stdout EOF instead.
    proc.stdin?.on("error", () => {})
    let tail = ""
    proc.stderr?.setEncoding("utf8")
    proc.stderr?.on("data", (chunk: string) => {
      tail = (tail + chunk).slice(-STDERR_TAIL)
    })
    const stdout = proc.stdout
    if (stdout === null || proc.stdin === null || proc.pid === undefined) {
      return yield* Effect.fail<SpawnError>({ reason: "the child has no stdio pipes", cause: undefined })
    }
    stdout.setEncoding("utf8")
    const pid = proc.pid

    const signal = (sig: NodeJS.Signals) =>
      Effect.sync(() => {
        try {
          process.kill(process.platform === "win32" ? pid : -pid, sig)
        } catch {
          // already gone
        }
      })
    const waitExit = (grace: Duration.DurationInput) =>
      Deferred.await(exited).pipe(Effect.interruptible, Effect.timeoutOption(grace))
    const terminate = Effect.gen(function* () {
      if (exit === undefined) {
        proc.stdin?.end()
        if ((yield* waitExit(config.grace))._tag === "None") {
          yield* signal("SIGTERM")
          if ((yield* waitExit(config.grace))._tag === "None") {
            yield* signal("SIGKILL")
            yield* waitExit(Duration.seconds(5))
          }
        }
      }
      // Whatever Codex started, in its group (a command it ran) or not, goes with it: the group now, what
      // left it by the supervisor's sweep (which need not look for the group's members after this SIGKILL).
      yield* signal("SIGKILL")
      yield* endKilled
    })

    return {
      pid,
      output: readText(stdout),
      write: (line) =>
        Effect.sync(() => {
          if (proc.stdin?.writable === true) proc.stdin.write(`${line}\n`)
        }),
      exit: Deferred.await(exited),
      exitNow: () => exit,
      signal,
      terminate,
      stderrTail: () => tail
    }
  })

/**
 * A readable as an interruptible stream of text chunks. The readable is paused while a chunk waits
 * for the reader (backpressure reaches the child through the pipe). Unlike an async iterator, a read
 * pending here can be interrupted.
 */
const readText = (readable: NodeJS.ReadableStream): Stream.Stream<string, unknown> =>
  Stream.async<string, unknown>((emit) => {
    const onData = (chunk: string) => {
      readable.pause()
      void emit.single(chunk).then(() => readable.resume())
    }
    const onEnd = () => void emit.end()
    const onError = (error: unknown) => void emit.fail(error)
    readable.on("data", onData)
    readable.once("end", onEnd)
    readable.once("error", onError)
    return Effect.sync(() => {
      readable.off("data", onData)
      readable.off("end", onEnd)
      readable.off("error", onError)
    })
  }, 16)
