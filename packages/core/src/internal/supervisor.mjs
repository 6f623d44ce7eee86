// deputy's supervisor: `node supervisor.mjs --marker=DEPUTY_WATCH_<token>`, one per deputy process.
//
// Plain JavaScript with no imports beyond node:, so it runs from src and from the published package
// alike (ProcessSupervisor.ts finds it). Deputy starts it once, in a process group of its own, and keeps
// its stdin open for its whole life: that pipe is the lifeline, and also carries requests. Deputy
// spawns every command itself (a plain `spawn`, detached: the command leads a new process group)
// with one more environment variable, `<marker>=<command token>`, which every descendant inherits,
// through `setsid`, a double fork or a new process group alike (§33). This process never sees the
// commands' output; it only finds and ends what they leave behind.
//
// Requests, one per line on stdin:
// - `watch <pgid>`: a command's group, ended with everything else if deputy goes.
// - `end <id> <pgid> <token> <grace ms>`: end what is left of a command: its group and every process
//   whose marker is `<token>` get SIGTERM, whatever is still there after the grace SIGKILL; then one
//   line `ended <id>` on stdout. The group is no longer watched.
// The lifeline closes (deputy exited or was SIGKILLed; the kernel closes its end), or SIGTERM:
// every watched group and every process carrying the marker (any token) gets SIGTERM, SIGKILL after
// the longest grace seen (default 2 s), then the supervisor exits.
//
// Linux finds processes by scanning /proc (`environ` for the marker; `stat` for a group's members,
// only while the group exists); one scan serves every pending `end`, so many commands ending at once
// cost one pass. Without /proc (macOS)
// only the group is reached, tested with `kill(-pgid, 0)`. Never writes anything but `ended` lines.
import { readdirSync, readFileSync } from "node:fs"

const options = Object.fromEntries(process.argv.slice(2).map((option) => option.replace(/^--/, "").split("=")))
const marker = options.marker
if (!/^DEPUTY_WATCH_[0-9a-f]{32}$/.test(marker ?? "")) {
  process.stderr.write(`deputy-supervisor: expected --marker=DEPUTY_WATCH_<32 hex digits>, got ${marker}\n`)
  process.exit(125)
}
const markerBytes = Buffer.from(`${marker}=`)
const hasProc = process.platform === "linux" && readable("/proc/self/stat")
const DEFAULT_GRACE = 2000

function readable(file) {
  try {
    readFileSync(file)
    return true
  } catch {
    return false
  }
}

/** The marker's value in an environ block (NUL-separated `NAME=value`), or undefined. */
function markerValue(environ) {
  let at = environ.indexOf(markerBytes)
  while (at !== -1 && at !== 0 && environ[at - 1] !== 0) at = environ.indexOf(markerBytes, at + 1)
  if (at === -1) return undefined
  const start = at + markerBytes.length
  const end = environ.indexOf(0, start)
  return environ.toString("latin1", start, end === -1 ? environ.length : end)
}

const pids = () => {
  try {
    return readdirSync("/proc").filter((name) => name.charCodeAt(0) >= 48 && name.charCodeAt(0) <= 57)
  } catch {
    return []
  }
}

/**
 * Every running process that carries the marker, as { pid, token }; Linux only. Reading environ
 * alone is the cheap part of a scan (a zombie's is empty, another user's unreadable); `stat` is read
 * only for groups that still exist (`groupMembers`).
 */
function marked() {
  const found = []
  for (const name of pids()) {
    const pid = Number(name)
    if (pid === process.pid) continue
    try {
      const token = markerValue(readFileSync(`/proc/${name}/environ`))
      if (token !== undefined) found.push({ pid, token })
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found
}

/** True while process group `pgid` has a member that runs (Linux: not only zombies). */
function groupRuns(pgid) {
  if (pgid <= 0 || !signal(-pgid, 0)) return false
  if (!hasProc) return true
  for (const name of pids()) {
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "latin1")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ") // state ppid pgrp …
      if (Number(fields[2]) === pgid && fields[0] !== "Z" && fields[0] !== "X") return true
    } catch {
      // gone meanwhile
    }
  }
  return false
}

function signal(target, name) {
  try {
    process.kill(target, name)
    return true
  } catch {
    return false // gone
  }
}

const watched = new Set() // pgids
/** Pending work: id → { pgid, matches(marked process), deadline, termed, reply }. One pass serves them all. */
const pending = new Map()
let longestGrace = DEFAULT_GRACE
let ending = false
let scheduled
let step = 1

const job = (pgid, matches, graceMs, reply) => ({
  pgid,
  matches,
  deadline: Date.now() + graceMs,
  termed: false,
  reply
})

/** One pass: every pending job checks what is left of it in the same scan; SIGTERM first, SIGKILL past the grace. */
function pass() {
  scheduled = undefined
  const processes = hasProc ? marked() : []
  const now = Date.now()
  for (const [id, work] of pending) {
    const left = processes.filter(work.matches)
    if (left.length === 0 && !groupRuns(work.pgid)) {
      pending.delete(id)
      watched.delete(work.pgid)
      if (work.reply) process.stdout.write(`ended ${id}\n`)
      continue
    }
    const name = !work.termed ? "SIGTERM" : now >= work.deadline ? "SIGKILL" : undefined
    work.termed = true
    if (name === undefined) continue
    if (work.pgid > 0) signal(-work.pgid, name)
    for (const p of left) signal(p.pid, name)
  }
  if (ending && pending.size === 0) process.exit(0)
  step = Math.min(step * 2, 50)
  if (pending.size > 0) schedule(step)
}

/**
 * The next pass: right after the requests read in this chunk (a microtask, so those that arrive
 * together share one scan), else after `ms`.
 */
function schedule(ms) {
  if (ms === 0) {
    if (scheduled?.immediate) return
    clearTimeout(scheduled?.timer)
    scheduled = { immediate: true }
    queueMicrotask(pass)
  } else if (scheduled === undefined) scheduled = { timer: setTimeout(pass, ms) }
}

function request(line) {
  const [verb, ...args] = line.trim().split(" ")
  if (ending) return
  if (verb === "watch" && /^\d+$/.test(args[0] ?? "")) watched.add(Number(args[0]))
  else if (verb === "end" && args.length === 4 && /^\d+$/.test(args[1]) && /^\d+$/.test(args[3])) {
    const [id, group, token, grace] = args
    const pgid = Number(group)
    longestGrace = Math.max(longestGrace, Number(grace))
    pending.set(
      id,
      job(pgid, (p) => p.token === token, Number(grace), true)
    )
    step = 1
    schedule(0)
  } else if (line.trim() !== "") process.stderr.write(`deputy-supervisor: ignored request ${JSON.stringify(line)}\n`)
}

/** Deputy is gone (or asks us to go): end every watched group and every marked process, then exit. */
function endAll() {
  if (ending) return
  ending = true
  pending.clear()
  for (const pgid of watched)
    pending.set(
      `group-${pgid}`,
      job(pgid, () => false, longestGrace, false)
    )
  pending.set(
    "marked",
    job(0, (p) => p.token !== undefined, longestGrace, false)
  )
  step = 1
  schedule(0)
}

// A terminal's Ctrl-C or hang-up is for deputy, which ends its commands itself.
process.on("SIGINT", () => {})
process.on("SIGHUP", () => {})
process.on("SIGTERM", endAll)

let buffered = ""
process.stdin.setEncoding("utf8")
process.stdin.on("data", (chunk) => {
  buffered += chunk
  let newline = buffered.indexOf("\n")
  while (newline !== -1) {
    request(buffered.slice(0, newline))
    buffered = buffered.slice(newline + 1)
    newline = buffered.indexOf("\n")
  }
})
for (const event of ["end", "close", "error"]) process.stdin.once(event, endAll)
process.stdout.on("error", () => {}) // deputy gone: nobody reads the replies
