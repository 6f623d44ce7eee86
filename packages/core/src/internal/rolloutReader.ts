/**
 * The rollout reader and its repair: reads a whole rollout in one pass (§21), or only its metadata
 * line, and readies a rollout's end for appends when it is resumed (a torn last line cut off, a
 * complete one ended with its newline), saying what it changed. Holds nothing between calls.
 */
import * as NodeFs from "node:fs"
import type { FileSystem } from "@effect/platform"
import { Effect, Either, Option } from "effect"
import { ioFailed, isNotFound, RolloutIoFailed, RolloutNotFound, RolloutUnreadable } from "./rolloutErrors.js"
import { encodeUtf8, parseMetaLine, parseRollout, parsesAsJson, type RolloutWarning } from "./rolloutFile.js"

const CHUNK = 64 * 1024
const MAX_META_BYTES = 16 * 1024 * 1024

/** Reads rollouts from `fs`. */
export const makeRolloutReader = (fs: FileSystem.FileSystem) => {
  // Read on node:fs in one promise (issue 12: a stress run reads every rollout back; the platform's
  // readFile was most of a small file's read). Untraced: no span, no stack captured per read.
  const readWhole = (file: string) =>
    Effect.async<Uint8Array, RolloutNotFound | RolloutIoFailed>((resume) => {
      NodeFs.readFile(file, (error, bytes) => {
        if (error === null) resume(Effect.succeed(bytes))
        else if (error.code === "ENOENT") resume(Effect.fail(new RolloutNotFound({ path: file })))
        else
          resume(
            Effect.fail(new RolloutIoFailed({ path: file, operation: "read", reason: error.message, cause: error }))
          )
      })
    })

  const read = Effect.fnUntraced(function* (file: string) {
    const parsed = parseRollout(file, yield* readWhole(file))
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

  return { read, readMeta, repairTail }
}

/** What `makeRolloutReader` gives. */
export type RolloutReader = ReturnType<typeof makeRolloutReader>
