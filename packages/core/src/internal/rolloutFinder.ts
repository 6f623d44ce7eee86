/**
 * Where rollouts are: the date folders under `sessions/` and `archived_sessions/`, finding a thread's
 * rollout by id, listing live ones newest first a page at a time, and moving one between the two
 * roots. One folder that cannot be listed is skipped with a warning. Holds nothing between calls.
 */
import { canonicalUuid, type RolloutMeta, type ThreadId } from "@deputy/protocol"
import type { FileSystem, Path } from "@effect/platform"
import { Effect, Option } from "effect"
import { InvalidInput } from "../errors.js"
import type { RolloutSummary } from "../Rollout.js"
import { ioFailed, isNotFound, type RolloutIoFailed, RolloutNotFound, type RolloutUnreadable } from "./rolloutErrors.js"
import { ROLLOUT_FILE } from "./rolloutFile.js"

const DEFAULT_LIMIT = 50

/** Finds rollouts under `roots`; `readMeta` reads a listed rollout's metadata line. */
export const makeRolloutFinder = (deps: {
  readonly fs: FileSystem.FileSystem
  readonly path: Path.Path
  readonly roots: { readonly live: string; readonly archived: string }
  readonly readMeta: (file: string) => Effect.Effect<RolloutMeta, RolloutNotFound | RolloutUnreadable | RolloutIoFailed>
}) => {
  const { fs, path, roots, readMeta } = deps

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

  /** Every live (not archived) rollout by thread id, in one pass (the crash sweep's many lookups). */
  const liveIndex = Effect.gen(function* () {
    const index = new Map<string, string>()
    for (const day of yield* dayFolders(roots.live)) {
      for (const name of yield* listSubDir(path.join(roots.live, day))) {
        const id = ROLLOUT_FILE.exec(name)?.[2]
        if (id !== undefined) index.set(id, path.join(roots.live, day, name))
      }
    }
    return index as ReadonlyMap<string, string>
  })

  return { findIn, findById, list, allMetas, move, liveIndex }
}

/** What `makeRolloutFinder` gives. */
export type RolloutFinder = ReturnType<typeof makeRolloutFinder>
