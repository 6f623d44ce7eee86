/**
 * The rollout store (§20, §21): one append-only JSONL file per thread at
 * `home/sessions/YYYY/MM/DD/rollout-<UTC timestamp>-<threadId>.jsonl`; archived rollouts keep the
 * same date folders under `home/archived_sessions/`. The store lives as long as its layer and holds
 * nothing open. A writer lives in the scope it was created in: it buffers lines in memory, appends
 * them in one write at every turn boundary, and flushes once more when that scope closes.
 *
 * Ends and crashes: `writer.terminal` appends the thread's terminal record (how it ended) and flushes
 * at once. While a writer has a file, a live marker `home/live/<threadId>.json` names the process
 * writing it (see Crashes.ts); the terminal record, or a close with every line on disk, removes it.
 * `markCrashed`, run at the next start, finds the markers whose process is gone and ends those
 * rollouts with `terminal crashed`.
 *
 * `make` joins four parts, each its own module: the reader and its repair (internal/rolloutReader.ts),
 * where rollouts are (internal/rolloutFinder.ts), the file writer with its live marker
 * (internal/rolloutWriter.ts, Crashes.ts) and the crash sweep (internal/crashSweep.ts).
 */
import type { Event, RolloutItem, RolloutMeta, Submission, TerminalState, ThreadId } from "@deputy/protocol"
import { FileSystem, Path } from "@effect/platform"
import { Clock, Context, Effect, Layer, type Option, type Scope } from "effect"
import { LIVE_DIR, ProcessMarker, type ThreadLiveElsewhere } from "./Crashes.js"
import type { InvalidInput } from "./errors.js"
import { makeCrashSweep } from "./internal/crashSweep.js"
import { deputyHome } from "./internal/home.js"
import type { RolloutIoFailed, RolloutNotFound, RolloutUnreadable } from "./internal/rolloutErrors.js"
import { jsonLine, type RolloutWarning, relativeRolloutPath } from "./internal/rolloutFile.js"
import { makeRolloutFinder } from "./internal/rolloutFinder.js"
import { KnownDirs } from "./internal/rolloutFs.js"
import { makeRolloutReader } from "./internal/rolloutReader.js"
import { makeRolloutWriter, newState } from "./internal/rolloutWriter.js"

export { RolloutIoFailed, RolloutNotFound, RolloutUnreadable } from "./internal/rolloutErrors.js"
export type { RolloutWarning } from "./internal/rolloutFile.js"

/** Anything reading, finding or resuming a rollout can fail with. */
export type RolloutError = RolloutNotFound | RolloutUnreadable | RolloutIoFailed | ThreadLiveElsewhere

/** Where a thread's rollout is. */
export interface RolloutLocation {
  readonly threadId: ThreadId
  readonly path: string
  /** True when it lies under `archived_sessions/`. */
  readonly archived: boolean
}

/** A rollout read back: its metadata, every readable line after it, and a warning per skipped line. */
export interface RolloutContents {
  readonly meta: RolloutMeta
  readonly lines: ReadonlyArray<RolloutItem>
  readonly warnings: ReadonlyArray<RolloutWarning>
}

/** One entry of `list`. `meta` is none when the file's first line is unreadable. */
export interface RolloutSummary {
  readonly threadId: ThreadId
  readonly path: string
  readonly meta: Option.Option<RolloutMeta>
}

/** One page of `list`, newest first; pass `nextCursor` back for the next page. */
export interface RolloutPage {
  readonly items: ReadonlyArray<RolloutSummary>
  readonly nextCursor: Option.Option<string>
}

/** How a writer starts. */
export interface WriterOptions {
  /**
   * `lazy` (fresh threads): no file until the first `user_input` submission (§20).
   * `immediate` (forks): the metadata and `history` are written at once.
   */
  readonly mode: "lazy" | "immediate"
  /** Lines to write right after the metadata (a fork's snapshot). */
  readonly history?: ReadonlyArray<RolloutItem>
  /**
   * Told about every failed automatic write (the lazy creation at a turn's start, a turn-boundary
   * flush, the flush on close). The ThreadManager turns it into an `error` event for the turn (§20).
   * The lines stay buffered and the next turn boundary tries again. It must not wait on this
   * thread's own events. Default: log a warning.
   */
  readonly onError?: (error: RolloutIoFailed) => Effect.Effect<void>
}

/**
 * Records one thread. `submission` and `event` never fail and never lose a line: they buffer it,
 * and at a turn boundary (`turn_complete`, `turn_aborted` and `shutdown_complete` events, and the
 * `user_input` submission that must create a lazy writer's file) or once the buffer is large they
 * append the whole buffer as one write (the file is opened per write, so a thousand idle threads hold
 * no descriptors). A failed write goes to `onError`, and its lines stay buffered for the next try.
 */
export interface RolloutWriter {
  readonly threadId: ThreadId
  /** What resuming changed at the file's end (a torn last line cut off, a newline added); empty otherwise. */
  readonly repairs: ReadonlyArray<RolloutWarning>
  /** The file, once it exists (a lazy writer has none before its first turn). */
  readonly path: Effect.Effect<Option.Option<string>>
  /**
   * Records the backend's own thread id (known from `session_configured`) in the metadata line if
   * that line is not on disk yet (a lazy writer before its first turn). Rollouts are append-only, so
   * a written metadata line is never rewritten; the `session_configured` event line records the id anyway.
   */
  readonly setBackendThreadId: (backendThreadId: string) => Effect.Effect<void>
  /** Records a submission; a `user_input` one starts a turn, so a lazy writer creates its file then (§20). */
  readonly submission: (submission: Submission) => Effect.Effect<void>
  /** Records an event; a turn-ending one (or `shutdown_complete`) flushes. */
  readonly event: (event: Event) => Effect.Effect<void>
  /** Records events in order with one timestamp, as `event` would one by one (the delegate's batches). */
  readonly events: (events: ReadonlyArray<Event>) => Effect.Effect<void>
  /**
   * Appends everything buffered now (a lazy writer before its first turn has no file, so it keeps
   * buffering). Fails with RolloutIoFailed when the write fails; the lines stay buffered.
   */
  readonly flush: Effect.Effect<void, RolloutIoFailed>
  /**
   * Records how the thread ended (`{ type: "terminal", at, state, reason? }`) and flushes at once; then
   * removes the thread's live marker. Only the first call per writer writes. Never fails: a failed
   * write goes to `onError` and stays buffered (the marker stays too, so the next start marks the
   * thread crashed if the line never reaches the disk). A lazy writer before its first turn has no
   * file and writes none for it (§20).
   */
  readonly terminal: (state: TerminalState, reason?: string) => Effect.Effect<void>
}

/** The rollout store's service. */
export interface RolloutStoreService {
  /** The home folder this store works in. */
  readonly home: string
  /** A writer for a new thread, living in the caller's scope; closing it flushes. Never fails: see `WriterOptions.onError`. */
  readonly create: (
    meta: Omit<RolloutMeta, "type">,
    options: WriterOptions
  ) => Effect.Effect<RolloutWriter, never, Scope.Scope>
  /**
   * A writer appending to an existing rollout. A torn last line (crash mid-write: it does not parse as
   * JSON) is cut off first; a last line that parses but lost its newline is kept and ended. Either
   * repair is in the writer's `repairs`. Fails with ThreadLiveElsewhere when another live writer (in
   * this process or another) holds the thread (§34).
   */
  readonly resume: (
    path: string,
    options?: { readonly onError?: (error: RolloutIoFailed) => Effect.Effect<void> }
  ) => Effect.Effect<
    RolloutWriter,
    RolloutNotFound | RolloutUnreadable | RolloutIoFailed | ThreadLiveElsewhere,
    Scope.Scope
  >
  /** Reads a whole rollout in one pass (§21); skipped lines become warnings naming file and line. */
  readonly read: (path: string) => Effect.Effect<RolloutContents, RolloutNotFound | RolloutUnreadable | RolloutIoFailed>
  /** Reads only the metadata line. */
  readonly readMeta: (path: string) => Effect.Effect<RolloutMeta, RolloutNotFound | RolloutUnreadable | RolloutIoFailed>
  /** The metadata of every rollout, live and archived, in no particular order; unreadable files are skipped. */
  readonly allMetas: Effect.Effect<ReadonlyArray<RolloutMeta>, RolloutIoFailed>
  /** Finds a thread's rollout, live ones first, then archived ones. */
  readonly findById: (
    threadId: string
  ) => Effect.Effect<RolloutLocation, RolloutNotFound | InvalidInput | RolloutIoFailed>
  /** Live (not archived) rollouts, newest first. Default limit 50. A bad cursor fails with InvalidInput. */
  readonly list: (options?: {
    readonly limit?: number
    readonly cursor?: string
  }) => Effect.Effect<RolloutPage, InvalidInput | RolloutIoFailed>
  /** Moves a live rollout into `archived_sessions/` (same date folders) and returns its new path. */
  readonly archive: (threadId: string) => Effect.Effect<string, RolloutNotFound | InvalidInput | RolloutIoFailed>
  /** Moves an archived rollout back into `sessions/` and returns its path there. */
  readonly unarchive: (threadId: string) => Effect.Effect<string, RolloutNotFound | InvalidInput | RolloutIoFailed>
  /**
   * Ends the rollouts of threads whose process died (run once at start; the ThreadManager layer does):
   * for every live marker whose process is gone (see Crashes.ts), appends `terminal crashed` unless
   * the rollout already ends with a terminal record, and removes the marker. Returns the threads it
   * marked, sorted. Never fails: a marker or rollout it cannot handle is logged and skipped (a
   * marker whose rollout is gone is removed).
   */
  readonly markCrashed: Effect.Effect<ReadonlyArray<ThreadId>>
}

/** How the store is set up. */
export interface RolloutStoreOptions {
  /** The home folder; default `deputyHome` (`DEPUTY_HOME`, else `~/.deputy`). */
  readonly home?: string
  /** A writer flushes once this many bytes (UTF-8) are buffered, turn boundary or not. Default 1 MiB. */
  readonly flushThreshold?: number
}

/** Where rollouts live, how to write one, read one back, find, list and archive them (§20, §21). */
export class RolloutStore extends Context.Tag("@deputy/core/RolloutStore")<RolloutStore, RolloutStoreService>() {
  /**
   * The store on the real file system, in `options.home` or the default home. Closing the layer
   * removes the marker its new threads shared (Crashes.ts `ProcessMarker`).
   */
  static readonly layer = (
    options: RolloutStoreOptions = {}
  ): Layer.Layer<RolloutStore, never, FileSystem.FileSystem | Path.Path> =>
    Layer.scoped(
      RolloutStore,
      Effect.gen(function* () {
        const path = yield* Path.Path
        const home = options.home === undefined ? yield* deputyHome : path.resolve(options.home)
        const dirs = new KnownDirs()
        const processMarker = new ProcessMarker(dirs, path.join(home, LIVE_DIR))
        yield* Effect.addFinalizer(() => Effect.promise(() => processMarker.remove()))
        return make(yield* FileSystem.FileSystem, path, home, options.flushThreshold ?? 1024 * 1024, {
          dirs,
          processMarker
        })
      })
    )
}

/** The folder of live rollouts, relative to home. */
export const SESSIONS_DIR = "sessions"
/** The folder of archived rollouts, relative to home. */
export const ARCHIVED_SESSIONS_DIR = "archived_sessions"

const make = (
  fs: FileSystem.FileSystem,
  path: Path.Path,
  home: string,
  flushThreshold: number,
  shared: { readonly dirs: KnownDirs; readonly processMarker: ProcessMarker }
): RolloutStoreService => {
  const roots = { live: path.join(home, SESSIONS_DIR), archived: path.join(home, ARCHIVED_SESSIONS_DIR) }
  const liveDir = path.join(home, LIVE_DIR)
  const reader = makeRolloutReader(fs) // reading a rollout, and readying its end for appends
  const finder = makeRolloutFinder({ fs, path, roots, readMeta: reader.readMeta }) // where rollouts are
  const makeWriter = makeRolloutWriter({ fs, path, liveDir, flushThreshold, ...shared }) // one thread's file and marker

  const defaultOnError = (error: RolloutIoFailed) => Effect.logWarning(error.message)

  // Untraced: a span captures a stack trace per call, and every thread is created through here.
  const create = Effect.fnUntraced(function* (meta: Omit<RolloutMeta, "type">, options: WriterOptions) {
    const createdAt = new Date(meta.createdAt)
    const when = Number.isNaN(createdAt.getTime()) ? new Date(yield* Clock.currentTimeMillis) : createdAt
    const file = path.join(roots.live, relativeRolloutPath(meta.threadId, when))
    const state = newState({ started: options.mode === "immediate" })
    const header = { meta: { type: "meta" as const, ...meta } }
    for (const item of options.history ?? []) {
      if (item.type === "terminal") continue // how the source thread ended is not the fork's history
      state.pending.push(jsonLine(item))
    }
    const { writer } = yield* makeWriter(meta.threadId, file, header, state, options.onError ?? defaultOnError)
    if (options.mode === "immediate") yield* Effect.catchAll(writer.flush, options.onError ?? defaultOnError)
    return writer
  })

  const resume = Effect.fn("RolloutStore.resume")(function* (
    file: string,
    options: { readonly onError?: (error: RolloutIoFailed) => Effect.Effect<void> } = {}
  ) {
    const meta = yield* reader.readMeta(file)
    const { size, repairs } = yield* reader.repairTail(file)
    const state = newState({ started: true })
    state.exists = true
    state.ownsFile = true
    state.size = size
    const { writer, acquireMarker } = yield* makeWriter(
      meta.threadId,
      file,
      { meta: undefined },
      state,
      options.onError ?? defaultOnError,
      repairs
    )
    yield* acquireMarker // §34: one live writer per thread
    return writer
  })

  const markCrashed = makeCrashSweep({ fs, path, liveDir, liveIndex: finder.liveIndex, read: reader.read, resume })

  return {
    home,
    create,
    resume,
    read: reader.read,
    readMeta: reader.readMeta,
    allMetas: finder.allMetas,
    findById: finder.findById,
    list: finder.list,
    archive: (threadId) => finder.move(threadId, "live").pipe(Effect.withSpan("RolloutStore.archive")),
    unarchive: (threadId) => finder.move(threadId, "archived").pipe(Effect.withSpan("RolloutStore.unarchive")),
    markCrashed
  }
}
