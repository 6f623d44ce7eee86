/**
 * No orphans: every child process deputy starts runs under a watchdog, `node watchdog.mjs -- <command>
 * <args…>` (internal/watchdog.mjs). Deputy starts the watchdog as the leader of a new process group
 * (`detached`) and keeps one end of a lifeline, a pipe the watchdog reads; the command runs in the
 * watchdog's group, sharing its stdout and stderr (and stdin). So:
 *
 * - a signal deputy sends to the group (`process.kill(-pid, signal)`, what @effect/platform's Command
 *   and the backends already do) reaches the command and everything it started, SIGKILL included;
 * - when deputy dies in any way, even SIGKILL, the kernel closes deputy's end of the lifeline and the
 *   watchdog ends the command and all its descendants: SIGTERM, then SIGKILL after a grace (default 2 s);
 * - SIGTERM, SIGINT or SIGHUP to the watchdog alone ends them the same way;
 * - the watchdog exits as the command did (its code, or the same signal), but first ends whatever the
 *   command left running (SIGTERM, SIGKILL after the grace), so it outlives a leftover by at most the grace;
 * - a command that cannot start gives exit code 127 and one stderr line starting with
 *   `SPAWN_FAILED_PREFIX` (`spawnFailure` recognises it).
 *
 * §33, descendants that leave the group: the command runs with one more environment variable,
 * `DEPUTY_WATCH_<random token>=1`, that its descendants inherit. On Linux the watchdog finds them by
 * scanning /proc (`environ` for the marker, `stat` for the group), so a descendant that ignores SIGTERM,
 * backgrounds itself, moves to another process group or calls `setsid` still gets SIGTERM and then
 * SIGKILL. Guaranteed on Linux: every descendant that keeps the marker in its environment, and every
 * member of the group. Not guaranteed: a process that clears its environment (`env -i`) and also leaves
 * the group, or one of another user (its environ is unreadable). Nested watchdogs add their own
 * marker and keep the outer ones, so an outer watchdog reaches an inner one's commands too.
 * On macOS and other systems without /proc, only the process group is reached: a descendant that
 * calls `setsid` or `setpgid` escapes, and the watchdog does not wait for leftovers after its command
 * ends (SIGTERM only); on a lost lifeline or a signal it still sends SIGKILL to the group after the grace.
 * (A cgroup would be the stronger Linux tool, but deputy cannot count on a writable one, and
 * PR_SET_CHILD_SUBREAPER needs a native addon.) Deputy's own escalation (scripted exec, the codex
 * app-server) waits the grace plus 1 s before its SIGKILL to the group, so the watchdog, which dies
 * with its group, has swept first.
 *
 * The lifeline is fd 3 (`lifeline: "fd3"`, the default; the command keeps its stdin), or the
 * watchdog's stdin (`lifeline: "stdin"`; the command reads /dev/null), or no pipe at all
 * (`lifeline: "parent"`: the watchdog checks every 100 ms that deputy is still its parent; the
 * command keeps its stdin). The last two are for spawners that cannot open a fourth fd, such as
 * @effect/platform's Command; "parent" notices a death up to 100 ms later and, unlike the pipes,
 * cannot be ended on purpose.
 *
 * Finding the script: it lives in `src/internal/watchdog.mjs`, which the package publishes (its
 * `files` has `src`), and is found as `../src/internal/watchdog.mjs` relative to this module, a path
 * that holds both from `src/Watchdog.ts` (tests, tsx) and from `dist/Watchdog.js`. A bundler that
 * moves this module must copy the script and set `DEPUTY_WATCHDOG` to its path.
 *
 * On Windows (no process groups, no inherited fds) `wrap` returns the command unchanged.
 * The cost is one extra Node start per child: spawning `true` to its exit took a median 1.6 ms
 * directly and 76 ms under the watchdog on a 2-core box where `node -e 0` takes 62 ms.
 */
import * as ChildProcess from "node:child_process"
import { fileURLToPath } from "node:url"
import { Command } from "@effect/platform"
import { Duration, Option } from "effect"

/** The watchdog script: `DEPUTY_WATCHDOG` if set, else `src/internal/watchdog.mjs` of this package. */
export const scriptPath: string =
  process.env.DEPUTY_WATCHDOG !== undefined && process.env.DEPUTY_WATCHDOG !== ""
    ? process.env.DEPUTY_WATCHDOG
    : fileURLToPath(new URL("../src/internal/watchdog.mjs", import.meta.url))

/** The start of the one stderr line a watchdog writes when its command cannot start (exit code 127). */
export const SPAWN_FAILED_PREFIX = "deputy-watchdog: cannot start "
/** The exit code of a watchdog whose command could not start. */
export const SPAWN_FAILED_EXIT = 127

/** How a command is watched. */
export interface WrapOptions {
  /**
   * `fd3` (default): the lifeline is fd 3 (spawn with `wrapped.stdio(...)`) and the command gets the
   * watchdog's stdin. `stdin`: the watchdog's stdin is the lifeline (keep it open, write nothing) and
   * the command reads /dev/null. `parent`: no pipe; the watchdog polls that this process is still
   * its parent (spawn it from this process), and the command gets the watchdog's stdin.
   */
  readonly lifeline?: "fd3" | "stdin" | "parent"
  /** How long the command's group gets between SIGTERM and SIGKILL when the watchdog ends it. Default 2 s. */
  readonly grace?: Duration.DurationInput
}

/** What to spawn instead of the command. */
export interface Wrapped {
  /** `process.execPath` (the command itself when not watched). */
  readonly command: string
  readonly args: ReadonlyArray<string>
  /** False on Windows, where the command runs as it is. */
  readonly watched: boolean
  /**
   * The `stdio` option for node:child_process.spawn: the given three (default all `"pipe"`), plus a
   * `"pipe"` on fd 3 for an `fd3` lifeline. Spawn with `detached: true` as well.
   */
  readonly stdio: (
    stdio?: readonly [ChildProcess.IOType | "ipc", ChildProcess.IOType, ChildProcess.IOType]
  ) => ChildProcess.StdioOptions
}

const graceMillis = (grace: Duration.DurationInput | undefined) =>
  grace === undefined ? 2000 : Math.max(0, Math.round(Duration.toMillis(Duration.decode(grace))))

/**
 * The argv that runs `command args…` under the watchdog. Pure: it starts nothing. Spawn the result
 * `detached` (its own process group) with `stdio: wrapped.stdio([...])`, keep the fd 3 pipe (or, with
 * `lifeline: "stdin"`, the stdin pipe) open and unwritten for the child's life, and signal the group
 * (`process.kill(-child.pid, signal)`) as before.
 */
export const wrap = (command: string, args: ReadonlyArray<string>, options: WrapOptions = {}): Wrapped => {
  if (process.platform === "win32") {
    return { command, args, watched: false, stdio: (stdio = ["pipe", "pipe", "pipe"]) => [...stdio] }
  }
  const lifeline = options.lifeline ?? "fd3"
  return {
    command: process.execPath,
    args: [
      scriptPath,
      `--lifeline=${lifeline === "fd3" ? 3 : lifeline === "stdin" ? 0 : `parent:${process.pid}`}`,
      `--grace-ms=${graceMillis(options.grace)}`,
      "--",
      command,
      ...args
    ],
    watched: true,
    stdio: (stdio = ["pipe", "pipe", "pipe"]) => (lifeline === "fd3" ? [...stdio, "pipe"] : [...stdio])
  }
}

/**
 * node:child_process.spawn of `command args…` under the watchdog with an fd 3 lifeline, `detached`.
 * `stdio` gives fds 0–2 (default all pipes). The returned child's `pid` leads the group that holds
 * the command: `process.kill(-child.pid, signal)` reaches all of it. The lifeline is `child.stdio[3]`;
 * it is read and its errors ignored here. Destroying it ends the command's group (grace, then kill).
 */
export const spawn = (
  command: string,
  args: ReadonlyArray<string>,
  options: Omit<ChildProcess.SpawnOptions, "stdio" | "detached"> &
    Omit<WrapOptions, "lifeline"> & {
      readonly stdio?: readonly [ChildProcess.IOType | "ipc", ChildProcess.IOType, ChildProcess.IOType]
    } = {}
): ChildProcess.ChildProcess => {
  const { stdio, grace, ...spawnOptions } = options
  const wrapped = wrap(command, args, grace === undefined ? {} : { grace })
  const child = ChildProcess.spawn(wrapped.command, [...wrapped.args], {
    ...spawnOptions,
    stdio: wrapped.stdio(stdio),
    detached: process.platform !== "win32"
  })
  const lifeline = child.stdio[3]
  if (lifeline !== undefined && lifeline !== null) {
    lifeline.on("error", () => {}) // the watchdog exiting resets it; nothing to report
    if ("resume" in lifeline) lifeline.resume() // a duplex socket: read its end, never keep data
  }
  return child
}

/**
 * `command args…` under the watchdog as an @effect/platform Command, which already starts it
 * `detached` and signals its group. By default stdin is the lifeline, so the command reads
 * /dev/null (like `Command.stdin(Stream.empty)`): leave the Command's stdin at its default `"pipe"`
 * and feed it nothing, as its end closing is what tells the watchdog deputy is gone. A command that
 * needs its stdin takes `lifeline: "parent"` and gets the Command's stdin as it is.
 */
export const command = (
  program: string,
  args: ReadonlyArray<string>,
  options: Omit<WrapOptions, "lifeline"> & { readonly lifeline?: "stdin" | "parent" } = {}
): Command.Command => {
  const wrapped = wrap(program, args, { ...options, lifeline: options.lifeline ?? "stdin" })
  return Command.make(wrapped.command, ...wrapped.args)
}

/**
 * The reason, when a watched command's result says it could not start (exit code 127 and the
 * watchdog's stderr line); none for any other result, a command's own 127 included.
 */
export const spawnFailure = (exitCode: number | null, stderr: string): Option.Option<string> => {
  if (exitCode !== SPAWN_FAILED_EXIT || !stderr.startsWith(SPAWN_FAILED_PREFIX)) return Option.none()
  return Option.some(stderr.slice("deputy-watchdog: ".length).trimEnd())
}
