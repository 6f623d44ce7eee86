/**
 * Live markers: one live writer per thread (§34), and how the next start learns that a deputy process
 * died with threads open. While a rollout writer has a file, `home/live/<threadId>.json` names the
 * process writing it (pid and start time). It is created exclusively as a hard link to a file written
 * whole before (a new thread's: its process's shared marker, `ProcessMarker`; a resumed thread's: a
 * temporary file of its own), which fails when the name exists, so a marker is never seen
 * half-written and two processes never both hold one. A second process that wants the thread fails
 * with ThreadLiveElsewhere naming the holder; a marker whose process is gone (or whose pid now belongs
 * to a process that started at another time) is taken over. The writer removes its marker when it
 * writes the thread's terminal record or closes with everything on disk; a writer that closes in order
 * but could not flush its last lines leaves the marker with `closed` set (how it ended), so the next
 * start records that ending instead of calling it a crash. A marker of a dead process without `closed`
 * is a crash: the RolloutStore's `markCrashed` (run when a ThreadManager is built) appends
 * `terminal crashed` to that rollout and removes the marker. This module owns the marker's format,
 * taking it, and the question "is that process alive".
 */
import { randomUUID } from "node:crypto"
import { TerminalState } from "@deputy/protocol"
import { FileSystem, Path } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { Data, Effect, Option } from "effect"
import { z } from "zod"
import { ioFailed, RolloutIoFailed } from "./internal/rolloutErrors.js"
import {
  createFile,
  errorCode,
  type KnownDirs,
  linkNewFile,
  linkUnlessThere,
  unlinkIfThere
} from "./internal/rolloutFs.js"

/** The folder of live markers, relative to home. */
export const LIVE_DIR = "live"

/** What a live marker holds. */
export const LiveMarker = z.object({
  /** The process writing the rollout. */
  pid: z.number().int().positive(),
  /** When the marker was written (ISO 8601); for a process's shared marker, when that was. */
  startedAt: z.iso.datetime({ offset: true }),
  /**
   * The rollout file. Absent from a new thread's marker, which is a hard link to its process's shared
   * marker (see `ProcessMarker`): that rollout is under `sessions/`, found by thread id.
   */
  path: z.string().min(1).optional(),
  /**
   * When that process started, as the kernel counts it (Linux: field 22 of `/proc/<pid>/stat`, clock
   * ticks since boot), so a pid reused by another process is not taken for ours. Absent elsewhere:
   * there a live pid is trusted to be the same process.
   */
  processStart: z.string().min(1).optional(),
  /**
   * Set when the writer closed in order but its last lines (maybe its terminal record) did not reach
   * the disk: the thread did not crash. `terminal` is how it ended, when it had ended.
   */
  closed: z
    .object({
      at: z.iso.datetime({ offset: true }),
      terminal: z.object({ state: TerminalState, reason: z.string().optional() }).optional()
    })
    .optional()
})
/** What a live marker holds. */
export type LiveMarker = z.output<typeof LiveMarker>

/** The file name of a thread's live marker. */
export const liveMarkerName = (threadId: string): string => `${threadId}.json`

/** Matches a live marker's file name; group 1 is the thread id. */
export const LIVE_MARKER_FILE = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.json$/

/** Matches a process's shared marker (`ProcessMarker`): `.process-<pid>-<uuid>.json`; group 1 is the pid. */
export const PROCESS_MARKER_FILE =
  /^\.process-(\d+)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.json$/

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
let ownStartRead: { readonly token: string | undefined } | undefined

/** This process's start token (see `LiveMarker.processStart`), read once. */
export const ownProcessStart = (): Promise<string | undefined> => {
  ownStart ??= procStat(process.pid).then((stat) => {
    ownStartRead = { token: stat?.start }
    return stat?.start
  })
  return ownStart
}

/** `ownProcessStart` as an effect that, once read, needs no promise (every marker a thread takes asks). */
export const processStartToken: Effect.Effect<string | undefined> = Effect.suspend(() =>
  ownStartRead === undefined ? Effect.promise(ownProcessStart) : Effect.succeed(ownStartRead.token)
)

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

/**
 * The marker every new thread of one store shares (issue 12): `live/.process-<pid>-<uuid>.json`,
 * naming this process and no rollout, written once; a new thread's marker is a hard link to it. One
 * `link` call takes a marker, exclusively (it fails when the name exists) and whole (the file it
 * links to was complete before the first link): a temporary file per thread, written, linked and
 * removed, cost ten times as much. The rollout of such a marker is found by thread id under
 * `sessions/`, where new rollouts are; a resumed rollout, which may be anywhere, gets a marker of
 * its own naming it. The store removes the file when it closes; the crash sweep removes a dead
 * process's.
 */
export class ProcessMarker {
  private made: Promise<{ readonly file: string; readonly marker: LiveMarker }> | undefined = undefined
  private closed = false

  constructor(
    private readonly dirs: KnownDirs,
    private readonly liveDir: string
  ) {}

  /**
   * Hard-links `file` to the shared marker (made first, or again when someone removed it or its
   * folder); the marker it holds, or undefined when `file` exists. Rejects with node's error when the
   * link cannot be made at all (a file system without hard links, or too many of them: EMLINK).
   */
  async link(file: string): Promise<LiveMarker | undefined> {
    // A store used after its layer closed: its threads get markers of their own, none left behind.
    if (this.closed) throw new Error("the store's shared live marker was removed when the store closed")
    for (let attempt = 0; ; attempt++) {
      const shared = await this.shared()
      try {
        return (await linkUnlessThere(shared.file, file)) ? shared.marker : undefined
      } catch (error) {
        if (errorCode(error) !== "ENOENT" || attempt > 0) throw error
        this.made = undefined // the live folder or the shared file was removed: make both again
        this.dirs.forget(this.liveDir)
      }
    }
  }

  /** Removes the shared marker, if made (threads' markers linked to it stay); later links fail. */
  async remove(): Promise<void> {
    this.closed = true
    const made = this.made
    this.made = undefined
    if (made !== undefined) await made.then(({ file }) => unlinkIfThere(file)).catch(() => false)
  }

  private shared() {
    this.made ??= this.make().catch((error: unknown) => {
      this.made = undefined
      throw error
    })
    return this.made
  }

  private async make() {
    const processStart = await ownProcessStart()
    const marker: LiveMarker = {
      pid: process.pid,
      startedAt: new Date().toISOString(),
      ...(processStart === undefined ? {} : { processStart })
    }
    // Written in place: nothing links to it, nor reads it as a thread's marker, before it is whole.
    const file = `${this.liveDir}/.process-${process.pid}-${randomUUID()}.json`
    await createFile(this.dirs, file, [new TextEncoder().encode(`${JSON.stringify(marker)}\n`)], "wx")
    return { file, marker }
  }
}

/** The thread is live in another process (or another writer of this one): its live marker names a running holder. */
export class ThreadLiveElsewhere extends Data.TaggedError("ThreadLiveElsewhere")<{
  readonly threadId: string
  /** The process holding the thread. */
  readonly pid: number
  /** The live marker naming it. */
  readonly marker: string
}> {
  override get message() {
    return `thread ${this.threadId} is live in deputy process ${this.pid}${this.pid === process.pid ? " (this one)" : ""}; its live marker is ${this.marker}`
  }
}

/** A live marker file's content, when it parses. */
export const readLiveMarker = (
  file: string
): Effect.Effect<Option.Option<LiveMarker>, PlatformError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(file)
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      return Option.none()
    }
    const parsed = LiveMarker.safeParse(json)
    return parsed.success ? Option.some(parsed.data) : Option.none()
  })

/** True when a marker holds its thread: its process runs and has not closed the writer. */
const holds = (marker: Option.Option<LiveMarker>) =>
  Option.isSome(marker) && marker.value.closed === undefined
    ? Effect.promise(() => isMarkerProcessAlive(marker.value))
    : Effect.succeed(false)

const isReason = (error: PlatformError, reason: string) => error._tag === "SystemError" && error.reason === reason

/**
 * Creates `file` holding `marker` (mode 0600, its folder 0700), exclusively (§34): written whole to a
 * temporary file, then hard-linked to its name (internal/rolloutFs.ts), in one promise: a thread
 * takes its marker on its hot path. When a marker is there already: a running holder that has not
 * closed fails with ThreadLiveElsewhere; an unreadable marker, a dead holder's, or a closed one is
 * moved aside (rename, atomic: of two processes taking over, one wins), checked once more, removed,
 * and the creation tried again. A file-system failure is RolloutIoFailed (operation `mark`).
 */
export const acquireLiveMarker = (
  dirs: KnownDirs,
  file: string,
  threadId: string,
  marker: LiveMarker
): Effect.Effect<LiveMarker, ThreadLiveElsewhere | RolloutIoFailed, FileSystem.FileSystem | Path.Path> => {
  const text = `${JSON.stringify(marker)}\n`
  const create = Effect.tryPromise({ try: () => linkNewFile(dirs, file, text), catch: markFailed(file) })
  return Effect.flatMap(create, (created) =>
    created ? Effect.succeed(marker) : Effect.as(takeOver(create, file, threadId), marker)
  )
}

/**
 * `acquireLiveMarker` for a new rollout under `sessions/`: a hard link to this process's shared
 * marker (`ProcessMarker`), or, where hard links cannot be made, a marker of its own (`marker`).
 * Returns the marker taken.
 */
export const acquireNewThreadMarker = (
  shared: ProcessMarker,
  dirs: KnownDirs,
  file: string,
  threadId: string,
  marker: LiveMarker
): Effect.Effect<LiveMarker, ThreadLiveElsewhere | RolloutIoFailed, FileSystem.FileSystem | Path.Path> =>
  Effect.flatMap(
    Effect.tryPromise({ try: () => shared.link(file), catch: markFailed(file) }).pipe(Effect.option),
    (linked) => {
      if (Option.isNone(linked)) return acquireLiveMarker(dirs, file, threadId, marker) // no hard links here
      if (linked.value !== undefined) return Effect.succeed(linked.value)
      // The name exists: take it over if stale, linking again.
      let taken: LiveMarker | undefined
      const create = Effect.tryPromise({ try: () => shared.link(file), catch: markFailed(file) }).pipe(
        Effect.map((held) => {
          taken = held
          return held !== undefined
        })
      )
      return Effect.map(takeOver(create, file, threadId), () => taken ?? marker)
    }
  )

const markFailed = (file: string) => (cause: unknown) =>
  new RolloutIoFailed({
    path: file,
    operation: "mark",
    reason: cause instanceof Error ? cause.message : String(cause),
    cause
  })

/** The marker at `file` was there: take it over if stale (see `acquireLiveMarker`), creating ours with `create`. */
const takeOver = (
  create: Effect.Effect<boolean, RolloutIoFailed>,
  file: string,
  threadId: string
): Effect.Effect<void, ThreadLiveElsewhere | RolloutIoFailed, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const paths = yield* Path.Path
    const dir = paths.dirname(file)
    for (let round = 0; round < 10; round++) {
      const held = yield* readLiveMarker(file).pipe(
        Effect.catchIf(
          (error) => isReason(error, "NotFound"),
          () => Effect.succeed(undefined)
        )
      )
      if (held !== undefined) {
        if (yield* holds(held)) {
          return yield* new ThreadLiveElsewhere({ threadId, pid: Option.getOrThrow(held).pid, marker: file })
        }
        // Stale. Move it aside first, so that of two processes taking it over only one removes it…
        const aside = paths.join(dir, `.${paths.basename(file)}.${randomUUID()}.stale`)
        const moved = yield* fs.rename(file, aside).pipe(
          Effect.as(true),
          Effect.catchIf(
            (error) => isReason(error, "NotFound"),
            () => Effect.succeed(false)
          )
        )
        if (moved) {
          // …and check that what it moved is the stale one, not a marker another process just made.
          const movedMarker = yield* readLiveMarker(aside).pipe(Effect.orElseSucceed(() => Option.none<LiveMarker>()))
          if (yield* holds(movedMarker)) {
            yield* Effect.ignore(fs.link(aside, file)) // put it back (fails only if yet another one is there)
            yield* Effect.ignore(fs.remove(aside))
            return yield* new ThreadLiveElsewhere({ threadId, pid: Option.getOrThrow(movedMarker).pid, marker: file })
          }
          yield* Effect.ignore(fs.remove(aside))
        }
      }
      // Removed meanwhile, or moved aside by us: try again.
      if (yield* create) return
    }
    return yield* new ThreadLiveElsewhere({ threadId, pid: 0, marker: file }) // contended past all reason
  }).pipe(Effect.catchTag("BadArgument", "SystemError", (error) => Effect.fail(ioFailed(file, "mark")(error))))
