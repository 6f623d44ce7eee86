/**
 * The rollout file writer: one thread's lines, buffered in memory and appended in one write per
 * flush (at a turn boundary, past a size threshold, on `terminal` and when its scope closes), with
 * O_APPEND and never at a remembered offset (§34). It creates a lazy thread's file at its first turn
 * (§20), holds the thread's live marker while it has a file (Crashes.ts), and on an orderly close that
 * could not flush records in the marker how the thread ended. Its state (`WriterState`) is its own.
 *
 * Buffered lines are UTF-8 bytes, encoded a batch at a time as they arrive (pendingLines.ts).
 */
import { constants as FsConstants } from "node:fs"
import type { Event, RolloutMeta, Submission, TerminalState, ThreadId } from "@deputy/protocol"
import { FileSystem, Path } from "@effect/platform"
import { type Clock, Effect, Fiber, Option, type Scope } from "effect"
import {
  acquireLiveMarker,
  acquireNewThreadMarker,
  type LiveMarker,
  liveMarkerName,
  ProcessMarker,
  processStartToken,
  type ThreadLiveElsewhere
} from "../Crashes.js"
import { writePointer } from "../Pointer.js"
import type { RolloutWriter } from "../Rollout.js"
import { PendingLines, recycle } from "./pendingLines.js"
import { RolloutIoFailed } from "./rolloutErrors.js"
import { encodeUtf8, jsonLine, type RolloutWarning } from "./rolloutFile.js"
import {
  close,
  createFile as createNewFile,
  errorCode,
  KnownDirs,
  open,
  sizeOf,
  unlinkIfThere,
  vectorWriter,
  writeAll
} from "./rolloutFs.js"
import { appendEventLines, eventLine, isPersisted, isTurnBoundary } from "./rolloutLines.js"

/** How many thresholds a writer buffers while its background write is under way before the forwarder waits. */
const BACKLOG = 4

/** What every writer of a store shares. */
export interface WriterDeps {
  readonly fs: FileSystem.FileSystem
  readonly path: Path.Path
  /** The folder of live markers. */
  readonly liveDir: string
  /** Flush once this many bytes are buffered, turn boundary or not. */
  readonly flushThreshold: number
  /** The folders the store made (default: a set of this store's writers' own). */
  readonly dirs?: KnownDirs
  /** The marker the store's new threads share (default: one of this store's writers' own). */
  readonly processMarker?: ProcessMarker
}

// The time of a line, one string per millisecond: a burst of lines, from every writer, shares it
// (formatting a Date was ~1 % of a 10,000-agent stress run).
let lastMillis = Number.NaN
let lastIso = ""
const isoAt = (millis: number): string => {
  if (millis !== lastMillis) {
    lastMillis = millis
    lastIso = new Date(millis).toISOString()
  }
  return lastIso
}

/** A node:fs failure on `file` as RolloutIoFailed. */
const failedOn =
  (file: string, operation: RolloutIoFailed["operation"]) =>
  (cause: unknown): RolloutIoFailed =>
    new RolloutIoFailed({
      path: file,
      operation,
      reason: cause instanceof Error ? cause.message : String(cause),
      cause
    })

/**
 * The writers of one store: each call is a writer for `file` in the caller's scope, and the effect
 * that takes its live marker (a resumed rollout takes it at once; a new file takes it when created).
 * The store's writers share the folders they made (rolloutFs.ts: `KnownDirs`).
 */
export const makeRolloutWriter = (deps: WriterDeps) => {
  const dirs = deps.dirs ?? new KnownDirs()
  const shared: Shared = { ...deps, dirs, processMarker: deps.processMarker ?? new ProcessMarker(dirs, deps.liveDir) }
  return (
    threadId: ThreadId,
    file: string,
    header: { meta: RolloutMeta | undefined },
    state: WriterState,
    onError: (error: RolloutIoFailed) => Effect.Effect<void>,
    repairs: ReadonlyArray<RolloutWarning> = []
  ): Effect.Effect<
    { readonly writer: RolloutWriter; readonly acquireMarker: Effect.Effect<void, RolloutError> },
    never,
    Scope.Scope
  > =>
    Effect.flatMap(Effect.scope, (scope) =>
      Effect.flatMap(Effect.clock, (clock) => {
        const writer = new FileWriter(shared, threadId, file, header, state, onError, repairs, scope, clock)
        // Effect.addFinalizer keeps the creating fiber's references for the close (about 0.9 KB a
        // writer); the scope's own list (Scope.addFinalizer) runs it with the closing fiber's, and
        // with that the 1,000-agent stress run hung in 2 of 5 runs (0 of 12 this way).
        return Effect.as(
          Effect.addFinalizer(() => writer.close),
          {
            writer,
            acquireMarker: Effect.suspend(() => writer.acquireMarker)
          }
        )
      })
    )
}

interface Shared extends WriterDeps {
  readonly dirs: KnownDirs
  readonly processMarker: ProcessMarker
}

type RolloutError = RolloutIoFailed | ThreadLiveElsewhere

/**
 * One thread's writer. A class, its effects built when first needed: a thousand idle threads each
 * hold one, and most never flush past a threshold nor take their marker over.
 */
class FileWriter implements RolloutWriter {
  /** `flush`, made when first needed: its lock (a semaphore) is most of an idle writer's size. */
  private flushEffect: Effect.Effect<void, RolloutIoFailed> | undefined = undefined

  constructor(
    private readonly shared: Shared,
    readonly threadId: ThreadId,
    private readonly file: string,
    private readonly header: { meta: RolloutMeta | undefined },
    private readonly state: WriterState,
    private readonly onError: (error: RolloutIoFailed) => Effect.Effect<void>,
    readonly repairs: ReadonlyArray<RolloutWarning>,
    private readonly scope: Scope.Scope,
    // Read once: `submission` and `event` are on every agent's hot path.
    private readonly clock: Clock.Clock
  ) {}

  private now(): string {
    return isoAt(this.clock.unsafeCurrentTimeMillis())
  }

  private append(lines: string): void {
    this.state.pending.push(lines)
    this.state.pending.settle()
  }

  // The live marker (Crashes.ts) exists while this writer has a file and has not written `terminal`.
  private get markerFile(): string {
    return this.shared.path.join(this.shared.liveDir, liveMarkerName(this.threadId))
  }

  /** Takes the thread's marker (a resumed rollout: one of its own, naming the file). */
  get acquireMarker(): Effect.Effect<void, RolloutError> {
    return this.takeMarker(false)
  }

  private takeMarker(newFile: boolean): Effect.Effect<void, RolloutError> {
    const { shared } = this
    return Effect.flatMap(processStartToken, (processStart) => {
      const marker: LiveMarker = {
        pid: process.pid,
        startedAt: this.now(),
        path: this.file,
        ...(processStart === undefined ? {} : { processStart })
      }
      const markerFile = this.markerFile
      const take = newFile
        ? acquireNewThreadMarker(shared.processMarker, shared.dirs, markerFile, this.threadId, marker)
        : acquireLiveMarker(shared.dirs, markerFile, this.threadId, marker)
      return take.pipe(
        Effect.provideService(FileSystem.FileSystem, shared.fs),
        Effect.provideService(Path.Path, shared.path),
        Effect.tap((taken) => {
          this.state.marker = taken
        }),
        Effect.asVoid
      )
    })
  }

  // A new file (under sessions/: its marker is a link to the process's shared one, Crashes.ts): nobody
  // else can hold its thread, so a marker that cannot be made only costs crash detection.
  private get markNewFile(): Effect.Effect<void> {
    return this.takeMarker(true).pipe(
      Effect.catchAll((error) => Effect.logWarning(`${error.message}: a crash will not be noticed for ${this.file}`))
    )
  }

  // Only once every line is on disk: a terminal line still buffered keeps the marker for the next start.
  private get removeMarker(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const { state } = this
      if (state.marker === undefined || !state.pending.isEmpty || state.dirty) return Effect.void
      const markerFile = this.markerFile
      return Effect.tryPromise({ try: () => unlinkIfThere(markerFile), catch: failedOn(markerFile, "mark") }).pipe(
        Effect.tap(() => {
          state.marker = undefined
        }),
        Effect.catchAll((error) => Effect.logWarning(`cannot remove the live marker: ${error.message}`))
      )
    })
  }

  // Closed in order with lines the disk refused: not a crash. The marker says how the thread ended
  // (Crashes.ts), so the next start writes that ending, not `crashed`; if even that fails, it goes.
  private get closeMarker(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const { state, shared } = this
      const marker = state.marker
      if (marker === undefined) return Effect.void
      if (state.pending.isEmpty && !state.dirty) return this.removeMarker
      const markerFile = this.markerFile
      const closed: LiveMarker = {
        ...marker,
        path: this.file, // a shared marker names no rollout; this one is the thread's own
        closed: { at: this.now(), ...(state.terminal === undefined ? {} : { terminal: state.terminal }) }
      }
      return writePointer(markerFile, jsonLine(closed)).pipe(
        Effect.provideService(FileSystem.FileSystem, shared.fs),
        Effect.provideService(Path.Path, shared.path),
        Effect.tap(() =>
          Effect.logWarning(`closed ${this.file} with ${state.pending.bytes} bytes of lines the disk refused`)
        ),
        Effect.catchAll(() => Effect.ignore(Effect.promise(() => unlinkIfThere(markerFile).catch(() => false))))
      )
    })
  }

  /** Closing the scope: closed in an orderly way, so not a crash. */
  get close(): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.state.closed = true
      return Effect.zipRight(this.autoFlush, this.closeMarker)
    })
  }

  // One write per flush, whole lines only; uninterruptible so a cancelled fiber cannot cut a line (§21).
  private get write(): Effect.Effect<void, RolloutIoFailed> {
    return Effect.suspend(() => {
      const { state } = this
      if (!state.started) return Effect.void // §20: a lazy writer waits for the first turn
      if (state.exists && state.pending.isEmpty && !state.dirty) return Effect.void
      const chunks = state.pending.take()
      const attempt = state.exists ? this.appendLines(chunks) : this.createFile(chunks)
      return Effect.catchAll(attempt, (error) => {
        state.pending.restore(chunks) // keep them, in order, for the next try
        return Effect.fail(error)
      })
    })
  }

  private createFile(chunks: ReadonlyArray<Uint8Array>): Effect.Effect<void, RolloutIoFailed> {
    const { state, file } = this
    const meta = this.header.meta
    return Effect.tryPromise({
      // §32: rollouts and their folders are private. `wx` never clobbers another thread's file;
      // after a failed attempt of ours, `w` redoes it.
      try: () =>
        createNewFile(
          this.shared.dirs,
          file,
          meta === undefined ? chunks : [encodeUtf8(jsonLine(meta)), ...chunks],
          state.ownsFile ? "w" : "wx"
        ),
      catch: (cause) => {
        if (errorCode(cause) !== "EEXIST") state.ownsFile = true
        return failedOn(file, "create")(cause)
      }
    }).pipe(
      Effect.flatMap((size) => {
        state.exists = true
        state.ownsFile = true
        state.size = size
        recycle(chunks) // on disk: their slabs may take new lines
        return this.markNewFile
      })
    )
  }

  // §34: O_APPEND, never a write at a remembered offset, and no O_CREAT: a rollout moved away
  // (archived) is an error, never a new file without metadata. A failed write may have left part
  // of a line: the next append starts on a new line, so the reader skips that part with a warning
  // and nothing written is overwritten.
  private appendLines(chunks: ReadonlyArray<Uint8Array>): Effect.Effect<void, RolloutIoFailed> {
    const { state, file } = this
    return Effect.tryPromise({
      try: async () => {
        let data = chunks
        const fd = await open(file, FsConstants.O_WRONLY | FsConstants.O_APPEND)
        try {
          if (state.dirty) {
            const size = await sizeOf(fd)
            if (size > state.size) data = [NEWLINE, ...data]
            state.size = size
          }
          // One writev call a flush, not a copy into one buffer first nor writeFile's 512 KiB calls;
          // then no stat: the file ends in a whole line of ours, and only a later failed write
          // compares sizes again.
          state.size += await writeAll(vectorWriter(fd), data)
          recycle(chunks) // on disk: their slabs may take new lines
          state.dirty = false
        } finally {
          await close(fd)
        }
      },
      catch: failedOn(file, "append")
    }).pipe(
      Effect.tapError(() =>
        Effect.sync(() => {
          state.dirty = true
        })
      )
    )
  }

  // Waiting for the lock can be interrupted; a write under way cannot. No span: a flush is on every
  // thread's hot path, and a span captures a stack trace per call.
  get flush(): Effect.Effect<void, RolloutIoFailed> {
    if (this.flushEffect === undefined) {
      this.flushEffect = Effect.unsafeMakeSemaphore(1).withPermits(1)(Effect.uninterruptible(this.write))
    }
    return this.flushEffect
  }

  // onError runs outside the lock, so it may record an `error` event through this writer.
  private get autoFlush(): Effect.Effect<void> {
    return Effect.catchAll(this.flush, this.onError)
  }

  // Past the threshold the writes go on in the background, so the forwarder is not held by the disk
  // (issue 12): one fiber, writing until less than a threshold is buffered (or a write fails). The
  // forwarder waits for it only once BACKLOG thresholds are buffered (backpressure): a write takes
  // several trips to the thread pool, and waiting at the second threshold held the forwarder for
  // most of them. Turn boundaries, `terminal` and closing still wait for every line to be on disk.
  private get flushInBackground(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const { state, shared } = this
      const running = state.background
      if (running !== undefined) {
        return state.pending.bytes >= BACKLOG * shared.flushThreshold
          ? Effect.asVoid(Fiber.await(running))
          : Effect.void
      }
      const writeBacklog = Effect.catchAll(
        Effect.repeat(this.flush, { while: () => state.pending.bytes >= shared.flushThreshold }),
        this.onError
      )
      return Effect.map(Effect.forkIn(writeBacklog, this.scope), (fiber) => {
        state.background = fiber
        fiber.addObserver(() => {
          if (state.background === fiber) state.background = undefined
        })
      })
    })
  }

  private maybeFlush(boundary: boolean): Effect.Effect<void> {
    const { state } = this
    return boundary || state.closed
      ? this.autoFlush
      : state.pending.bytes >= this.shared.flushThreshold
        ? this.flushInBackground
        : Effect.void
  }

  get path(): Effect.Effect<Option.Option<string>> {
    return Effect.sync(() => (this.state.exists ? Option.some(this.file) : Option.none()))
  }

  // The methods below are fields (bound): callers pass them on as callbacks (`onEvents: writer.events`).

  readonly setBackendThreadId = (backendThreadId: string): Effect.Effect<void> =>
    Effect.sync(() => {
      const meta = this.header.meta
      if (!this.state.exists && meta !== undefined) this.header.meta = { ...meta, backendThreadId }
    })

  readonly submission = (submission: Submission): Effect.Effect<void> =>
    Effect.suspend(() => {
      this.append(`{"type":"submission","at":"${this.now()}","submission":${JSON.stringify(submission)}}\n`)
      // §20: the first turn creates the file (and each later one retries a failed creation).
      const startsTurn = submission.op.type === "user_input"
      if (startsTurn) this.state.started = true
      return this.maybeFlush(startsTurn && !this.state.exists)
    })

  readonly event = (event: Event): Effect.Effect<void> =>
    Effect.suspend(() => {
      // §2: streaming deltas are not persisted (Codex's rollout policy); the completed item is.
      if (!isPersisted(event.msg.type)) return Effect.void
      this.append(eventLine(this.now(), event))
      return this.maybeFlush(isTurnBoundary(event.msg.type))
    })

  // One timestamp per batch: formatting a date costs as much as serialising the event. Per event
  // type, a hand-built line (rolloutLines.ts): JSON.stringify of the whole line was the cost.
  readonly events = (events: ReadonlyArray<Event>): Effect.Effect<void> =>
    Effect.suspend(() => this.maybeFlush(appendEventLines(this.state.pending, this.now(), events)))

  readonly terminal = (terminalState: TerminalState, reason?: string): Effect.Effect<void> =>
    Effect.suspend(() => {
      const { state } = this
      if (state.terminated) return Effect.void
      state.terminated = true
      state.terminal = { state: terminalState, ...(reason === undefined ? {} : { reason }) }
      this.append(
        jsonLine({
          type: "terminal",
          at: this.now(),
          state: terminalState,
          ...(reason === undefined ? {} : { reason })
        })
      )
      return Effect.zipRight(this.autoFlush, this.removeMarker)
    })
}

/** One writer's state, owned by it alone. */
export interface WriterState {
  /** Lines (newline included) not yet on disk, oldest first, as UTF-8 bytes. */
  readonly pending: PendingLines
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
  /** The write started past the threshold, while it runs (the forwarder does not wait for it). */
  background: Fiber.RuntimeFiber<void> | undefined
}

/** A fresh writer state. */
export const newState = (options: { readonly started: boolean }): WriterState => ({
  pending: new PendingLines(),
  started: options.started,
  marker: undefined,
  terminated: false,
  terminal: undefined,
  exists: false,
  ownsFile: false,
  size: 0,
  dirty: false,
  closed: false,
  background: undefined
})

const NEWLINE = encodeUtf8("\n")

export { type VectorWriter, writeAll } from "./rolloutFs.js"
