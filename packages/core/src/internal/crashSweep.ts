/**
 * The crash sweep, run once at start (§34): for every live marker whose process is gone, the rollout
 * it names gets `terminal crashed` (or, for a writer that closed in order but could not flush, the
 * ending it recorded) and the marker goes. Holds nothing between runs.
 */
import type { ThreadId } from "@deputy/protocol"
import { FileSystem, type Path } from "@effect/platform"
import { Effect, Either, Option, type Scope } from "effect"
import { isMarkerProcessAlive, LIVE_MARKER_FILE, PROCESS_MARKER_FILE, readLiveMarker } from "../Crashes.js"
import type { RolloutContents, RolloutError, RolloutWriter } from "../Rollout.js"
import { isNotFound, type RolloutIoFailed, type RolloutNotFound, type RolloutUnreadable } from "./rolloutErrors.js"

/** `markCrashed` of a store: `read` and `resume` are the store's own. */
export const makeCrashSweep = (deps: {
  readonly fs: FileSystem.FileSystem
  readonly path: Path.Path
  readonly liveDir: string
  /** Every live rollout by thread id: where the rollout of a marker naming none is (Crashes.ts `ProcessMarker`). */
  readonly liveIndex: Effect.Effect<ReadonlyMap<string, string>, RolloutIoFailed>
  readonly read: (file: string) => Effect.Effect<RolloutContents, RolloutNotFound | RolloutUnreadable | RolloutIoFailed>
  readonly resume: (
    file: string,
    options: { readonly onError?: (error: RolloutIoFailed) => Effect.Effect<void> }
  ) => Effect.Effect<RolloutWriter, RolloutError, Scope.Scope>
}): Effect.Effect<ReadonlyArray<ThreadId>> => {
  const { fs, path, liveDir, read, resume } = deps
  const removeQuietly = (file: string) => Effect.ignore(fs.remove(file, { force: true }))

  /**
   * Ends one dead marker's rollout; true when this call wrote its `terminal crashed`. A marker left by
   * a writer that closed in order (`closed`) is no crash: its own terminal record is written instead,
   * when the disk refused it then.
   */
  const endCrashed = (
    threadId: ThreadId,
    markerFile: string,
    index: Effect.Effect<ReadonlyMap<string, string>, RolloutIoFailed>
  ) =>
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
      const held = read_.value.value
      if (held.closed === undefined && (yield* Effect.promise(() => isMarkerProcessAlive(held)))) return false
      // A new thread's marker (a link to its process's shared one) names no rollout: it is under sessions/.
      const rollout = held.path ?? (yield* index).get(threadId)
      if (rollout === undefined) {
        yield* Effect.logWarning(`thread ${threadId} crashed, but it has no rollout under sessions/ to end`)
        yield* removeQuietly(markerFile)
        return false
      }
      const marker = { ...held, path: rollout }
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

  /** A process's shared marker goes once that process is gone (its threads' markers are links, kept). */
  const removeIfDead = (file: string) =>
    Effect.gen(function* () {
      const shared = yield* readLiveMarker(file).pipe(
        Effect.provideService(FileSystem.FileSystem, fs),
        Effect.orElseSucceed(() => Option.none())
      )
      // Unreadable: being written by its (live) process right now, or torn by a crash; the pid in its name decides.
      const pid = Number(PROCESS_MARKER_FILE.exec(path.basename(file))?.[1])
      const alive = Option.isSome(shared)
        ? yield* Effect.promise(() => isMarkerProcessAlive(shared.value))
        : yield* Effect.promise(() => isMarkerProcessAlive({ pid, startedAt: new Date(0).toISOString() }))
      if (!alive) yield* removeQuietly(file)
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
    // Listed once per sweep, at the first marker that needs it.
    const index = yield* Effect.cached(deps.liveIndex)
    const marked: Array<ThreadId> = []
    for (const name of names) {
      if (PROCESS_MARKER_FILE.test(name)) {
        yield* removeIfDead(path.join(liveDir, name))
        continue
      }
      const match = LIVE_MARKER_FILE.exec(name) // skips the pointer writer's temp files
      if (match?.[1] === undefined) continue
      const threadId = match[1] as ThreadId
      const ended = yield* endCrashed(threadId, path.join(liveDir, name), index).pipe(
        Effect.catchAll((error) =>
          Effect.as(Effect.logWarning(`cannot mark thread ${threadId} crashed: ${error.message}`), false)
        )
      )
      if (ended) marked.push(threadId)
    }
    return marked.sort()
  }).pipe(Effect.withSpan("RolloutStore.markCrashed"))

  return markCrashed
}
