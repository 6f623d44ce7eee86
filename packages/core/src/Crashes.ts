/**
 * Live markers: how the next start learns that a deputy process died with threads open. While a
 * rollout writer has a file, `home/live/<threadId>.json` (a pointer file, written atomically) names
 * the process writing it; the writer removes it when it writes the thread's terminal record or
 * closes with everything on disk. A marker whose process is gone is a crash: the RolloutStore's
 * `markCrashed` (run when a ThreadManager is built) appends `terminal crashed` to that rollout and
 * removes the marker. This module owns the marker's format and the question "is that process alive".
 */
import { z } from "zod"

/** The folder of live markers, relative to home. */
export const LIVE_DIR = "live"

/** What a live marker holds. */
export const LiveMarker = z.object({
  /** The process writing the rollout. */
  pid: z.number().int().positive(),
  /** When the marker was written (ISO 8601). */
  startedAt: z.iso.datetime({ offset: true }),
  /** The rollout file. */
  path: z.string().min(1),
  /**
   * When that process started, as the kernel counts it (Linux: field 22 of `/proc/<pid>/stat`, clock
   * ticks since boot), so a pid reused by another process is not taken for ours. Absent elsewhere:
   * there a live pid is trusted to be the same process.
   */
  processStart: z.string().min(1).optional()
})
/** What a live marker holds. */
export type LiveMarker = z.output<typeof LiveMarker>

/** The file name of a thread's live marker. */
export const liveMarkerName = (threadId: string): string => `${threadId}.json`

/** Matches a live marker's file name; group 1 is the thread id. */
export const LIVE_MARKER_FILE = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.json$/

interface ProcStat {
  readonly state: string
  readonly start: string
}

/** The state letter and start time of `pid` from /proc; undefined when there is no such entry (or no /proc). */
const procStat = async (pid: number): Promise<ProcStat | undefined> => {
  if (process.platform !== "linux") return undefined
  try {
    const { readFile } = await import("node:fs/promises")
    const stat = await readFile(`/proc/${pid}/stat`, "utf8")
    // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so split after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    const state = fields[0]
    const start = fields[19] // field 22 overall; fields here start at field 3
    return state === undefined || start === undefined ? undefined : { state, start }
  } catch {
    return undefined
  }
}

let ownStart: Promise<string | undefined> | undefined

/** This process's start token (see `LiveMarker.processStart`), read once. */
export const ownProcessStart = (): Promise<string | undefined> => {
  ownStart ??= procStat(process.pid).then((stat) => stat?.start)
  return ownStart
}

/**
 * Whether the process a marker names still runs: `kill(pid, 0)` succeeds (EPERM counts: it exists,
 * under another user), it is not a zombie, and, where the marker has a start token and /proc can be
 * read, it started when the marker says. Only ESRCH, a zombie or a different start time say "gone".
 */
export const isMarkerProcessAlive = async (marker: LiveMarker): Promise<boolean> => {
  try {
    process.kill(marker.pid, 0)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ESRCH") return false
  }
  const stat = await procStat(marker.pid)
  if (stat === undefined) return true // no /proc (or it vanished just now): trust the pid
  if (stat.state === "Z" || stat.state === "X") return false
  return marker.processStart === undefined || marker.processStart === stat.start
}
