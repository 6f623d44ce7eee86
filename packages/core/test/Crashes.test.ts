import { spawnSync } from "node:child_process"
import { newThreadId, type RolloutItem, type RolloutMeta, userText } from "@deputy/protocol"
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect, Exit, Option, Scope } from "effect"
import { isMarkerProcessAlive, LIVE_DIR, type LiveMarker, ownProcessStart } from "../src/Crashes.js"
import { RolloutStore, type RolloutStoreService } from "../src/Rollout.js"

const metaOf = (): Omit<RolloutMeta, "type"> => ({
  threadId: newThreadId(),
  createdAt: "2026-11-22T01:14:33.000Z",
  backend: "scripted",
  cwd: "/work",
  source: { type: "top_level" }
})

/** A pid that was a process a moment ago and is not one now. */
const deadPid = (): number => {
  const ran = spawnSync("sh", ["-c", "echo $$"], { encoding: "utf8" })
  return Number(ran.stdout.trim())
}

const tempStore = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  const home = yield* fs.makeTempDirectoryScoped({ prefix: "deputy-crashes-" })
  const store = yield* Effect.provide(RolloutStore, RolloutStore.layer({ home }))
  return { fs, home, store }
})

/** A rollout with one turn, written and closed; returns its path. */
const writtenRollout = (store: RolloutStoreService, meta: Omit<RolloutMeta, "type">) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const writer = yield* Scope.extend(store.create(meta, { mode: "lazy" }), scope)
    yield* writer.submission({ id: "t1", op: userText("hi") })
    yield* writer.event({ id: "t1", msg: { type: "turn_complete", turnId: "t1" } })
    const path = Option.getOrThrow(yield* writer.path)
    yield* Scope.close(scope, Exit.void)
    return path
  })

const kinds = (lines: ReadonlyArray<RolloutItem>) =>
  lines.map((line) => (line.type === "terminal" ? `terminal ${line.state}` : line.type))

layer(NodeContext.layer, { excludeTestServices: true })("Crashes", (it) => {
  it.scoped("a writer's live marker exists from its file's creation until its terminal record", () =>
    Effect.gen(function* () {
      const { fs, home, store } = yield* tempStore
      const meta = metaOf()
      const marker = `${home}/${LIVE_DIR}/${meta.threadId}.json`
      const writer = yield* store.create(meta, { mode: "lazy" })
      assert.isFalse(yield* fs.exists(marker)) // §20: no file yet, so nothing to mark
      yield* writer.submission({ id: "t1", op: userText("hi") })
      const written = JSON.parse(yield* fs.readFileString(marker)) as LiveMarker
      assert.strictEqual(written.pid, process.pid)
      assert.strictEqual(written.path, Option.getOrThrow(yield* writer.path))
      assert.strictEqual(written.processStart, yield* Effect.promise(ownProcessStart))
      assert.isTrue(yield* Effect.promise(() => isMarkerProcessAlive(written)))
      yield* writer.terminal("completed", "done")
      yield* writer.terminal("failed") // only the first counts
      assert.isFalse(yield* fs.exists(marker))
      const contents = yield* store.read(written.path)
      assert.deepStrictEqual(kinds(contents.lines), ["submission", "terminal completed"])
      assert.deepInclude(contents.lines[1], { type: "terminal", state: "completed", reason: "done" })
    })
  )

  it.scoped("closing a writer in order removes its marker; resuming writes it again", () =>
    Effect.gen(function* () {
      const { fs, home, store } = yield* tempStore
      const meta = metaOf()
      const marker = `${home}/${LIVE_DIR}/${meta.threadId}.json`
      const path = yield* writtenRollout(store, meta)
      assert.isFalse(yield* fs.exists(marker))
      const scope = yield* Scope.make()
      yield* Scope.extend(store.resume(path), scope)
      assert.isTrue(yield* fs.exists(marker))
      yield* Scope.close(scope, Exit.void)
      assert.isFalse(yield* fs.exists(marker))
    })
  )

  it.scoped(
    "markCrashed ends the rollout of a dead process's marker with terminal crashed and removes the marker",
    () =>
      Effect.gen(function* () {
        const { fs, home, store } = yield* tempStore
        const meta = metaOf()
        const path = yield* writtenRollout(store, meta)
        const pid = deadPid()
        const marker = `${home}/${LIVE_DIR}/${meta.threadId}.json`
        yield* fs.writeFileString(marker, JSON.stringify({ pid, startedAt: new Date().toISOString(), path }))
        // A torn last line, as a crash mid-write leaves it, is cut off before the terminal record.
        yield* fs.writeFileString(path, '{"type":"event","at":"2026-11', { flag: "a" })
        assert.deepStrictEqual(yield* store.markCrashed, [meta.threadId])
        const contents = yield* store.read(path)
        assert.deepStrictEqual(kinds(contents.lines), ["submission", "event", "terminal crashed"])
        assert.deepStrictEqual(contents.warnings, [])
        const last = contents.lines.at(-1)
        assert.include(last?.type === "terminal" ? last.reason : "", `pid ${pid}`)
        assert.isFalse(yield* fs.exists(marker))
        assert.deepStrictEqual(yield* store.markCrashed, []) // nothing left to mark
      })
  )

  it.scoped("markCrashed leaves live processes alone but not a reused pid, and tidies bad markers", () =>
    Effect.gen(function* () {
      const { fs, home, store } = yield* tempStore
      const live = `${home}/${LIVE_DIR}`
      const ours = metaOf()
      const reused = metaOf()
      const ended = metaOf()
      const gone = metaOf()
      const oursPath = yield* writtenRollout(store, ours)
      const reusedPath = yield* writtenRollout(store, reused)
      const endedPath = yield* writtenRollout(store, ended)
      const startedAt = new Date().toISOString()
      // This process, alive: left alone.
      yield* fs.writeFileString(
        `${live}/${ours.threadId}.json`,
        JSON.stringify({ pid: process.pid, startedAt, path: oursPath })
      )
      // Our pid with another start time: a reused pid, so the writer is gone (Linux only can tell).
      const canTell = (yield* Effect.promise(ownProcessStart)) !== undefined
      yield* fs.writeFileString(
        `${live}/${reused.threadId}.json`,
        JSON.stringify({ pid: process.pid, startedAt, path: reusedPath, processStart: "1" })
      )
      // Already ended (the process died between its terminal line and the marker's removal).
      yield* Effect.scoped(Effect.flatMap(store.resume(endedPath), (writer) => writer.terminal("shutdown")))
      yield* fs.writeFileString(
        `${live}/${ended.threadId}.json`,
        JSON.stringify({ pid: deadPid(), startedAt, path: endedPath })
      )
      // A rollout that is gone, and a marker that is not JSON.
      yield* fs.writeFileString(
        `${live}/${gone.threadId}.json`,
        JSON.stringify({ pid: deadPid(), startedAt, path: `${home}/sessions/none.jsonl` })
      )
      yield* fs.writeFileString(`${live}/${newThreadId()}.json`, "{")

      const marked = yield* store.markCrashed
      assert.deepStrictEqual(marked, canTell ? [reused.threadId] : [])
      assert.deepStrictEqual(kinds((yield* store.read(endedPath)).lines), ["submission", "event", "terminal shutdown"])
      assert.deepStrictEqual(kinds((yield* store.read(oursPath)).lines), ["submission", "event"])
      const left = (yield* fs.readDirectory(live)).sort()
      assert.deepStrictEqual(left, [`${ours.threadId}.json`, ...(canTell ? [] : [`${reused.threadId}.json`])].sort())
    })
  )

  it.scoped("a fork's snapshot does not carry its source's terminal record", () =>
    Effect.gen(function* () {
      const { store } = yield* tempStore
      const source = metaOf()
      const sourcePath = yield* writtenRollout(store, source)
      yield* Effect.scoped(Effect.flatMap(store.resume(sourcePath), (writer) => writer.terminal("shutdown")))
      const history = (yield* store.read(sourcePath)).lines
      assert.strictEqual(history.at(-1)?.type, "terminal")
      const fork = yield* store.create(metaOf(), { mode: "immediate", history })
      const forkPath = Option.getOrThrow(yield* fork.path)
      assert.deepStrictEqual(kinds((yield* store.read(forkPath)).lines), ["submission", "event"])
    })
  )
})
