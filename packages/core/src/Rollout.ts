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
 */
import { constants as FsConstants } from "node:fs"
import * as FsPromises from "node:fs/promises"
import {
  canonicalUuid,
  type Event,
  type RolloutItem,
  type RolloutMeta,
  type Submission,
  type TerminalState,
  type ThreadId
} from "@deputy/protocol"
import { FileSystem, Path } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { Clock, Context, Data, Effect, Either, Layer, Option, type Scope } from "effect"
import {
  acquireLiveMarker,
  isMarkerProcessAlive,
  LIVE_DIR,
  LIVE_MARKER_FILE,
  type LiveMarker,
  liveMarkerName,
  ownProcessStart,
  readLiveMarker,
  type ThreadLiveElsewhere
} from "./Crashes.js"
import { InvalidInput } from "./errors.js"
import { deputyHome } from "./internal/home.js"
import {
  encodeUtf8,
  jsonLine,
  parseMetaLine,
  parseRollout,
  parsesAsJson,
  ROLLOUT_FILE,
  type RolloutWarning,
  relativeRolloutPath
} from "./internal/rolloutFile.js"
import { writePointer } from "./Pointer.js"

export type { RolloutWarning } from "./internal/rolloutFile.js"

/** No rollout where one was looked for: no file at `path`, or none for `threadId` (among archived ones when `archived`). */
export class RolloutNotFound extends Data.TaggedError("RolloutNotFound")<{
  readonly threadId?: string
  readonly path?: string
  readonly archived?: boolean
}> {
  override get message() {
    if (this.path !== undefined) return `no rollout file at ${this.path}`
    return `no ${this.archived ? "archived " : ""}rollout for thread ${this.threadId}`
  }
}

/**
 * A rollout file exists but cannot be used: it is empty, or its first (metadata) line is unreadable.
 * `readable` holds the lines that could still be read, so nothing saved is lost.
 */
export class RolloutUnreadable extends Data.TaggedError("RolloutUnreadable")<{
  readonly path: string
  /** The 1-based line at fault, when one is. */
  readonly line?: number
  readonly reason: string
  readonly readable?: ReadonlyArray<RolloutItem>
}> {
  override get message() {
    return `cannot read rollout ${this.path}${this.line === undefined ? "" : `:${this.line}`}: ${this.reason}`
  }
}

/** The file system refused a rollout operation (permission, full disk, a file where a folder should be, …). */
export class RolloutIoFailed extends Data.TaggedError("RolloutIoFailed")<{
  readonly path: string
  readonly operation: "create" | "append" | "read" | "list" | "move" | "repair" | "mark"
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message() {
    return `rollout ${this.operation} failed for ${this.path}: ${this.reason}`
  }
}

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
  /** A writer flushes once this many characters are buffered, turn boundary or not. Default 1 MiB. */
  readonly flushThreshold?: number
}

/** Where rollouts live, how to write one, read one back, find, list and archive them (§20, §21). */
export class RolloutStore extends Context.Tag("@deputy/core/RolloutStore")<RolloutStore, RolloutStoreService>() {
  /** The store on the real file system, in `options.home` or the default home. */
  static readonly layer = (
    options: RolloutStoreOptions = {}
  ): Layer.Layer<RolloutStore, never, FileSystem.FileSystem | Path.Path> =>
    Layer.effect(
      RolloutStore,
      Effect.gen(function* () {
        const path = yield* Path.Path
        const home = options.home === undefined ? yield* deputyHome : path.resolve(options.home)
        return make(yield* FileSystem.FileSystem, path, home, options.flushThreshold ?? 1024 * 1024)
      })
    )
}

/** The folder of live rollouts, relative to home. */
export const SESSIONS_DIR = "sessions"
/** The folder of archived rollouts, relative to home. */
export const ARCHIVED_SESSIONS_DIR = "archived_sessions"

const TURN_BOUNDARIES: ReadonlySet<string> = new Set(["turn_complete", "turn_aborted", "shutdown_complete"])
const DEFAULT_LIMIT = 50
const CHUNK = 64 * 1024
const MAX_META_BYTES = 16 * 1024 * 1024

const isNotFound = (error: PlatformError) => error._tag === "SystemError" && error.reason === "NotFound"
const isAlreadyExists = (error: PlatformError) => error._tag === "SystemError" && error.reason === "AlreadyExists"

const ioFailed = (path: string, operation: RolloutIoFailed["operation"]) => (error: PlatformError) =>
  new RolloutIoFailed({ path, operation, reason: error.message, cause: error })

const make = (
  fs: FileSystem.FileSystem,
  path: Path.Path,
  home: string,
  flushThreshold: number
): RolloutStoreService => {
  const roots = { live: path.join(home, SESSIONS_DIR), archived: path.join(home, ARCHIVED_SESSIONS_DIR) }
  const liveDir = path.join(home, LIVE_DIR)

  const readBytes = (file: string) =>
    fs
      .readFile(file)
      .pipe(
        Effect.mapError((error) =>
          isNotFound(error) ? new RolloutNotFound({ path: file }) : ioFailed(file, "read")(error)
        )
      )

  const read = Effect.fn("RolloutStore.read")(function* (file: string) {
    const parsed = parseRollout(file, yield* readBytes(file))
    if (Either.isLeft(parsed)) return yield* new RolloutUnreadable({ path: file, ...parsed.left })
    return parsed.right
  })

  // Only the first line: list and resume need the metadata, not a 100,000-line history.
  const readMeta = Effect.fn("RolloutStore.readMeta")(function* (file: string) {
    const firstLine = yield* Effect.scoped(
      Effect.gen(function* () {
        const handle = yield* fs.open(file, { flag: "r" })
        const chunks: Array<Uint8Array> = []
        let total = 0
        for (;;) {
          const chunk = yield* handle.readAlloc(CHUNK)
          if (Option.isNone(chunk)) break
          const newline = chunk.value.indexOf(10)
          chunks.push(newline === -1 ? chunk.value : chunk.value.subarray(0, newline))
          total += chunk.value.byteLength
          if (newline !== -1 || total > MAX_META_BYTES) break
        }
        return Buffer.concat(chunks)
      })
    ).pipe(
      Effect.mapError((error) =>
        isNotFound(error) ? new RolloutNotFound({ path: file }) : ioFailed(file, "read")(error)
      )
    )
    if (firstLine.byteLength === 0) {
      return yield* new RolloutUnreadable({ path: file, reason: "the file is empty (no metadata line)" })
    }
    let text: string | undefined
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(firstLine)
    } catch {
      text = undefined
    }
    const meta = parseMetaLine(text)
    if (Either.isLeft(meta)) return yield* new RolloutUnreadable({ path: file, ...meta.left })
    return meta.right
  })

  // ---- finding files ----

  const listDir = (dir: string) =>
    fs.readDirectory(dir).pipe(
      Effect.catchIf(isNotFound, () => Effect.succeed<Array<string>>([])),
      Effect.mapError(ioFailed(dir, "list"))
    )

  const numbered = (names: ReadonlyArray<string>, digits: number) =>
    names.filter((name) => name.length === digits && /^\d+$/.test(name)).sort((a, b) => (a < b ? 1 : -1))

  // One folder that cannot be listed (permissions, a file in its place) must not hide every other
  // thread: below the root it is skipped with a warning (finding 7).
  const listSubDir = (dir: string) =>
    listDir(dir).pipe(
      Effect.catchAll((error) =>
        Effect.as(Effect.logWarning(`skipped a rollout folder that cannot be listed: ${error.message}`), [])
      )
    )

  /** Day folders under `root`, newest first, as `YYYY/MM/DD`; `until` skips days after it. */
  const dayFolders = (root: string, until?: string) =>
    Effect.gen(function* () {
      const days: Array<string> = []
      for (const year of numbered(yield* listDir(root), 4)) {
        if (until !== undefined && year > until.slice(0, 4)) continue
        for (const month of numbered(yield* listSubDir(path.join(root, year)), 2)) {
          if (until !== undefined && `${year}/${month}` > until.slice(0, 7)) continue
          for (const day of numbered(yield* listSubDir(path.join(root, year, month)), 2)) {
            if (until !== undefined && `${year}/${month}/${day}` > until.slice(0, 10)) continue
            days.push(`${year}/${month}/${day}`)
          }
        }
      }
      return days
    })

  const canonical = (threadId: string) => {
    const id = canonicalUuid(threadId)
    return id === undefined
      ? Effect.fail(new InvalidInput({ source: "thread id", issues: [`${JSON.stringify(threadId)} is not a UUID`] }))
      : Effect.succeed(id as ThreadId)
  }

  /** The rollout of `threadId` under `root`, as a path relative to it. */
  const findIn = (root: string, threadId: ThreadId) =>
    Effect.gen(function* () {
      const suffix = `-${threadId}.jsonl`
      for (const day of yield* dayFolders(root)) {
        const name = (yield* listSubDir(path.join(root, day))).find(
          (entry) => entry.endsWith(suffix) && ROLLOUT_FILE.test(entry)
        )
        if (name !== undefined) return Option.some(`${day}/${name}`)
      }
      return Option.none<string>()
    })

  const findById = Effect.fn("RolloutStore.findById")(function* (threadId: string) {
    const id = yield* canonical(threadId)
    const live = yield* findIn(roots.live, id)
    if (Option.isSome(live)) return { threadId: id, path: path.join(roots.live, live.value), archived: false }
    const archived = yield* findIn(roots.archived, id)
    if (Option.isSome(archived))
      return { threadId: id, path: path.join(roots.archived, archived.value), archived: true }
    return yield* new RolloutNotFound({ threadId: id })
  })

  const badCursor = (cursor: string) =>
    new InvalidInput({ source: "rollout list cursor", issues: [`${JSON.stringify(cursor)} is not a cursor from list`] })

  const decodeCursor = (cursor: string) => {
    const key = Buffer.from(cursor, "base64url").toString("utf8")
    const name = key.split("/")[3]
    return /^\d{4}\/\d{2}\/\d{2}\/[^/]+$/.test(key) && name !== undefined && ROLLOUT_FILE.test(name)
      ? Effect.succeed(key)
      : Effect.fail(badCursor(cursor))
  }

  const list = Effect.fn("RolloutStore.list")(function* (
    options: { readonly limit?: number; readonly cursor?: string } = {}
  ) {
    const limit = Math.max(1, Math.floor(options.limit ?? DEFAULT_LIMIT))
    const after = options.cursor === undefined ? undefined : yield* decodeCursor(options.cursor)
    // Keys `YYYY/MM/DD/rollout-<stamp>-<id>.jsonl` sort by time: newest first is descending order.
    const keys: Array<string> = []
    for (const day of yield* dayFolders(roots.live, after)) {
      const names = (yield* listSubDir(path.join(roots.live, day)))
        .filter((name) => ROLLOUT_FILE.test(name))
        .map((name) => `${day}/${name}`)
        .filter((key) => after === undefined || key < after)
        .sort((a, b) => (a < b ? 1 : -1))
      keys.push(...names)
      if (keys.length > limit) break
    }
    const page = keys.slice(0, limit)
    const items = yield* Effect.forEach(
      page,
      (key) => {
        const file = path.join(roots.live, key)
        const threadId = ROLLOUT_FILE.exec(key.split("/")[3] ?? "")?.[2] as ThreadId
        return readMeta(file).pipe(
          Effect.option,
          Effect.map((meta): RolloutSummary => ({ threadId, path: file, meta }))
        )
      },
      { concurrency: 16 }
    )
    const last = page[page.length - 1]
    const nextCursor =
      keys.length > limit && last !== undefined ? Option.some(Buffer.from(last).toString("base64url")) : Option.none()
    return { items, nextCursor }
  })

  const allMetas = Effect.gen(function* () {
    const files: Array<string> = []
    for (const root of [roots.live, roots.archived]) {
      for (const day of yield* dayFolders(root)) {
        for (const name of yield* listSubDir(path.join(root, day))) {
          if (ROLLOUT_FILE.test(name)) files.push(path.join(root, day, name))
        }
      }
    }
    const metas = yield* Effect.forEach(files, (file) => Effect.option(readMeta(file)), { concurrency: 16 })
    return metas.flatMap((meta) => (Option.isSome(meta) ? [meta.value] : []))
  }).pipe(Effect.withSpan("RolloutStore.allMetas"))

  const move = (threadId: string, from: "live" | "archived") =>
    Effect.gen(function* () {
      const id = yield* canonical(threadId)
      const key = yield* findIn(roots[from], id)
      if (Option.isNone(key)) return yield* new RolloutNotFound({ threadId: id, archived: from === "archived" })
      const source = path.join(roots[from], key.value)
      const target = path.join(roots[from === "live" ? "archived" : "live"], key.value)
      yield* fs
        .makeDirectory(path.dirname(target), { recursive: true, mode: 0o700 }) // §32
        .pipe(Effect.mapError(ioFailed(target, "move")))
      yield* fs.rename(source, target).pipe(Effect.mapError(ioFailed(source, "move")))
      return target
    })

  // ---- writing ----

  const makeWriter = (
    threadId: ThreadId,
    file: string,
    header: { meta: RolloutMeta | undefined },
    state: WriterState,
    onError: (error: RolloutIoFailed) => Effect.Effect<void>,
    repairs: ReadonlyArray<RolloutWarning> = []
  ) =>
    Effect.gen(function* () {
      const lock = yield* Effect.makeSemaphore(1)
      // Read once: `submission` and `event` are on every agent's hot path.
      const clock = yield* Effect.clock
      const now = () => new Date(clock.unsafeCurrentTimeMillis()).toISOString()
      const append = (line: string) => {
        state.pending.push(line)
        state.pendingChars += line.length
      }
      // The live marker (Crashes.ts) exists while this writer has a file and has not written `terminal`.
      const markerFile = path.join(liveDir, liveMarkerName(threadId))
      const acquireMarker = Effect.gen(function* () {
        const processStart = yield* Effect.promise(ownProcessStart)
        const marker: LiveMarker = {
          pid: process.pid,
          startedAt: now(),
          path: file,
          ...(processStart === undefined ? {} : { processStart })
        }
        yield* acquireLiveMarker(markerFile, threadId, marker).pipe(
          Effect.provideService(FileSystem.FileSystem, fs),
          Effect.provideService(Path.Path, path),
          Effect.catchTag("BadArgument", "SystemError", (error) => Effect.fail(ioFailed(markerFile, "mark")(error)))
        )
        state.marker = marker
      })
      // A new file: nobody else can hold its thread, so a marker that cannot be made only costs crash detection.
      const markNewFile = acquireMarker.pipe(
        Effect.catchAll((error) => Effect.logWarning(`${error.message}: a crash will not be noticed for ${file}`))
      )
      // Only once every line is on disk: a terminal line still buffered keeps the marker for the next start.
      const removeMarker = Effect.suspend(() =>
        state.marker !== undefined && state.pending.length === 0 && !state.dirty
          ? fs.remove(markerFile, { force: true }).pipe(
              Effect.tap(() =>
                Effect.sync(() => {
                  state.marker = undefined
                })
              ),
              Effect.catchAll((error) => Effect.logWarning(`cannot remove the live marker: ${error.message}`))
            )
          : Effect.void
      )
      // Closed in order with lines the disk refused: not a crash. The marker says how the thread ended
      // (Crashes.ts), so the next start writes that ending, not `crashed`; if even that fails, it goes.
      const closeMarker = Effect.suspend(() => {
        const marker = state.marker
        if (marker === undefined) return Effect.void
        if (state.pending.length === 0 && !state.dirty) return removeMarker
        const closed: LiveMarker = {
          ...marker,
          closed: { at: now(), ...(state.terminal === undefined ? {} : { terminal: state.terminal }) }
        }
        return writePointer(markerFile, jsonLine(closed)).pipe(
          Effect.provideService(FileSystem.FileSystem, fs),
          Effect.provideService(Path.Path, path),
          Effect.tap(() => Effect.logWarning(`closed ${file} with ${state.pending.length} line(s) the disk refused`)),
          Effect.catchAll(() => Effect.ignore(fs.remove(markerFile, { force: true })))
        )
      })
      // One write per flush, whole lines only; uninterruptible so a cancelled fiber cannot cut a line (§21).
      const write = Effect.gen(function* () {
        if (!state.started) return // §20: a lazy writer waits for the first turn
        if (state.exists && state.pending.length === 0 && !state.dirty) return
        const lines = state.pending
        state.pending = []
        state.pendingChars = 0
        const attempt = state.exists ? appendLines(lines) : createFile(lines)
        yield* Effect.catchAll(attempt, (error) => {
          state.pending = lines.concat(state.pending) // keep them, in order, for the next try
          for (const line of lines) state.pendingChars += line.length
          return Effect.fail(error)
        })
      })
      const createFile = (lines: ReadonlyArray<string>) =>
        Effect.gen(function* () {
          const data = encodeUtf8((header.meta === undefined ? "" : jsonLine(header.meta)) + lines.join(""))
          // §32: rollouts and their folders are private.
          yield* fs
            .makeDirectory(path.dirname(file), { recursive: true, mode: 0o700 })
            .pipe(Effect.mapError(ioFailed(file, "create")))
          // `wx` never clobbers another thread's file; after a failed attempt of ours, `w` redoes it.
          yield* fs.writeFile(file, data, { flag: state.ownsFile ? "w" : "wx", mode: 0o600 }).pipe(
            Effect.tapError((error) =>
              Effect.sync(() => {
                if (!isAlreadyExists(error)) state.ownsFile = true
              })
            ),
            Effect.mapError(ioFailed(file, "create"))
          )
          state.exists = true
          state.ownsFile = true
          state.size = data.byteLength
          yield* markNewFile
        })
      // §34: O_APPEND, never a write at a remembered offset, and no O_CREAT: a rollout moved away
      // (archived) is an error, never a new file without metadata. A failed write may have left part
      // of a line: the next append starts on a new line, so the reader skips that part with a warning
      // and nothing written is overwritten.
      const appendLines = (lines: ReadonlyArray<string>) =>
        Effect.tryPromise({
          try: async () => {
            let data = encodeUtf8(lines.join(""))
            const handle = await FsPromises.open(file, FsConstants.O_WRONLY | FsConstants.O_APPEND)
            try {
              if (state.dirty && (await handle.stat()).size > state.size) {
                data = Buffer.concat([encodeUtf8("\n"), data])
              }
              await handle.writeFile(data)
              state.size = (await handle.stat()).size
              state.dirty = false
            } finally {
              await handle.close()
            }
          },
          catch: (cause) =>
            new RolloutIoFailed({
              path: file,
              operation: "append",
              reason: cause instanceof Error ? cause.message : String(cause),
              cause
            })
        }).pipe(
          Effect.tapError(() =>
            Effect.sync(() => {
              state.dirty = true
            })
          )
        )
      // Waiting for the lock can be interrupted; a write under way cannot.
      const flush = lock.withPermits(1)(Effect.uninterruptible(write)).pipe(Effect.withSpan("RolloutWriter.flush"))
      // onError runs outside the lock, so it may record an `error` event through this writer.
      const autoFlush = Effect.catchAll(flush, onError)
      const maybeFlush = (boundary: boolean) =>
        boundary || state.closed || state.pendingChars >= flushThreshold ? autoFlush : Effect.void
      yield* Effect.addFinalizer(() =>
        Effect.suspend(() => {
          state.closed = true
          return Effect.zipRight(autoFlush, closeMarker) // closed in an orderly way: not a crash
        })
      )
      const writer: RolloutWriter = {
        threadId,
        repairs,
        path: Effect.sync(() => (state.exists ? Option.some(file) : Option.none())),
        setBackendThreadId: (backendThreadId) =>
          Effect.sync(() => {
            if (!state.exists && header.meta !== undefined) header.meta = { ...header.meta, backendThreadId }
          }),
        submission: (submission) =>
          Effect.suspend(() => {
            append(`{"type":"submission","at":"${now()}","submission":${JSON.stringify(submission)}}\n`)
            // §20: the first turn creates the file (and each later one retries a failed creation).
            const startsTurn = submission.op.type === "user_input"
            if (startsTurn) state.started = true
            return maybeFlush(startsTurn && !state.exists)
          }),
        event: (event) =>
          Effect.suspend(() => {
            append(`{"type":"event","at":"${now()}","event":${JSON.stringify(event)}}\n`)
            return maybeFlush(TURN_BOUNDARIES.has(event.msg.type))
          }),
        events: (events) =>
          Effect.suspend(() => {
            // One timestamp per batch: formatting a date costs as much as serialising the event.
            // One string per batch: a line at a time costs an array slot and a length update each.
            const prefix = `{"type":"event","at":"${now()}","event":`
            let lines = ""
            let boundary = false
            for (const event of events) {
              lines += `${prefix}${JSON.stringify(event)}}\n`
              if (TURN_BOUNDARIES.has(event.msg.type)) boundary = true
            }
            if (lines !== "") append(lines)
            return maybeFlush(boundary)
          }),
        flush,
        terminal: (terminalState, reason) =>
          Effect.suspend(() => {
            if (state.terminated) return Effect.void
            state.terminated = true
            state.terminal = { state: terminalState, ...(reason === undefined ? {} : { reason }) }
            const at = now()
            append(
              jsonLine({ type: "terminal", at, state: terminalState, ...(reason === undefined ? {} : { reason }) })
            )
            return Effect.zipRight(autoFlush, removeMarker)
          }).pipe(Effect.withSpan("RolloutWriter.terminal"))
      }
      return { writer, acquireMarker }
    })

  const defaultOnError = (error: RolloutIoFailed) => Effect.logWarning(error.message)

  const create = Effect.fn("RolloutStore.create")(function* (meta: Omit<RolloutMeta, "type">, options: WriterOptions) {
    const createdAt = new Date(meta.createdAt)
    const when = Number.isNaN(createdAt.getTime()) ? new Date(yield* Clock.currentTimeMillis) : createdAt
    const file = path.join(roots.live, relativeRolloutPath(meta.threadId, when))
    const state = newState({ started: options.mode === "immediate" })
    const header = { meta: { type: "meta" as const, ...meta } }
    for (const item of options.history ?? []) {
      if (item.type === "terminal") continue // how the source thread ended is not the fork's history
      const line = jsonLine(item)
      state.pending.push(line)
      state.pendingChars += line.length
    }
    const { writer } = yield* makeWriter(meta.threadId, file, header, state, options.onError ?? defaultOnError)
    if (options.mode === "immediate") yield* Effect.catchAll(writer.flush, options.onError ?? defaultOnError)
    return writer
  })

  /** How many newlines `file` holds before byte `end` (its 1-based last line is this + 1). */
  const countLines = (handle: FileSystem.File, end: number) =>
    Effect.gen(function* () {
      let lines = 0
      for (let start = 0; start < end; start += CHUNK) {
        yield* handle.seek(start, "start")
        const chunk = new Uint8Array(Math.min(CHUNK, end - start))
        const read = Number(yield* handle.read(chunk))
        for (let i = 0; i < read; i++) if (chunk[i] === 10) lines++
        if (read === 0) break
      }
      return lines
    })

  /**
   * Readies a rollout's end for appends and says what it changed (finding 4): a last line without its
   * newline that does not parse as JSON is a torn write and is cut off; one that parses (even of a
   * type this version does not know) is kept and ended with its newline.
   */
  const repairTail = (file: string) =>
    Effect.scoped(
      Effect.gen(function* () {
        const handle = yield* fs.open(file, { flag: "r" })
        const size = Number((yield* handle.stat).size)
        const repairs: Array<RolloutWarning> = []
        if (size === 0) return { size, repairs }
        let end = size
        let tail: Uint8Array = new Uint8Array(0)
        while (end > 0) {
          const start = Math.max(0, end - CHUNK)
          yield* handle.seek(start, "start")
          const chunk = new Uint8Array(end - start)
          const read = Number(yield* handle.read(chunk))
          tail = Buffer.concat([chunk.subarray(0, read), tail])
          if (start === 0 || chunk.subarray(0, read).includes(10)) break
          end = start
        }
        if (tail[tail.length - 1] === 10) return { size, repairs }
        const lastNewline = tail.lastIndexOf(10)
        const fragment = tail.subarray(lastNewline + 1)
        const line = (yield* countLines(handle, size - fragment.byteLength)) + 1
        const warn = (kind: RolloutWarning["kind"], what: string) =>
          repairs.push({ path: file, line, kind, message: `${file}:${line}: ${what}` })
        if (parsesAsJson(fragment)) {
          yield* fs.writeFile(file, encodeUtf8("\n"), { flag: "a" })
          warn("unterminated_last_line", "ended a complete last line that lacked its newline")
          return { size: size + 1, repairs }
        }
        const keep = size - fragment.byteLength
        yield* fs.truncate(file, keep)
        warn(
          "torn_last_line",
          `cut off a torn last line (${fragment.byteLength} bytes that do not parse as JSON; the write was cut short)`
        )
        return { size: keep, repairs }
      })
    ).pipe(
      Effect.mapError((error) =>
        isNotFound(error) ? new RolloutNotFound({ path: file }) : ioFailed(file, "repair")(error)
      )
    )

  const resume = Effect.fn("RolloutStore.resume")(function* (
    file: string,
    options: { readonly onError?: (error: RolloutIoFailed) => Effect.Effect<void> } = {}
  ) {
    const meta = yield* readMeta(file)
    const { size, repairs } = yield* repairTail(file)
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

  // ---- crashes ----

  const removeQuietly = (file: string) => Effect.ignore(fs.remove(file, { force: true }))

  /**
   * Ends one dead marker's rollout; true when this call wrote its `terminal crashed`. A marker left by
   * a writer that closed in order (`closed`) is no crash: its own terminal record is written instead,
   * when the disk refused it then.
   */
  const endCrashed = (threadId: ThreadId, markerFile: string) =>
    Effect.gen(function* () {
      const read_ = yield* readLiveMarker(markerFile).pipe(
        Effect.provideService(FileSystem.FileSystem, fs),
        Effect.option // gone: another start took it
      )
      if (Option.isNone(read_)) return false
      if (Option.isNone(read_.value)) {
        yield* Effect.logWarning(`removed the unreadable live marker ${markerFile}`)
        yield* removeQuietly(markerFile)
        return false
      }
      const marker = read_.value.value
      if (marker.closed === undefined && (yield* Effect.promise(() => isMarkerProcessAlive(marker)))) return false
      const contents = yield* Effect.either(read(marker.path))
      if (Either.isLeft(contents)) {
        yield* Effect.logWarning(
          `thread ${threadId} ${marker.closed === undefined ? "crashed" : "was closed"}, but its rollout cannot be ended: ${contents.left.message}`
        )
        if (contents.left._tag === "RolloutNotFound") yield* removeQuietly(markerFile)
        return false
      }
      const ending = marker.closed === undefined ? undefined : marker.closed.terminal
      if (contents.right.lines.at(-1)?.type === "terminal" || (marker.closed !== undefined && ending === undefined)) {
        yield* removeQuietly(markerFile) // already ended (or closed with no ending to record)
        return false
      }
      let failure: RolloutIoFailed | undefined
      yield* Effect.scoped(
        Effect.gen(function* () {
          const writer = yield* resume(marker.path, {
            onError: (error) =>
              Effect.sync(() => {
                failure = error
              })
          })
          if (ending !== undefined) yield* writer.terminal(ending.state, ending.reason)
          else yield* writer.terminal("crashed", `the deputy process (pid ${marker.pid}) died with the thread open`)
        })
      )
      // On failure the marker (now naming this process) stays, so the next start tries again.
      if (failure !== undefined) return yield* failure
      return ending === undefined
    })

  const markCrashed = Effect.gen(function* () {
    const names = yield* fs
      .readDirectory(liveDir)
      .pipe(
        Effect.catchAll((error) =>
          isNotFound(error)
            ? Effect.succeed<Array<string>>([])
            : Effect.as(Effect.logWarning(`cannot list live markers: ${error.message}`), [])
        )
      )
    const marked: Array<ThreadId> = []
    for (const name of names) {
      const match = LIVE_MARKER_FILE.exec(name) // skips the pointer writer's temp files
      if (match?.[1] === undefined) continue
      const threadId = match[1] as ThreadId
      const ended = yield* endCrashed(threadId, path.join(liveDir, name)).pipe(
        Effect.catchAll((error) =>
          Effect.as(Effect.logWarning(`cannot mark thread ${threadId} crashed: ${error.message}`), false)
        )
      )
      if (ended) marked.push(threadId)
    }
    return marked.sort()
  }).pipe(Effect.withSpan("RolloutStore.markCrashed"))

  return {
    home,
    create,
    resume,
    read,
    readMeta,
    allMetas,
    findById,
    list,
    archive: (threadId) => move(threadId, "live").pipe(Effect.withSpan("RolloutStore.archive")),
    unarchive: (threadId) => move(threadId, "archived").pipe(Effect.withSpan("RolloutStore.unarchive")),
    markCrashed
  }
}

interface WriterState {
  /** Encoded lines (newline included) not yet on disk, oldest first. */
  pending: Array<string>
  pendingChars: number
  /** False for a lazy writer until its first turn. */
  started: boolean
  /** The live marker this writer holds, while it is on disk. */
  marker: LiveMarker | undefined
  /** `terminal` was called. */
  terminated: boolean
  /** How the thread ended, once `terminal` was called. */
  terminal: { readonly state: TerminalState; readonly reason?: string } | undefined
  /** The file exists (created by this writer, or resumed). */
  exists: boolean
  /** This writer made (or may have half-made) the file, so a retry may overwrite it. */
  ownsFile: boolean
  /** Bytes on disk known to end in a whole line. */
  size: number
  /** A failed append may have left a partial line past `size`. */
  dirty: boolean
  closed: boolean
}

const newState = (options: { readonly started: boolean }): WriterState => ({
  pending: [],
  pendingChars: 0,
  started: options.started,
  marker: undefined,
  terminated: false,
  terminal: undefined,
  exists: false,
  ownsFile: false,
  size: 0,
  dirty: false,
  closed: false
})
