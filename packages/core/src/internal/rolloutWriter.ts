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
import type { RolloutMeta, TerminalState, ThreadId } from "@deputy/protocol"
import { FileSystem, Path } from "@effect/platform"
import { Effect, Fiber, Option } from "effect"
import { acquireLiveMarker, type LiveMarker, liveMarkerName, processStartToken } from "../Crashes.js"
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
export const makeRolloutWriter = ({ fs, path, liveDir, flushThreshold }: WriterDeps) => {
  const dirs = new KnownDirs()
  return (
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
      const append = (lines: string) => {
        state.pending.push(lines)
        state.pending.settle()
      }
      // The live marker (Crashes.ts) exists while this writer has a file and has not written `terminal`.
      const markerFile = path.join(liveDir, liveMarkerName(threadId))
      const acquireMarker = Effect.flatMap(processStartToken, (processStart) => {
        const marker: LiveMarker = {
          pid: process.pid,
          startedAt: now(),
          path: file,
          ...(processStart === undefined ? {} : { processStart })
        }
        return acquireLiveMarker(dirs, markerFile, threadId, marker).pipe(
          Effect.provideService(FileSystem.FileSystem, fs),
          Effect.provideService(Path.Path, path),
          Effect.tap(() => {
            state.marker = marker
          })
        )
      })
      // A new file: nobody else can hold its thread, so a marker that cannot be made only costs crash detection.
      const markNewFile = acquireMarker.pipe(
        Effect.catchAll((error) => Effect.logWarning(`${error.message}: a crash will not be noticed for ${file}`))
      )
      // Only once every line is on disk: a terminal line still buffered keeps the marker for the next start.
      const removeMarker = Effect.suspend(() =>
        state.marker !== undefined && state.pending.isEmpty && !state.dirty
          ? Effect.tryPromise({ try: () => unlinkIfThere(markerFile), catch: failedOn(markerFile, "mark") }).pipe(
              Effect.tap(() => {
                state.marker = undefined
              }),
              Effect.catchAll((error) => Effect.logWarning(`cannot remove the live marker: ${error.message}`))
            )
          : Effect.void
      )
      // Closed in order with lines the disk refused: not a crash. The marker says how the thread ended
      // (Crashes.ts), so the next start writes that ending, not `crashed`; if even that fails, it goes.
      const closeMarker = Effect.suspend(() => {
        const marker = state.marker
        if (marker === undefined) return Effect.void
        if (state.pending.isEmpty && !state.dirty) return removeMarker
        const closed: LiveMarker = {
          ...marker,
          closed: { at: now(), ...(state.terminal === undefined ? {} : { terminal: state.terminal }) }
        }
        return writePointer(markerFile, jsonLine(closed)).pipe(
          Effect.provideService(FileSystem.FileSystem, fs),
          Effect.provideService(Path.Path, path),
          Effect.tap(() =>
            Effect.logWarning(`closed ${file} with ${state.pending.bytes} bytes of lines the disk refused`)
          ),
          Effect.catchAll(() => Effect.ignore(fs.remove(markerFile, { force: true })))
        )
      })
      // One write per flush, whole lines only; uninterruptible so a cancelled fiber cannot cut a line (§21).
      const write = Effect.gen(function* () {
        if (!state.started) return // §20: a lazy writer waits for the first turn
        if (state.exists && state.pending.isEmpty && !state.dirty) return
        const chunks = state.pending.take()
        const attempt = state.exists ? appendLines(chunks) : createFile(chunks)
        yield* Effect.catchAll(attempt, (error) => {
          state.pending.restore(chunks) // keep them, in order, for the next try
          return Effect.fail(error)
        })
      })
      const createFile = (chunks: ReadonlyArray<Uint8Array>) =>
        Effect.tryPromise({
          // §32: rollouts and their folders are private. `wx` never clobbers another thread's file;
          // after a failed attempt of ours, `w` redoes it.
          try: () =>
            createNewFile(
              dirs,
              file,
              header.meta === undefined ? chunks : [encodeUtf8(jsonLine(header.meta)), ...chunks],
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
            return markNewFile
          })
        )
      // §34: O_APPEND, never a write at a remembered offset, and no O_CREAT: a rollout moved away
      // (archived) is an error, never a new file without metadata. A failed write may have left part
      // of a line: the next append starts on a new line, so the reader skips that part with a warning
      // and nothing written is overwritten.
      const appendLines = (chunks: ReadonlyArray<Uint8Array>) =>
        Effect.tryPromise({
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
      // Waiting for the lock can be interrupted; a write under way cannot.
      // No span: a flush is on every thread's hot path, and a span captures a stack trace per call.
      const flush = lock.withPermits(1)(Effect.uninterruptible(write))
      // onError runs outside the lock, so it may record an `error` event through this writer.
      const autoFlush = Effect.catchAll(flush, onError)
      // Past the threshold the writes go on in the background, so the forwarder is not held by the disk
      // (issue 12): one fiber, writing until less than a threshold is buffered (or a write fails). The
      // forwarder waits for it only once BACKLOG thresholds are buffered (backpressure): a write takes
      // several trips to the thread pool, and waiting at the second threshold held the forwarder for
      // most of them. Turn boundaries, `terminal` and closing still wait for every line to be on disk.
      const scope = yield* Effect.scope
      const writeBacklog = Effect.catchAll(
        Effect.repeat(flush, { while: () => state.pending.bytes >= flushThreshold }),
        onError
      )
      const flushInBackground = Effect.suspend(() => {
        const running = state.background
        if (running !== undefined) {
          return state.pending.bytes >= BACKLOG * flushThreshold ? Effect.asVoid(Fiber.await(running)) : Effect.void
        }
        return Effect.map(Effect.forkIn(writeBacklog, scope), (fiber) => {
          state.background = fiber
          fiber.addObserver(() => {
            if (state.background === fiber) state.background = undefined
          })
        })
      })
      const maybeFlush = (boundary: boolean) =>
        boundary || state.closed ? autoFlush : state.pending.bytes >= flushThreshold ? flushInBackground : Effect.void
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
            // §2: streaming deltas are not persisted (Codex's rollout policy); the completed item is.
            if (!isPersisted(event.msg.type)) return Effect.void
            append(eventLine(now(), event))
            return maybeFlush(isTurnBoundary(event.msg.type))
          }),
        events: (events) =>
          Effect.suspend(() => {
            // One timestamp per batch: formatting a date costs as much as serialising the event.
            // Per event type, a hand-built line (rolloutLines.ts): JSON.stringify of the whole line was the cost.
            return maybeFlush(appendEventLines(state.pending, now(), events))
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
          })
      }
      return { writer, acquireMarker }
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
