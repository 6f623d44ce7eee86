/**
 * No orphans, at the cost of a plain `spawn` (§33). Every child process runs as the leader of a new
 * process group (`detached`), with one more environment variable,
 * `DEPUTY_WATCH_<this process's token>=<the command's token>`, that every descendant inherits. One
 * supervisor process per deputy process (internal/supervisor.mjs, started on the first command, in a
 * group of its own) holds the other guarantees:
 *
 * - a command that ends, or is ended, is followed by `end`: its group and every process carrying its
 *   token get SIGTERM, then SIGKILL after the grace (default 2 s), until none is left. So a descendant
 *   that ignores SIGTERM, backgrounds itself, moves to another group or calls `setsid` still goes.
 *   The supervisor scans /proc off deputy's event loop, one scan for every command ending at once;
 * - when deputy dies in any way, even SIGKILL, the kernel closes its end of the supervisor's stdin,
 *   and the supervisor ends every group it watches and every process with deputy's marker, whatever
 *   the command token, then exits.
 *
 * Two ways to start a command. `run` asks the supervisor to spawn it, gather its output and answer
 * with the result once it has ended and been swept: deputy's process, hundreds of MiB, never forks,
 * and a command costs it one request line and two reply lines (issue 12: a fork of deputy and the
 * pipes' events were ~6 ms of its CPU per scripted `exec`). `spawn` starts it from this process, for
 * commands whose pipes deputy reads live (Codex), and tells the supervisor to watch it.
 *
 * Guaranteed on Linux: every descendant that keeps the marker in its environment, and every member of
 * the group. Not guaranteed: a process that clears its environment (`env -i`) and also leaves the
 * group, or one of another user (its environ is unreadable). A deputy run by a command of another
 * deputy keeps the outer marker too, so the outer one reaches the inner one's commands. Without /proc
 * (macOS) only the group is reached. (A cgroup would be the stronger Linux tool, but deputy cannot
 * count on a writable one, and PR_SET_CHILD_SUBREAPER needs a native addon.) If the supervisor cannot
 * start or dies, `end` still ends the command's group from this process (SIGTERM, SIGKILL after the
 * grace), a `run` under way ends `Lost` with its group ended from here the same way, and the next
 * command starts a new supervisor.
 *
 * Finding the script: it lives in `src/internal/supervisor.mjs`, which the package publishes (its
 * `files` has `src`), found as `../src/internal/supervisor.mjs` relative to this module, a path that
 * holds from `src/Supervisor.ts` (tests, tsx) and from `dist/Supervisor.js` alike. A bundler that
 * moves this module must copy the script and set `DEPUTY_SUPERVISOR` to its path.
 *
 * On Windows (no process groups) commands run as they are, `run` spawns from this process and `end`
 * does nothing.
 */
import * as ChildProcess from "node:child_process"
import { randomBytes } from "node:crypto"
import type { Socket } from "node:net"
import { resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { Data, Duration, Effect } from "effect"
import { z } from "zod"
import { splitBoundedLines } from "./internal/boundedLines.js"

/** The supervisor script: `DEPUTY_SUPERVISOR` if set, else `src/internal/supervisor.mjs` of this package. */
export const scriptPath: string =
  process.env.DEPUTY_SUPERVISOR !== undefined && process.env.DEPUTY_SUPERVISOR !== ""
    ? process.env.DEPUTY_SUPERVISOR
    : fileURLToPath(new URL("../src/internal/supervisor.mjs", import.meta.url))

/** The environment variable every command of this process (and its descendants) carries. */
export const MARKER = `DEPUTY_WATCH_${randomBytes(16).toString("hex")}`

/** What the supervisor may need past the grace to report that nothing is left (a scan or two). */
const REPLY_MARGIN = Duration.seconds(3)
const DEFAULT_GRACE = Duration.seconds(2)

/** A command under supervision, before and after it is spawned. */
export interface Supervision {
  /** The environment to spawn the command with, exactly: the given one plus the markers. */
  readonly env: Record<string, string>
  /** Tells the supervisor the command runs, as the leader of process group `pid` (spawn it `detached`). */
  readonly watch: (pid: number) => void
  /**
   * Ends what is left of the command: its group and every process carrying its token get SIGTERM,
   * SIGKILL after the grace. Done when none is left (bounded by the grace plus a few seconds). Never fails.
   */
  readonly end: Effect.Effect<void>
  /**
   * `end` for a command whose group this process has just SIGKILLed (nothing in it can run any more):
   * the supervisor looks only for what carries the command's token, without reading every process's
   * state to learn whether the group still has members (zombies nobody reaps can keep it in being).
   */
  readonly endKilled: Effect.Effect<void>
}

/** Supervision for one command that will run with environment `env` (nothing inherited is added but the markers). */
export const supervise = (
  env: Readonly<Record<string, string>>,
  options: { readonly grace?: Duration.DurationInput } = {}
): Supervision => {
  const grace = Duration.decode(options.grace ?? DEFAULT_GRACE)
  const token = `c${++commands}`
  let group = 0
  return {
    env: { ...env, ...outerMarkers(), [MARKER]: token },
    watch: (pid) => {
      group = pid
      connect()?.send(`watch ${pid}`)
    },
    end: Effect.suspend(() => endCommand(group, token, grace)),
    endKilled: Effect.suspend(() => endCommand(group, token, grace, true))
  }
}

/** node:child_process.spawn of `command args…` under supervision: `detached`, marked, watched. */
export const spawn = (
  command: string,
  args: ReadonlyArray<string>,
  options: Omit<ChildProcess.SpawnOptions, "detached" | "env"> & {
    readonly env?: Readonly<Record<string, string>>
    readonly grace?: Duration.DurationInput
  } = {}
): {
  readonly child: ChildProcess.ChildProcess
  readonly end: Effect.Effect<void>
  readonly endKilled: Effect.Effect<void>
} => {
  const { env, grace, ...spawnOptions } = options
  const supervision = supervise(env ?? {}, grace === undefined ? {} : { grace })
  const child = ChildProcess.spawn(command, [...args], {
    ...spawnOptions,
    env: supervision.env,
    detached: process.platform !== "win32"
  })
  if (child.pid !== undefined) supervision.watch(child.pid)
  return { child, end: supervision.end, endKilled: supervision.endKilled }
}

/** How a command started with `run` ended. */
export type RunResult = Data.TaggedEnum<{
  /** It ran and ended (`exitCode` null when `signal` ended it) and what it left was swept; its output, as UTF-8. */
  readonly Exited: {
    readonly exitCode: number | null
    readonly signal: string | null
    readonly stdout: string
    readonly stderr: string
  }
  /** Nothing ran: node's reason (a missing program or cwd is ENOENT, a NUL byte is refused) or the supervisor's. */
  readonly NotStarted: { readonly reason: string }
  /** It printed more than `limit` bytes on `stream`: its group was killed and what it left swept. */
  readonly OutputTooLong: { readonly stream: "stdout" | "stderr"; readonly limit: number }
  /** Its result is lost (the supervisor died, or answered past the bound): `reason` says how; what it started was ended. */
  readonly Lost: { readonly reason: string }
}>

const runResult = Data.taggedEnum<RunResult>()

/** The constructors of RunResult, one per case (match on `_tag`). */
export const RunResult: {
  readonly [Tag in RunResult["_tag"]]: Data.Case.Constructor<Extract<RunResult, { readonly _tag: Tag }>, "_tag">
} = runResult

/** How `run` runs a command. */
export interface RunOptions {
  /** Its working directory (resolved against this process's). */
  readonly cwd: string
  /** Its environment, exactly (the markers are added). */
  readonly env: Readonly<Record<string, string>>
  /** The most it may print on each of stdout and stderr, in bytes; past it its group is killed. */
  readonly maxOutput: number
  /** Between SIGTERM and SIGKILL, when it is stopped and when what it left is ended (default 2 s). */
  readonly grace?: Duration.DurationInput
}

/** The length of the base64 of `n` bytes. */
const base64Length = (n: number) => Math.ceil(n / 3) * 4

/**
 * Runs `argv` (no shell) through the supervisor: spawned there in a process group of its own, stdin
 * on /dev/null, exactly `options.env` plus the markers; its output gathered up to `maxOutput` bytes a
 * stream. Succeeds once it has ended, its pipes closed and whatever it left was ended (as `end`
 * does). Never fails. Interrupting it stops the command (SIGTERM to its group, SIGKILL after the
 * grace, then the same sweep) and waits for that, bounded by twice the grace plus a few seconds.
 */
export const run = (argv: readonly [string, ...Array<string>], options: RunOptions): Effect.Effect<RunResult> =>
  Effect.suspend(() => {
    const grace = Duration.decode(options.grace ?? DEFAULT_GRACE)
    const cwd = resolve(options.cwd)
    if (process.platform === "win32") return runHere(argv, cwd, options.env, options.maxOutput)
    const token = `c${++commands}`
    const id = `${++requests}`
    const line = `run ${id} ${JSON.stringify({
      argv,
      cwd,
      env: { ...options.env, ...outerMarkers(), [MARKER]: token },
      token,
      max: options.maxOutput,
      grace: Math.round(Duration.toMillis(grace))
    })}`
    if (line.length * 3 > REQUEST_BOUND && Buffer.byteLength(line) > REQUEST_BOUND)
      return Effect.succeed(
        RunResult.NotStarted({
          reason: `its arguments and environment take ${Buffer.byteLength(line)} bytes, more than the ${REQUEST_BOUND} a request to the supervisor may`
        })
      )
    const supervisor = connect()
    if (supervisor === undefined)
      return Effect.succeed(
        RunResult.NotStarted({ reason: `the process supervisor could not start (${startFailure})` })
      )
    const pending: PendingRun = {
      pid: undefined,
      token,
      grace,
      limit: options.maxOutput,
      replyBound: 2 * base64Length(options.maxOutput) + CONTROL_BOUND,
      settle: () => {}
    }
    return Effect.async<RunResult>((resume) => {
      pending.settle = resume
      supervisor.runs.set(id, pending)
      supervisor.keep() // a `result` line is awaited: keep deputy alive for it
      supervisor.send(line)
      // Interrupted: stop it and wait for its result (the sweep done), bounded; past the bound its
      // group is ended from here. This runs uninterruptibly (so no Effect timeout can cut the wait: a
      // timer does), and possibly after the answer came but before the fiber took it: then there
      // is nothing to stop, or only the cleanup of a lost supervisor to do.
      if (supervisor.runs.get(id) !== pending) return pending.cleanup ?? Effect.void
      return Effect.async<void>((stopped) => {
        let timer: ReturnType<typeof setTimeout> | undefined
        const finish = (effect: Effect.Effect<unknown>) => {
          if (timer === undefined) return
          clearTimeout(timer)
          timer = undefined
          stopped(Effect.asVoid(effect))
        }
        timer = setTimeout(
          () => {
            if (supervisor.runs.get(id) === pending) supervisor.runs.delete(id)
            supervisor.keep()
            finish(pending.pid === undefined ? Effect.void : endGroup(pending.pid, grace))
          },
          Duration.toMillis(Duration.sum(Duration.times(grace, 2), REPLY_MARGIN))
        )
        pending.settle = finish
        supervisor.send(`stop ${id}`)
      })
    })
  })

/**
 * `run` without a supervisor (Windows: no process groups, nothing to sweep): spawned from this
 * process, output gathered the same way, the process killed when interrupted.
 */
const runHere = (
  [program, ...args]: readonly [string, ...Array<string>],
  cwd: string,
  env: Readonly<Record<string, string>>,
  maxOutput: number
): Effect.Effect<RunResult> =>
  Effect.async<RunResult>((resume) => {
    let child: ChildProcess.ChildProcess
    try {
      child = ChildProcess.spawn(program, args, { cwd, env: { ...env }, stdio: ["ignore", "pipe", "pipe"] })
    } catch (error) {
      resume(Effect.succeed(RunResult.NotStarted({ reason: error instanceof Error ? error.message : String(error) })))
      return
    }
    const output = { stdout: [] as Array<Buffer>, stderr: [] as Array<Buffer> }
    const total = { stdout: 0, stderr: 0 }
    let tooLong: "stdout" | "stderr" | undefined
    let startError: string | undefined
    for (const stream of ["stdout", "stderr"] as const) {
      child[stream]?.on("data", (chunk: Buffer) => {
        if (tooLong !== undefined) return
        total[stream] += chunk.length
        if (total[stream] > maxOutput) {
          tooLong = stream
          child.kill("SIGKILL")
        } else output[stream].push(chunk)
      })
    }
    child.once("error", (error) => {
      if (child.pid === undefined) startError = error.message
    })
    child.once("close", (code, signal) =>
      resume(
        Effect.succeed(
          startError !== undefined
            ? RunResult.NotStarted({ reason: startError })
            : tooLong !== undefined
              ? RunResult.OutputTooLong({ stream: tooLong, limit: maxOutput })
              : RunResult.Exited({
                  exitCode: code,
                  signal,
                  stdout: Buffer.concat(output.stdout).toString("utf8"),
                  stderr: Buffer.concat(output.stderr).toString("utf8")
                })
        )
      )
    )
    return Effect.sync(() => child.kill("SIGKILL"))
  })

let commands = 0

/**
 * The pid of this process's supervisor while one runs (started by the first command, it lives as
 * long as this process does): a check for leftover child processes leaves it out.
 */
export const processId = (): number | undefined => connection?.pid

// A deputy started by another deputy's command keeps that one's markers, so the outer one's
// supervisor still finds what this one starts. They come with this process's environment: read once.
let outer: Record<string, string> | undefined
const outerMarkers = (): Record<string, string> => {
  if (outer !== undefined) return outer
  outer = {}
  for (const [name, value] of Object.entries(process.env)) {
    if (name.startsWith("DEPUTY_WATCH_") && name !== MARKER && value !== undefined) outer[name] = value
  }
  return outer
}

/** A `run` waiting for its `result` line. */
interface PendingRun {
  /** The command's pid (and group), once the supervisor said `started`. */
  pid: number | undefined
  /** Its marker's value. */
  readonly token: string
  readonly grace: Duration.Duration
  /** Its `maxOutput`. */
  readonly limit: number
  /** The longest `result` line accepted for it. */
  readonly replyBound: number
  /** Takes the result; replaced by the interruption's own when the run is stopped. */
  settle: (result: Effect.Effect<RunResult>) => void
  /** Once the supervisor is lost: ending what the command started (run by the run or its interruption). */
  cleanup?: Effect.Effect<void>
}

/** The line protocol to this process's supervisor. */
interface Connection {
  readonly pid: number
  readonly send: (line: string) => void
  /** `end` requests waiting for their `ended` line, by id. */
  readonly waiting: Map<string, () => void>
  /** `run` requests waiting for their `result` line, by id. */
  readonly runs: Map<string, PendingRun>
  /** Keeps this process alive while an answer is awaited, and only then. */
  readonly keep: () => void
}

let connection: Connection | undefined
let requests = 0
/** Why the last supervisor could not start, for the runs that find none. */
let startFailure = "unknown"

/** The longest reply line that is not a `result` (`started`, `ended`). */
const CONTROL_BOUND = 64 * 1024
/** The longest request line the supervisor reads (its REQUEST_BOUND). */
const REQUEST_BOUND = 16 * 1024 * 1024

/** This process's supervisor, started on first use (and again if it died); none on Windows or if it cannot start. */
const connect = (): Connection | undefined => {
  if (process.platform === "win32") return undefined
  if (connection !== undefined) return connection
  let child: ChildProcess.ChildProcess
  try {
    // Its own group: a terminal's Ctrl-C to deputy's group does not reach it. No env of ours (no
    // NODE_OPTIONS loaders), it needs none.
    child = ChildProcess.spawn(process.execPath, [scriptPath, `--marker=${MARKER}`], {
      stdio: ["pipe", "pipe", "inherit"],
      detached: true,
      env: {}
    })
  } catch (error) {
    startFailure = error instanceof Error ? error.message : String(error)
    return undefined
  }
  const stdin = child.stdin as Socket | null
  const stdout = child.stdout as Socket | null
  if (stdin === null || stdout === null || child.pid === undefined) {
    startFailure = "it has no pid or no pipes"
    child.once("error", () => {})
    return undefined
  }
  // Neither the supervisor nor its pipes keep deputy alive; a pending `end` or `run` does.
  child.unref()
  stdin.unref()
  stdout.unref()
  stdin.on("error", () => {})
  const current: Connection = {
    pid: child.pid,
    send: (line) => {
      if (stdin.writable) stdin.write(`${line}\n`)
    },
    waiting: new Map(),
    runs: new Map(),
    keep: () => {
      if (current.waiting.size > 0 || current.runs.size > 0) stdout.ref()
      else stdout.unref()
    }
  }
  stdout.on(
    "data",
    splitBoundedLines(
      (prefix) => {
        const id = /^result (\d+) /.exec(prefix)?.[1]
        return id === undefined ? CONTROL_BOUND : (current.runs.get(id)?.replyBound ?? CONTROL_BOUND)
      },
      (line) => reply(current, line),
      (prefix, bound) => {
        const id = /^result (\d+) /.exec(prefix)?.[1]
        const run = id === undefined ? undefined : current.runs.get(id)
        if (id === undefined || run === undefined) return
        current.runs.delete(id)
        current.keep()
        run.settle(Effect.succeed(RunResult.Lost({ reason: `the supervisor's answer is longer than ${bound} bytes` })))
      }
    )
  )
  let gone = false
  const lost = (why: string) => {
    if (connection === current) connection = undefined
    if (gone) return
    gone = true
    for (const done of current.waiting.values()) done()
    const runs = [...current.runs.values()]
    current.runs.clear()
    current.keep()
    for (const run of runs) {
      const reason = `the process supervisor (pid ${current.pid}) ${why} ${run.pid === undefined ? "before the command was known to start; anything it started was ended" : "while the command ran; what it started was ended"}`
      // Its group from here, and what carries its token by a new supervisor (`end`; its group from
      // here again if that one cannot answer): the `started` line may not have come.
      run.cleanup = Effect.uninterruptible(endCommand(run.pid ?? 0, run.token, run.grace))
      run.settle(run.cleanup.pipe(Effect.as(RunResult.Lost({ reason }))))
    }
  }
  child.once("exit", () => {
    if (connection === current) connection = undefined
  })
  // "close": the replies it wrote before it went are read first.
  child.once("close", (code, signal) => lost(signal !== null ? `was ended by ${signal}` : `exited with code ${code}`))
  child.once("error", (error) => lost(`could not run (${error.message})`))
  connection = current
  return current
}

/** Why the supervisor could not start, the last time it could not. */
const ResultLine = z.union([
  z.object({
    exit: z.number().int().nullable(),
    signal: z.string().nullable(),
    stdout: z.string(),
    stderr: z.string()
  }),
  z.object({ failed: z.literal("start"), reason: z.string() }),
  z.object({ failed: z.literal("output"), stream: z.enum(["stdout", "stderr"]) })
])

/** One reply line of the supervisor: `ended <id>`, `started <id> <pid>` or `result <id> <json>`. */
const reply = (current: Connection, line: string): void => {
  const space = line.indexOf(" ")
  const verb = line.slice(0, space)
  if (verb === "ended") {
    current.waiting.get(line.slice(space + 1))?.()
    return
  }
  const at = line.indexOf(" ", space + 1)
  const id = line.slice(space + 1, at)
  const run = current.runs.get(id)
  if (run === undefined) return
  if (verb === "started") {
    const pid = Number(line.slice(at + 1))
    if (Number.isSafeInteger(pid) && pid > 0) run.pid = pid
    return
  }
  if (verb !== "result") return
  current.runs.delete(id)
  current.keep()
  let parsed: z.infer<typeof ResultLine> | undefined
  try {
    const decoded = ResultLine.safeParse(JSON.parse(line.slice(at + 1)))
    parsed = decoded.success ? decoded.data : undefined
  } catch {
    parsed = undefined
  }
  run.settle(
    Effect.succeed(
      parsed === undefined
        ? RunResult.Lost({ reason: "the supervisor's answer is not one (not the JSON of a result)" })
        : "exit" in parsed
          ? RunResult.Exited({
              exitCode: parsed.exit,
              signal: parsed.signal,
              stdout: Buffer.from(parsed.stdout, "base64").toString("utf8"),
              stderr: Buffer.from(parsed.stderr, "base64").toString("utf8")
            })
          : parsed.failed === "start"
            ? RunResult.NotStarted({ reason: parsed.reason })
            : RunResult.OutputTooLong({ stream: parsed.stream, limit: run.limit })
    )
  )
}

const endCommand = (group: number, token: string, grace: Duration.Duration, killed = false): Effect.Effect<void> => {
  if (process.platform === "win32") return Effect.void
  const supervisor = connect()
  const inProcess = endGroup(group, grace)
  if (supervisor === undefined) return inProcess
  return Effect.async<boolean>((resume) => {
    const id = `${++requests}`
    supervisor.waiting.set(id, () => {
      supervisor.waiting.delete(id)
      supervisor.keep()
      resume(Effect.succeed(connection === supervisor))
    })
    supervisor.keep() // an `ended` line is awaited: keep deputy alive for it
    supervisor.send(`end ${id} ${group} ${token} ${Math.round(Duration.toMillis(grace))}${killed ? " killed" : ""}`)
    return Effect.sync(() => supervisor.waiting.get(id)?.())
  }).pipe(
    Effect.timeoutOption(Duration.sum(grace, REPLY_MARGIN)),
    // The supervisor died or did not answer: at least the group goes, from here.
    Effect.flatMap((answered) => (answered._tag === "Some" && answered.value ? Effect.void : inProcess))
  )
}

/** Ends process group `group` from this process: SIGTERM, SIGKILL after the grace. Never fails. */
const endGroup = (group: number, grace: Duration.Duration): Effect.Effect<void> =>
  Effect.gen(function* () {
    if (group <= 0 || !signalGroup(group, 0)) return
    signalGroup(group, "SIGTERM")
    const deadline = Date.now() + Duration.toMillis(grace)
    while (signalGroup(group, 0) && Date.now() < deadline) yield* Effect.sleep(Duration.millis(20))
    signalGroup(group, "SIGKILL")
  })

/** Sends `signal` to process group `group`; false when the group is gone. */
const signalGroup = (group: number, signal: NodeJS.Signals | 0): boolean => {
  try {
    process.kill(-group, signal)
    return true
  } catch {
    return false
  }
}
