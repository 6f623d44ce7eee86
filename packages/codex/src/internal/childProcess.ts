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
import { Mailboxes } from "@deputy/core"
import { Deferred, Duration, Effect, Exit, type Fiber, Mailbox, Option, Runtime, type Scope } from "effect"
import { type NotStarted, startPiped } from "./pipedChild.js"

/** How a child ended. */
export interface ChildExit {
  readonly code: number | null
  readonly signal: string | null
}

/** A running child. */
export interface Child {
  readonly pid: number
  /** Stdout as UTF-8 text chunks; ends at EOF (fails if reading fails). Read it once. */
  readonly output: Mailbox.ReadonlyMailbox<string, unknown>
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
    const output = readChunks(
      stdout,
      Runtime.runFork(yield* Effect.runtime<never>()),
      yield* Mailbox.make<string, unknown>(16)
    )
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
      output,
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
 * Feeds `readable`'s chunks into `mailbox` from the pipe's own callback (no fiber per chunk); when the
 * mailbox is full the pipe pauses (backpressure reaches the child) and one fiber offers the chunk,
 * resuming it after. The mailbox ends at EOF, fails if reading fails; once it is shut down, the rest is
 * dropped.
 */
const readChunks = (
  readable: NodeJS.ReadableStream,
  run: <A>(effect: Effect.Effect<A>) => Fiber.RuntimeFiber<A>,
  mailbox: Mailbox.Mailbox<string, unknown>
): Mailbox.ReadonlyMailbox<string, unknown> => {
  readable.on("data", (chunk: string) => {
    if (mailbox.unsafeOffer(chunk) || Option.isNone(mailbox.unsafeSize())) return // taken, or nobody reads on
    readable.pause()
    run(Mailboxes.offer(mailbox, chunk)).addObserver(() => readable.resume())
  })
  readable.once("end", () => void mailbox.unsafeDone(Exit.void))
  readable.once("error", (error) => void mailbox.unsafeDone(Exit.fail(error)))
  return mailbox
}
