// Where rollouts are (internal/rolloutFinder.ts): date folders, findById, list, move, on real folders.
import { newThreadId, type RolloutMeta, type ThreadId } from "@deputy/protocol"
import { FileSystem, Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect, Option } from "effect"
import { relativeRolloutPath } from "../src/internal/rolloutFile.js"
import { makeRolloutFinder } from "../src/internal/rolloutFinder.js"

layer(NodeContext.layer, { excludeTestServices: true })("rolloutFinder", (it) => {
  const setUp = Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const home = yield* fs.makeTempDirectoryScoped({ prefix: "deputy-finder-" })
    const roots = { live: `${home}/sessions`, archived: `${home}/archived_sessions` }
    // Metadata is not what is tested here: every file "reads" as the same stand-in.
    const readMeta = (_file: string) => Effect.succeed({ type: "meta" } as RolloutMeta)
    const finder = makeRolloutFinder({ fs, path, roots, readMeta })
    const place = (threadId: ThreadId, createdAt: string) =>
      Effect.gen(function* () {
        const file = `${roots.live}/${relativeRolloutPath(threadId, new Date(createdAt))}`
        yield* fs.makeDirectory(path.dirname(file), { recursive: true })
        yield* fs.writeFileString(file, "{}\n")
        return file
      })
    return { fs, roots, finder, place }
  })

  it.scoped("list is newest first across day folders; findById and move follow a thread between the roots", () =>
    Effect.gen(function* () {
      const { finder, place, roots } = yield* setUp
      const [a, b, c] = [newThreadId(), newThreadId(), newThreadId()]
      yield* place(a, "2026-01-01T00:00:00.000Z")
      yield* place(b, "2026-02-01T00:00:00.000Z")
      const cFile = yield* place(c, "2026-02-01T01:00:00.000Z")
      const page = yield* finder.list({ limit: 2 })
      assert.deepStrictEqual(
        page.items.map((item) => item.threadId),
        [c, b]
      )
      const rest = yield* finder.list({ limit: 2, cursor: Option.getOrThrow(page.nextCursor) })
      assert.deepStrictEqual(
        rest.items.map((item) => item.threadId),
        [a]
      )
      assert.deepStrictEqual(yield* finder.findById(c.toUpperCase()), { threadId: c, path: cFile, archived: false })
      const archived = yield* finder.move(c, "live")
      assert.strictEqual(archived, cFile.replace(roots.live, roots.archived))
      assert.isTrue((yield* finder.findById(c)).archived)
      assert.strictEqual((yield* Effect.flip(finder.findById(newThreadId())))._tag, "RolloutNotFound")
    })
  )

  it.scoped("a month or day folder that cannot be listed is skipped, not fatal", () =>
    Effect.gen(function* () {
      const { fs, finder, place, roots } = yield* setUp
      const a = newThreadId()
      yield* place(a, "2026-01-01T00:00:00.000Z")
      yield* fs.writeFileString(`${roots.live}/2026/01/02`, "a file where a day folder should be")
      yield* fs.writeFileString(`${roots.live}/2025`, "a file where a year folder should be")
      assert.deepStrictEqual(
        (yield* finder.list()).items.map((item) => item.threadId),
        [a]
      )
      assert.strictEqual((yield* finder.allMetas).length, 1)
    })
  )
})
