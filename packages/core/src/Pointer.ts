/**
 * Pointer files (§22): small text files such as "the last thread of this workspace". A write goes
 * to a temporary file in the same folder, is synced, then renamed over the pointer, mode 0600, so a
 * crash leaves the old pointer or the new one, never an empty or partial one. Nothing stays open.
 * Folders it creates are 0700 (§32).
 */
import { createHash, randomUUID } from "node:crypto"
import { ThreadId } from "@deputy/protocol"
import { FileSystem, Path } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { Data, Effect, Option } from "effect"
import type { InvalidInput } from "./errors.js"
import { decode } from "./internal/decode.js"
import { deputyHome } from "./internal/home.js"

/** The file system refused to read or write a pointer. */
export class PointerFailed extends Data.TaggedError("PointerFailed")<{
  readonly path: string
  readonly operation: "read" | "write"
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message() {
    return `pointer ${this.operation} failed for ${this.path}: ${this.reason}`
  }
}

/** The folder of pointer files, relative to home. */
export const POINTERS_DIR = "pointers"

const failed = (path: string, operation: "read" | "write") => (error: PlatformError) =>
  new PointerFailed({ path, operation, reason: error.message, cause: error })

/**
 * Replaces the pointer at `path` with `value` atomically (temp file, sync, rename), mode 0600,
 * creating its folder. On failure the old pointer is untouched and the temp file removed.
 */
export const writePointer = Effect.fn("Pointer.write")(function* (path: string, value: string) {
  const fs = yield* FileSystem.FileSystem
  const paths = yield* Path.Path
  const dir = paths.dirname(path)
  const temp = paths.join(dir, `.${paths.basename(path)}.${randomUUID()}.tmp`)
  const write = Effect.gen(function* () {
    yield* fs.makeDirectory(dir, { recursive: true, mode: 0o700 }) // §32: folders under home are private
    yield* Effect.scoped(
      Effect.gen(function* () {
        const file = yield* fs.open(temp, { flag: "wx", mode: 0o600 })
        yield* file.writeAll(new TextEncoder().encode(value))
        yield* file.sync // the bytes are on disk before the rename makes them the pointer
      })
    )
    yield* fs.chmod(temp, 0o600) // the umask cannot widen it, but an odd one could narrow it
    yield* fs.rename(temp, path)
  })
  yield* write.pipe(
    Effect.tapError(() => Effect.ignore(fs.remove(temp, { force: true }))),
    Effect.mapError(failed(path, "write")),
    Effect.uninterruptible
  )
})

/** The pointer's text, trimmed; none when there is no pointer (or it is empty). Temp files beside it are ignored. */
export const readPointer = Effect.fn("Pointer.read")(function* (path: string) {
  const fs = yield* FileSystem.FileSystem
  const text = yield* fs.readFileString(path).pipe(
    Effect.map(Option.some),
    Effect.catchIf(
      (error) => error._tag === "SystemError" && error.reason === "NotFound",
      () => Effect.succeed(Option.none<string>())
    ),
    Effect.mapError(failed(path, "read"))
  )
  return Option.filter(
    Option.map(text, (value) => value.trim()),
    (value) => value !== ""
  )
})

/** The pointer file for a workspace folder: `home/pointers/<sha256 of its absolute real path>`. */
export const workspacePointerPath = Effect.fn("Pointer.workspacePath")(function* (
  cwd: string,
  options: { readonly home?: string } = {}
) {
  const fs = yield* FileSystem.FileSystem
  const paths = yield* Path.Path
  const home = options.home === undefined ? yield* deputyHome : paths.resolve(options.home)
  const absolute = paths.resolve(cwd)
  // One workspace reached through a symlink is still one workspace.
  const real = yield* fs.realPath(absolute).pipe(Effect.orElseSucceed(() => absolute))
  return paths.join(home, POINTERS_DIR, createHash("sha256").update(real).digest("hex"))
})

/** Remembers `threadId` as the last thread used in the workspace folder `cwd`. */
export const writeLastThread = (
  cwd: string,
  threadId: ThreadId,
  options: { readonly home?: string } = {}
): Effect.Effect<void, PointerFailed, FileSystem.FileSystem | Path.Path> =>
  Effect.flatMap(workspacePointerPath(cwd, options), (path) => writePointer(path, `${threadId}\n`))

/**
 * The last thread used in the workspace folder `cwd`, if any. A pointer that does not hold a UUID
 * fails with InvalidInput naming the pointer file.
 */
export const readLastThread = (
  cwd: string,
  options: { readonly home?: string } = {}
): Effect.Effect<Option.Option<ThreadId>, PointerFailed | InvalidInput, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const path = yield* workspacePointerPath(cwd, options)
    const value = yield* readPointer(path)
    if (Option.isNone(value)) return Option.none()
    return Option.some(yield* decode(ThreadId, `pointer ${path}`)(value.value))
  })
