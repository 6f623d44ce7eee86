/**
 * No orphans, at the cost of a plain `spawn` (§33). Deputy starts every child process itself, as the
 * leader of a new process group (`detached`), with one more environment variable,
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
 * Guaranteed on Linux: every descendant that keeps the marker in its environment, and every member of
 * the group. Not guaranteed: a process that clears its environment (`env -i`) and also leaves the
 * group, or one of another user (its environ is unreadable). A deputy run by a command of another
 * deputy keeps the outer marker too, so the outer one reaches the inner one's commands. Without /proc
 * (macOS) only the group is reached. (A cgroup would be the stronger Linux tool, but deputy cannot
 * count on a writable one, and PR_SET_CHILD_SUBREAPER needs a native addon.) If the supervisor cannot
 * start or dies, `end` still ends the command's group from this process (SIGTERM, SIGKILL after the
 * grace), and the next command starts a new supervisor.
 *
 * Finding the script: it lives in `src/internal/supervisor.mjs`, which the package publishes (its
 * `files` has `src`), found as `../src/internal/supervisor.mjs` relative to this module, a path that
 * holds from `src/Supervisor.ts` (tests, tsx) and from `dist/Supervisor.js` alike. A bundler that
 * moves this module must copy the script and set `DEPUTY_SUPERVISOR` to its path.
 *
 * On Windows (no process groups) commands run as they are and `end` does nothing.
 */
import * as ChildProcess from "node:child_process"
import { randomBytes } from "node:crypto"
import type { Socket } from "node:net"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { Duration, Effect } from "effect"

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
    end: Effect.suspend(() => endCommand(group, token, grace))
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
): { readonly child: ChildProcess.ChildProcess; readonly end: Effect.Effect<void> } => {
  const { env, grace, ...spawnOptions } = options
  const supervision = supervise(env ?? {}, grace === undefined ? {} : { grace })
  const child = ChildProcess.spawn(command, [...args], {
    ...spawnOptions,
    env: supervision.env,
    detached: process.platform !== "win32"
  })
  if (child.pid !== undefined) supervision.watch(child.pid)
  return { child, end: supervision.end }
}

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

/** The line protocol to this process's supervisor. */
interface Connection {
  readonly pid: number
  readonly send: (line: string) => void
  /** `end` requests waiting for their `ended` line, by id. */
  readonly waiting: Map<string, () => void>
  readonly stdout: Socket
}

let connection: Connection | undefined
let requests = 0

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
  } catch {
    return undefined
  }
  const stdin = child.stdin as Socket | null
  const stdout = child.stdout as Socket | null
  if (stdin === null || stdout === null || child.pid === undefined) return undefined
  // Neither the supervisor nor its pipes keep deputy alive; a pending `end` does (see `waitFor`).
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
    stdout
  }
  createInterface({ input: stdout }).on("line", (line) => {
    const id = line.startsWith("ended ") ? line.slice("ended ".length) : undefined
    if (id !== undefined) current.waiting.get(id)?.()
  })
  const lost = () => {
    if (connection === current) connection = undefined
    for (const done of current.waiting.values()) done()
  }
  child.once("exit", lost)
  child.once("error", lost)
  connection = current
  return current
}

const endCommand = (group: number, token: string, grace: Duration.Duration): Effect.Effect<void> => {
  if (process.platform === "win32") return Effect.void
  const supervisor = connect()
  const inProcess = endGroup(group, grace)
  if (supervisor === undefined) return inProcess
  return Effect.async<boolean>((resume) => {
    const id = `${++requests}`
    supervisor.waiting.set(id, () => {
      supervisor.waiting.delete(id)
      if (supervisor.waiting.size === 0) supervisor.stdout.unref()
      resume(Effect.succeed(connection === supervisor))
    })
    supervisor.stdout.ref() // an `ended` line is awaited: keep deputy alive for it
    supervisor.send(`end ${id} ${group} ${token} ${Math.round(Duration.toMillis(grace))}`)
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
