// deputy's supervisor: `node supervisor.mjs --marker=DEPUTY_WATCH_<token>`, one per deputy process.
//
// Plain JavaScript with no imports beyond node:, so it runs from src and from the published package
// alike (ProcessSupervisor.ts finds it). Deputy starts it once, in a process group of its own, and keeps
// its stdin open for its whole life: that pipe is the lifeline, and also carries requests. Every
// command runs as the leader of a new process group (detached) with one more environment variable,
// `<marker>=<command token>`, which every descendant inherits, through `setsid`, a double fork or a new
// process group alike (§33). A command whose output deputy gathers (a scripted `exec`) is spawned here
// (`run`), so deputy's big process never forks for it; one deputy streams from (Codex) deputy spawns
// itself and only tells this process about it (`watch`, `end`).
//
// Requests, one per line on stdin, each at most REQUEST_BOUND bytes (a longer one is dropped; a `run`
// is answered with a failed start):
// - `watch <pgid>`: a command's group, ended with everything else if deputy goes.
// - `end <id> <pgid> <token> <grace ms>`: end what is left of a command: its group and every process
//   whose marker is `<token>` get SIGTERM, whatever is still there after the grace SIGKILL; then one
//   line `ended <id>` on stdout. The group is no longer watched.
//   `end <id> <pgid> <token> <grace ms> killed`: the same, after deputy SIGKILLed the group itself:
//   nothing in it can run any more, so the group is neither signalled nor scanned for (zombies that
//   nobody reaps can keep a group in being, and finding that out reads every process's state); only
//   the processes whose marker is `<token>` are looked for.
// - `run <id> <json>`: json is { argv: [program, ...args], cwd, env, token, max, grace }; spawn it
//   here, detached, with stdin on /dev/null and exactly `env` (deputy has put the markers in), and
//   answer `started <id> <pid>` once it runs. Its stdout and stderr are gathered up to `max` bytes
//   each; past that the group gets SIGKILL. Once it has exited and its pipes closed, what is left of it
//   is ended as by `end` (grace `grace` ms), then one line `result <id> <json>`: { exit, signal,
//   stdout, stderr } (output base64), or { failed: "start", reason } (nothing ran), or
//   { failed: "output", stream } (it printed past `max`).
// - `stop <id>`: the run's group gets SIGTERM, SIGKILL after its grace; once it has exited, what is
//   left is ended as above (its pipes need not close: a process that left the group and cleared the
//   marker may hold them), then its `result` line.
// The lifeline closes (deputy exited or was SIGKILLed; the kernel closes its end), or SIGTERM:
// every watched group (runs included) and every process carrying the marker (any token) gets SIGTERM,
// SIGKILL after the longest grace seen (default 2 s), then the supervisor exits.
//
// Linux finds processes by scanning /proc (`environ` for the marker; `stat` for a group's members,
// only while the group exists); one scan serves every pending `end`, so many commands ending at once
// cost one pass. Without /proc (macOS)
// only the group is reached, tested with `kill(-pgid, 0)`. Never writes anything but the reply lines
// above, gathered per turn of the event loop into one write.
import { spawn } from "node:child_process"
import { closeSync, openSync, readdirSync, readFileSync, readSync } from "node:fs"

const options = Object.fromEntries(process.argv.slice(2).map((option) => option.replace(/^--/, "").split("=")))
const marker = options.marker
if (!/^DEPUTY_WATCH_[0-9a-f]{32}$/.test(marker ?? "")) {
  process.stderr.write(`deputy-supervisor: expected --marker=DEPUTY_WATCH_<32 hex digits>, got ${marker}\n`)
  process.exit(125)
}
const markerBytes = Buffer.from(`${marker}=`)
const hasProc = process.platform === "linux" && readable("/proc/self/stat")
const DEFAULT_GRACE = 2000
/** The longest request line read; a longer one is dropped (ProcessSupervisor.ts sends none longer). */
const REQUEST_BOUND = 16 * 1024 * 1024

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
      const token = markerValue(environOf(name))
      if (token !== undefined) found.push({ pid, token })
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found
}

// One buffer for every environ read: a scan reads one per process, every time a command ends, and
// readFileSync's allocation, fstat and second read were a third of a scan's CPU.
let environBuffer = Buffer.allocUnsafe(64 * 1024)

/** The environ block of process `name`, in a buffer valid until the next call; throws if unreadable. */
function environOf(name) {
  const fd = openSync(`/proc/${name}/environ`, "r")
  try {
    let size = 0
    for (;;) {
      const read = readSync(fd, environBuffer, size, environBuffer.length - size, null)
      if (read === 0) break
      size += read
      if (size === environBuffer.length) {
        const bigger = Buffer.allocUnsafe(environBuffer.length * 2)
        environBuffer.copy(bigger)
        environBuffer = bigger
      }
    }
    return environBuffer.subarray(0, size)
  } finally {
    closeSync(fd)
  }
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
/** Pending work: key → { pgid, matches(marked process), deadline, termed, done() }. One pass serves them all. */
const pending = new Map()
/** Commands run here, by deputy's id: see `run`. */
const runs = new Map()
let longestGrace = DEFAULT_GRACE
let ending = false
let scheduled
let step = 1

const job = (pgid, matches, graceMs, done, groupKilled = false) => ({
  pgid,
  matches,
  deadline: Date.now() + graceMs,
  termed: false,
  done,
  groupKilled
})

/** One pass: every pending job checks what is left of it in the same scan; SIGTERM first, SIGKILL past the grace. */
function pass() {
  scheduled = undefined
  const processes = hasProc ? marked() : []
  const now = Date.now()
  for (const [key, work] of pending) {
    const left = processes.filter(work.matches)
    if (left.length === 0 && (work.groupKilled || !groupRuns(work.pgid))) {
      pending.delete(key)
      watched.delete(work.pgid)
      work.done?.()
      continue
    }
    const name = !work.termed ? "SIGTERM" : now >= work.deadline ? "SIGKILL" : undefined
    work.termed = true
    if (name === undefined) continue
    if (work.pgid > 0 && !work.groupKilled) signal(-work.pgid, name)
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

/** Ends what is left of command `token` in group `pgid` (see `end`; `groupKilled`: see `end … killed`), then calls `done`. */
function sweep(key, pgid, token, graceMs, done, groupKilled = false) {
  longestGrace = Math.max(longestGrace, graceMs)
  pending.set(
    key,
    job(pgid, (p) => p.token === token, graceMs, done, groupKilled)
  )
  step = 1
  schedule(0)
}

// Replies go out together, once per turn of the event loop: a pipe write is a system call.
let replies = []
function reply(line) {
  if (replies.length === 0) setImmediate(flush)
  replies.push(line)
}
function flush() {
  const lines = replies
  replies = []
  if (!ending) process.stdout.write(`${lines.join("\n")}\n`)
}

const isStrings = (value) => Array.isArray(value) && value.every((item) => typeof item === "string")
const isCount = (value) => Number.isSafeInteger(value) && value >= 0

/** Why a `run` request's body is not one, or undefined when it is. */
function invalid(body) {
  if (body === null || typeof body !== "object") return "the request is not a JSON object"
  if (!isStrings(body.argv) || body.argv.length === 0) return "argv is not a non-empty list of strings"
  if (typeof body.cwd !== "string") return "cwd is not a string"
  if (body.env === null || typeof body.env !== "object" || !Object.values(body.env).every((v) => typeof v === "string"))
    return "env is not an object of strings"
  if (typeof body.token !== "string" || !/^[A-Za-z0-9]+$/.test(body.token)) return "token is not alphanumeric"
  if (!isCount(body.max) || body.max === 0) return "max is not a positive integer"
  if (!isCount(body.grace)) return "grace is not a count of milliseconds"
  return undefined
}

/** Runs a command for deputy and answers its result; see the header. */
function run(id, text) {
  if (runs.has(id)) return
  let body
  try {
    body = JSON.parse(text)
  } catch {
    body = undefined
  }
  const bad = invalid(body)
  if (bad !== undefined) {
    reply(`result ${id} ${JSON.stringify({ failed: "start", reason: `bad request to the supervisor: ${bad}` })}`)
    return
  }
  const { argv, cwd, env, token, max, grace } = body
  let child
  try {
    child = spawn(argv[0], argv.slice(1), { cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] })
  } catch (error) {
    // node refuses some values before any process exists (a NUL byte)
    reply(`result ${id} ${JSON.stringify({ failed: "start", reason: error?.message ?? String(error) })}`)
    return
  }
  const state = {
    pgid: 0,
    grace,
    output: { stdout: [], stderr: [] },
    tooLong: undefined,
    stopped: false,
    sweeping: false,
    killTimer: undefined,
    settle: () => {}
  }
  runs.set(id, state)
  let answered = false
  let exit
  let closed = false
  const answer = (result) => {
    if (answered) return
    answered = true
    runs.delete(id)
    child.stdout?.destroy()
    child.stderr?.destroy()
    reply(`result ${id} ${JSON.stringify(result)}`)
  }
  const result = () =>
    state.tooLong !== undefined
      ? { failed: "output", stream: state.tooLong }
      : {
          exit: exit?.code ?? null,
          signal: exit?.signal ?? null,
          stdout: Buffer.concat(state.output.stdout).toString("base64"),
          stderr: Buffer.concat(state.output.stderr).toString("base64")
        }
  /** Ends what is left once it exited and its pipes closed (or it was stopped), then answers. */
  state.settle = () => {
    if (state.sweeping || answered || exit === undefined || !(closed || state.stopped)) return
    state.sweeping = true
    clearTimeout(state.killTimer)
    sweep(`run-${id}`, state.pgid, token, grace, () => answer(result()))
  }
  child.once("error", (error) => {
    // It could not start (no such program, or no such cwd: node says ENOENT for both); or a later
    // error of a running child (a failed kill), which changes nothing here.
    if (state.pgid === 0) answer({ failed: "start", reason: error?.message ?? String(error) })
  })
  if (child.pid === undefined) return
  state.pgid = child.pid
  watched.add(child.pid)
  reply(`started ${id} ${child.pid}`)
  const total = { stdout: 0, stderr: 0 }
  for (const stream of ["stdout", "stderr"]) {
    child[stream].on("data", (chunk) => {
      if (state.tooLong !== undefined) return
      total[stream] += chunk.length
      if (total[stream] > max) {
        // §36: gathering stops at the bound and the group is killed, so memory stays bounded.
        // Like a stop: once it has exited, what is left goes, open pipes or not.
        state.tooLong = stream
        state.stopped = true
        state.output = { stdout: [], stderr: [] }
        signal(-state.pgid, "SIGKILL")
        state.settle()
      } else state.output[stream].push(chunk)
    })
  }
  child.once("exit", (code, name) => {
    exit = { code, signal: name }
    state.settle()
  })
  child.once("close", () => {
    closed = true
    state.settle()
  })
}

/** Stops a run: SIGTERM to its group, SIGKILL after its grace; its result follows once it has exited. */
function stop(id) {
  const state = runs.get(id)
  if (state === undefined || state.stopped) return
  state.stopped = true
  // Not started yet (its start failure is on the way), or already ended and being swept.
  if (state.pgid === 0 || state.sweeping) return
  signal(-state.pgid, "SIGTERM")
  state.killTimer = setTimeout(() => signal(-state.pgid, "SIGKILL"), state.grace)
  state.settle()
}

function request(line) {
  if (ending) return
  const space = line.indexOf(" ")
  const verb = space === -1 ? line : line.slice(0, space)
  if (verb === "run") {
    const at = line.indexOf(" ", space + 1)
    const id = line.slice(space + 1, at === -1 ? line.length : at)
    if (/^\d+$/.test(id)) return run(id, at === -1 ? "" : line.slice(at + 1))
  }
  const args = line.trim().split(" ").slice(1)
  if (verb === "watch" && /^\d+$/.test(args[0] ?? "")) watched.add(Number(args[0]))
  else if (verb === "stop" && /^\d+$/.test(args[0] ?? "")) stop(args[0])
  else if (
    verb === "end" &&
    (args.length === 4 || (args.length === 5 && args[4] === "killed")) &&
    /^\d+$/.test(args[1]) &&
    /^\d+$/.test(args[3])
  ) {
    const [id, group, token, grace, killed] = args
    sweep(`end-${id}`, Number(group), token, Number(grace), () => reply(`ended ${id}`), killed === "killed")
  } else if (line.trim() !== "")
    process.stderr.write(`deputy-supervisor: ignored request ${JSON.stringify(line.slice(0, 200))}\n`)
}

/** A request line past REQUEST_BOUND: dropped; a `run` among them is answered, its id read from the start. */
function tooLong(start) {
  const match = /^run (\d+) /.exec(start.toString("latin1"))
  if (match !== null && !ending)
    reply(
      `result ${match[1]} ${JSON.stringify({ failed: "start", reason: `the request is longer than the supervisor's bound of ${REQUEST_BOUND} bytes` })}`
    )
}

/** Deputy is gone (or asks us to go): end every watched group and every marked process, then exit. */
function endAll() {
  if (ending) return
  ending = true
  pending.clear()
  for (const state of runs.values()) clearTimeout(state.killTimer)
  for (const pgid of watched)
    pending.set(
      `group-${pgid}`,
      job(pgid, () => false, longestGrace, undefined)
    )
  pending.set(
    "marked",
    job(0, (p) => p.token !== undefined, longestGrace, undefined)
  )
  step = 1
  schedule(0)
}

// A terminal's Ctrl-C or hang-up is for deputy, which ends its commands itself.
process.on("SIGINT", () => {})
process.on("SIGHUP", () => {})
process.on("SIGTERM", endAll)

// Requests are split on newline bytes (JSON escapes a newline in a string, and UTF-8 never has the
// byte 0x0a inside a character); a line is decoded once it is whole.
let parts = []
let size = 0
let skipping = false
process.stdin.on("data", (chunk) => {
  let from = 0
  for (let newline = chunk.indexOf(10); newline !== -1; newline = chunk.indexOf(10, from)) {
    if (!skipping) {
      const piece = chunk.subarray(from, newline)
      if (size + piece.length > REQUEST_BOUND) tooLong(Buffer.concat([...parts, piece]).subarray(0, 64))
      else request(parts.length === 0 ? piece.toString("utf8") : Buffer.concat([...parts, piece]).toString("utf8"))
    }
    parts = []
    size = 0
    skipping = false
    from = newline + 1
  }
  if (from === chunk.length || skipping) return
  const rest = chunk.subarray(from)
  if (size + rest.length > REQUEST_BOUND) {
    tooLong(Buffer.concat([...parts, rest]).subarray(0, 64))
    parts = []
    size = 0
    skipping = true
  } else {
    parts.push(rest)
    size += rest.length
  }
})
for (const event of ["end", "close", "error"]) process.stdin.once(event, endAll)
process.stdout.on("error", () => {}) // deputy gone: nobody reads the replies
