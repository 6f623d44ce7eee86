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
// - The command ends: whatever it left behind in the group gets SIGTERM, and the watchdog ends the
//   same way (its exit code, or the same signal), so deputy sees the command's own status.
// - The lifeline closes (deputy exited or was SIGKILLed; the kernel closes its end): SIGTERM to the
//   whole group, then SIGKILL after the grace (the watchdog dies with it). Nothing outlives deputy.
// - SIGTERM, SIGINT or SIGHUP to the watchdog: the same signal to the group, SIGKILL after the grace.
// - The command cannot start: one line on stderr starting `deputy-watchdog: cannot start `, exit 127.
//
// The watchdog never writes to stdout. If it finds it is not a group leader (Linux: /proc/self/stat),
// signalling its group would hit deputy, so it starts the command in a group of its own instead.
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
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

function signalGroup(signal) {
  if (group === undefined) return
  try {
    process.kill(group, signal)
  } catch {
    // the group is gone
  }
}

function endGroup(signal) {
  if (ending) return
  ending = true
  signalGroup(signal)
  setTimeout(() => {
    signalGroup("SIGKILL") // kills the watchdog too when it leads the group
    process.exit(137)
  }, graceMs).unref()
}

function cannotStart(error) {
  process.stderr.write(`deputy-watchdog: cannot start ${command}: ${error?.message ?? error}\n`)
  process.exit(127)
}

let child
try {
  child = spawn(command, args, {
    stdio: [lifelineFd === 0 ? "ignore" : "inherit", "inherit", "inherit"],
    detached: !leader
  })
} catch (error) {
  cannotStart(error)
}
child.once("spawn", () => {
  started = true
  group = leader ? -process.pid : -child.pid
  if (lifelineLost) signalGroup("SIGTERM") // lost before the command started: the grace timer runs already
})
child.once("error", (error) => {
  if (!started) cannotStart(error)
})
child.once("exit", (code, signal) => {
  if (!started) return // the "error" event reports it
  if (lifelineLost) {
    // Deputy is gone and nobody reads our status: nothing in the group may survive.
    signalGroup("SIGKILL")
    process.exit(137)
  }
  signalGroup("SIGTERM") // whatever the command left running in its group
  if (signal !== null) {
    for (const name of ENDING_SIGNALS) process.removeAllListeners(name)
    process.kill(process.pid, signal)
    process.exit(128 + (constants.signals[signal] ?? 0))
  }
  process.exit(code ?? 128)
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
