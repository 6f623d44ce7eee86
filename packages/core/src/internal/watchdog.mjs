// deputy's watchdog: `node watchdog.mjs [--lifeline=3|0|parent:<pid>] [--grace-ms=N] -- <command> <args…>`.
//
// Plain JavaScript with no imports beyond node:, so it runs from src and from the published package
// alike (Watchdog.ts finds it). Deputy starts it as the leader of a new process group (`detached`)
// and holds the other end of a lifeline: fd 3 (default) or, with `--lifeline=0`, its stdin. With
// `--lifeline=parent:<pid>` there is no pipe: the watchdog checks every 100 ms that its parent is
// still <pid> (an orphan is re-parented when its parent dies). The command runs in the watchdog's
// own group with the watchdog's stdout and stderr (and its stdin, unless stdin is the lifeline: then
// /dev/null), so nothing is copied through this process and a signal deputy sends to the group
// reaches the command and everything it started.
//
// §33, what "everything it started" means: the command gets one more environment variable,
// `DEPUTY_WATCH_<random token>=1`, which every descendant inherits, through `setsid`, a double fork
// or a new process group alike. On Linux the watchdog finds its descendants by scanning
// /proc/*/environ for that variable (and /proc/*/stat for members of its group), so ending the
// command ends all of them: SIGTERM, then SIGKILL to whatever is left after the grace. Only a
// descendant that both clears its environment (`env -i`) and leaves the group escapes. Elsewhere
// (macOS: no /proc) only the process group is reached; see Watchdog.ts.
//
// - The command ends: whatever it left behind (group and marked descendants) gets SIGTERM, then
//   SIGKILL after the grace if still there; then the watchdog ends the way the command did (its exit
//   code, or the same signal), so deputy sees the command's own status. Nothing left: no delay.
// - The lifeline closes (deputy exited or was SIGKILLed; the kernel closes its end): SIGTERM to the
//   whole group and every marked descendant, then SIGKILL after the grace (the watchdog dies with it).
// - SIGTERM, SIGINT or SIGHUP to the watchdog: the same signal to the group and the marked
//   descendants, SIGKILL after the grace.
// - The command cannot start: one line on stderr starting `deputy-watchdog: cannot start `, exit 127.
//
// The watchdog never writes to stdout. If it finds it is not a group leader (Linux: /proc/self/stat),
// signalling its group would hit deputy, so it starts the command in a group of its own instead.
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { readdirSync, readFileSync } from "node:fs"
import { Socket } from "node:net"
import { constants } from "node:os"

const usage = "usage: watchdog.mjs [--lifeline=3|0|parent:<pid>] [--grace-ms=N] -- <command> [args…]"
const argv = process.argv.slice(2)
const separator = argv.indexOf("--")
let lifelineFd = 3 // -1: watch the parent pid instead
let parentPid = 0
let graceMs = 2000
for (const option of separator === -1 ? argv : argv.slice(0, separator)) {
  const [name, value] = option.split("=")
  if (name === "--lifeline" && (value === "3" || value === "0")) lifelineFd = Number(value)
  else if (name === "--lifeline" && /^parent:\d+$/.test(value ?? "")) {
    lifelineFd = -1
    parentPid = Number(value.slice("parent:".length))
  } else if (name === "--grace-ms" && /^\d+$/.test(value ?? "")) graceMs = Number(value)
  else fatal(`unknown option ${option}; ${usage}`)
}
const [command, ...args] = separator === -1 ? [] : argv.slice(separator + 1)
if (command === undefined) fatal(usage)

function fatal(message) {
  process.stderr.write(`deputy-watchdog: ${message}\n`)
  process.exit(125)
}

/** True unless /proc says this process does not lead its process group (other systems: trust deputy). */
const leadsGroup = () => {
  try {
    const stat = readFileSync("/proc/self/stat", "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ") // state ppid pgrp …
    return Number(fields[2]) === process.pid
  } catch {
    return true
  }
}

// Signals to ourselves land in the handlers below, so the watchdog outlives its SIGTERM to the group.
const ENDING_SIGNALS = ["SIGTERM", "SIGINT", "SIGHUP"]
for (const signal of ENDING_SIGNALS) process.on(signal, () => endGroup(signal))

// The lifeline first: without it the command must not run unwatched.
let lifeline
try {
  if (lifelineFd === 0) lifeline = process.stdin
  else if (lifelineFd === 3) lifeline = new Socket({ fd: lifelineFd, readable: true, writable: false })
} catch (error) {
  fatal(`no lifeline on fd ${lifelineFd} (${error?.message ?? error})`)
}

const leader = process.platform !== "win32" && leadsGroup()
let group // the group to signal: ours (we lead it), else the command's own
let ending = false
let lifelineLost = false
let started = false

// The marker every descendant inherits (§33). Random, so no other process carries it by chance.
const marker = `DEPUTY_WATCH_${randomBytes(16).toString("hex")}`
const markerBytes = Buffer.from(`${marker}=`)
const hasProc = process.platform === "linux" && readable("/proc/self/stat")

function readable(file) {
  try {
    readFileSync(file)
    return true
  } catch {
    return false
  }
}

/** True when an environ block (NUL-separated `NAME=value`) holds our marker. */
function marked(environ) {
  let at = environ.indexOf(markerBytes)
  while (at !== -1) {
    if (at === 0 || environ[at - 1] === 0) return true
    at = environ.indexOf(markerBytes, at + 1)
  }
  return false
}

/**
 * Linux: every running process (not this one, not a zombie) that carries the marker or belongs to
 * the command's group. A process of another user (unreadable) or one gone meanwhile is skipped.
 */
function leftovers() {
  const found = []
  let names
  try {
    names = readdirSync("/proc")
  } catch {
    return found
  }
  const groupId = group === undefined ? undefined : -group
  for (const name of names) {
    if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue
    const pid = Number(name)
    if (pid === process.pid) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "latin1")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ") // state ppid pgrp …
      if (fields[0] === "Z" || fields[0] === "X") continue
      if (Number(fields[2]) === groupId || marked(readFileSync(`/proc/${name}/environ`))) found.push(pid)
    } catch {
      // gone, or not ours to read
    }
  }
  return found
}

function signalGroup(signal) {
  if (group === undefined) return
  try {
    process.kill(group, signal)
  } catch {
    // the group is gone
  }
}

function signalAll(pids, signal) {
  for (const pid of pids) {
    try {
      process.kill(pid, signal)
    } catch {
      // gone meanwhile
    }
  }
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

let terminating
/**
 * Ends the group and every marked descendant: `signal`, then, for what is still there after the
 * grace, SIGKILL. Resolves once nothing is left (Linux), or at once after the first signal elsewhere
 * when `wait` is false (no /proc: nothing to wait on but the group, which may hold this process).
 */
function terminate(signal, wait) {
  terminating ??= (async () => {
    signalGroup(signal)
    if (!hasProc) {
      if (wait) {
        await pause(graceMs)
        signalGroup("SIGKILL") // kills the watchdog too when it leads the group
      }
      return
    }
    let left = leftovers()
    signalAll(left, signal) // those outside the group: `setsid`, their own group, re-parented
    const deadline = Date.now() + graceMs
    let step = 5
    while (left.length > 0 && Date.now() < deadline) {
      await pause(Math.min(step, Math.max(1, deadline - Date.now())))
      step = Math.min(step * 2, 50)
      left = leftovers()
    }
    // SIGKILL one by one (never our own group as a whole: the watchdog must live to report the
    // command's status); a process forked meanwhile shows up on the next scan.
    for (let round = 0; left.length > 0 && round < 100; round++) {
      signalAll(left, "SIGKILL")
      await pause(5)
      left = leftovers()
    }
  })()
  return terminating
}

function endGroup(signal) {
  if (ending) return
  ending = true
  terminate(signal, true).then(async () => {
    // The command is gone too (it was in the group, and marked): report how it ended, unless
    // nobody is left to read it.
    if (started && !lifelineLost) report(await Promise.race([exited, pause(1000)]))
    signalGroup("SIGKILL") // kills the watchdog too when it leads the group
    process.exit(137)
  })
}

/** Ends the watchdog the way the command ended (its code, or the same signal). */
function report(status) {
  if (status === undefined) return
  if (status.signal !== null) {
    for (const name of ENDING_SIGNALS) process.removeAllListeners(name)
    process.kill(process.pid, status.signal)
    process.exit(128 + (constants.signals[status.signal] ?? 0))
  }
  process.exit(status.code ?? 128)
}

function cannotStart(error) {
  process.stderr.write(`deputy-watchdog: cannot start ${command}: ${error?.message ?? error}\n`)
  process.exit(127)
}

let child
try {
  child = spawn(command, args, {
    stdio: [lifelineFd === 0 ? "ignore" : "inherit", "inherit", "inherit"],
    detached: !leader,
    env: { ...process.env, [marker]: "1" }
  })
} catch (error) {
  cannotStart(error)
}
// spawn() has made the process (or failed) by now; signals and the lifeline are only seen later.
if (child.pid !== undefined) group = leader ? -process.pid : -child.pid
const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })))
child.once("spawn", () => {
  started = true
})
child.once("error", (error) => {
  if (!started) cannotStart(error)
})
exited.then((status) => {
  if (!started || ending) return // the "error" event, or endGroup, reports it
  // Whatever the command left running (in its group or marked) ends before we report its status.
  terminate("SIGTERM", false).then(() => {
    if (!ending) report(status)
  })
})

function onLifelineLost() {
  if (lifelineLost) return
  lifelineLost = true
  endGroup("SIGTERM")
}
if (lifeline === undefined) {
  const watchParent = () => {
    if (process.ppid !== parentPid) onLifelineLost()
    else setTimeout(watchParent, 100).unref() // the command's handle keeps the watchdog alive
  }
  watchParent()
} else {
  lifeline.on("data", () => {}) // nothing is sent on it; reading is how its end shows
  for (const event of ["end", "close", "error"]) lifeline.once(event, onLifelineLost)
}
