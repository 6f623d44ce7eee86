import { spawn, spawnSync } from "node:child_process"
import { statSync } from "node:fs"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { newThreadId, type RolloutItem, type RolloutMeta, userText } from "@deputy/protocol"
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Option, Scope } from "effect"
import {
  isMarkerProcessAlive,
  LIVE_DIR,
  type LiveMarker,
  ownProcessStart,
  PROCESS_MARKER_FILE
} from "../src/Crashes.js"
import { RolloutStore, type RolloutStoreService } from "../src/Rollout.js"

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url))
const resumeChild = fileURLToPath(new URL("./fixtures/resumeChild.ts", import.meta.url))

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

/** A store in a fresh temp home, open (its layer built) until the test's scope closes. */
const tempStore = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  const home = yield* fs.makeTempDirectoryScoped({ prefix: "deputy-crashes-" })
  const store = Context.get(yield* Layer.build(RolloutStore.layer({ home })), RolloutStore)
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
      assert.strictEqual(written.processStart, yield* Effect.promise(ownProcessStart))
      assert.isTrue(yield* Effect.promise(() => isMarkerProcessAlive(written)))
      // A new thread's marker is a hard link to the marker its process's new threads share, which
      // names no rollout (its rollout is under sessions/, found by thread id).
      assert.isUndefined(written.path)
      const shared = (yield* fs.readDirectory(`${home}/${LIVE_DIR}`)).filter((name) => PROCESS_MARKER_FILE.test(name))
      assert.deepStrictEqual(shared, [`.process-${process.pid}-${shared[0]?.slice(`.process-${process.pid}-`.length)}`])
      assert.strictEqual(statSync(marker).ino, statSync(`${home}/${LIVE_DIR}/${shared[0]}`).ino)
      yield* writer.terminal("completed", "done")
      yield* writer.terminal("failed") // only the first counts
      assert.isFalse(yield* fs.exists(marker))
      const contents = yield* store.read(Option.getOrThrow(yield* writer.path))
      assert.deepStrictEqual(kinds(contents.lines), ["submission", "terminal completed"])
      assert.deepInclude(contents.lines[1], { type: "terminal", state: "completed", reason: "done" })
    })
  )

  it.scoped(
    "§20 §34 the store makes its folders once, and again when they were removed between two threads' starts",
    () =>
      Effect.gen(function* () {
        const { fs, home, store } = yield* tempStore
        const started = (meta: Omit<RolloutMeta, "type">) =>
          Effect.gen(function* () {
            const writer = yield* store.create(meta, { mode: "lazy" })
            yield* writer.submission({ id: "t1", op: userText("hi") })
            return { writer, path: Option.getOrThrow(yield* writer.path) }
          })
        const first = yield* started(metaOf())
        yield* first.writer.terminal("completed")
        // Someone tidies up: the day folder of the rollouts and the folder of live markers go.
        yield* fs.remove(`${home}/sessions`, { recursive: true })
        yield* fs.remove(`${home}/${LIVE_DIR}`, { recursive: true })
        const meta = metaOf()
        const second = yield* started(meta)
        const marker = `${home}/${LIVE_DIR}/${meta.threadId}.json`
        assert.strictEqual((JSON.parse(yield* fs.readFileString(marker)) as LiveMarker).pid, process.pid)
        // Only the live marker folder goes this time, after the rollout was made: the next marker makes it again.
        yield* fs.remove(`${home}/${LIVE_DIR}`, { recursive: true })
        const third = yield* started(metaOf())
        yield* Effect.forEach([second, third], ({ writer }) => writer.terminal("completed"))
        for (const { path } of [second, third]) {
          assert.deepStrictEqual(kinds((yield* store.read(path)).lines), ["submission", "terminal completed"])
        }
        // Every marker is gone with its terminal record, and no temporary file was left beside them:
        // only the marker they shared (made again with the folder) stays, until the store closes.
        const left = yield* fs.readDirectory(`${home}/${LIVE_DIR}`)
        assert.strictEqual(left.length, 1)
        assert.match(left[0]!, PROCESS_MARKER_FILE)
        assert.strictEqual((yield* fs.stat(`${home}/sessions`)).mode & 0o777, 0o700) // §32
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
      // The marker this process's new threads share stays too: its process is alive.
      const left = (yield* fs.readDirectory(live)).filter((name) => !PROCESS_MARKER_FILE.test(name)).sort()
      assert.deepStrictEqual(left, [`${ours.threadId}.json`, ...(canTell ? [] : [`${reused.threadId}.json`])].sort())
      assert.strictEqual((yield* fs.readDirectory(live)).filter((name) => PROCESS_MARKER_FILE.test(name)).length, 1)
    })
  )

  it.scoped(
    "markCrashed ends a crashed new thread whose marker is a link to its dead process's shared marker (no rollout path), and removes both",
    () =>
      Effect.gen(function* () {
        const { fs, home, store } = yield* tempStore
        const live = `${home}/${LIVE_DIR}`
        const meta = metaOf()
        const path = yield* writtenRollout(store, meta)
        // What a process that died with the thread open left: its shared marker, and the thread's link to it.
        const pid = deadPid()
        const shared = `${live}/.process-${pid}-${newThreadId()}.json`
        yield* fs.writeFileString(shared, `${JSON.stringify({ pid, startedAt: new Date().toISOString() })}\n`)
        yield* fs.link(shared, `${live}/${meta.threadId}.json`)
        assert.deepStrictEqual(yield* store.markCrashed, [meta.threadId])
        const lines = (yield* store.read(path)).lines
        assert.deepStrictEqual(kinds(lines), ["submission", "event", "terminal crashed"])
        const last = lines.at(-1)
        assert.include(last?.type === "terminal" ? last.reason : "", `pid ${pid}`)
        // Both gone; this process's own shared marker (it resumed the rollout to end it) stays while it runs.
        const left = yield* fs.readDirectory(live)
        assert.notInclude(left, `${meta.threadId}.json`)
        assert.notInclude(left, shared.slice(live.length + 1))
        assert.deepStrictEqual(yield* store.markCrashed, [])
      })
  )

  it.effect("closing the store removes the marker its new threads shared", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const home = yield* fs.makeTempDirectory({ prefix: "deputy-crashes-" })
      const open = yield* Effect.gen(function* () {
        yield* writtenRollout(yield* RolloutStore, metaOf())
        return yield* fs.readDirectory(`${home}/${LIVE_DIR}`)
      }).pipe(Effect.provide(RolloutStore.layer({ home })))
      const left = yield* fs.readDirectory(`${home}/${LIVE_DIR}`)
      yield* fs.remove(home, { recursive: true })
      assert.strictEqual(open.filter((name) => PROCESS_MARKER_FILE.test(name)).length, 1)
      assert.deepStrictEqual(left, [])
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

  it.scoped("§34 a second resume of a live thread fails with ThreadLiveElsewhere naming the holder", () =>
    Effect.gen(function* () {
      const { store } = yield* tempStore
      const path = yield* writtenRollout(store, metaOf())
      const first = yield* Scope.make()
      const writer = yield* Scope.extend(store.resume(path), first)
      const second = yield* Effect.flip(Effect.scoped(store.resume(path)))
      assert.strictEqual(second._tag, "ThreadLiveElsewhere")
      assert.strictEqual(second._tag === "ThreadLiveElsewhere" ? second.pid : 0, process.pid)
      assert.include(second.message, `deputy process ${process.pid}`)
      // The holder goes on; once it closes, the thread can be resumed again.
      yield* writer.submission({ id: "t2", op: userText("more") })
      yield* Scope.close(first, Exit.void)
      yield* Effect.scoped(store.resume(path))
    })
  )

  it.scoped("§34 a marker whose process is dead, or whose pid started at another time, is taken over", () =>
    Effect.gen(function* () {
      const { fs, home, store } = yield* tempStore
      const canTell = (yield* Effect.promise(ownProcessStart)) !== undefined
      const stale = [
        { pid: deadPid() },
        ...(canTell ? [{ pid: process.pid, processStart: "1" }] : []),
        { pid: process.pid, closed: { at: new Date().toISOString() } }
      ]
      for (const holder of stale) {
        const meta = metaOf()
        const path = yield* writtenRollout(store, meta)
        const marker = `${home}/${LIVE_DIR}/${meta.threadId}.json`
        yield* fs.writeFileString(marker, JSON.stringify({ ...holder, startedAt: new Date().toISOString(), path }))
        yield* Effect.scoped(
          Effect.gen(function* () {
            yield* store.resume(path)
            const taken = JSON.parse(yield* fs.readFileString(marker)) as LiveMarker
            assert.strictEqual(taken.pid, process.pid)
            assert.isUndefined(taken.closed)
          })
        )
      }
    })
  )

  it.scoped(
    "§34 two processes resume one thread at once: one fails with ThreadLiveElsewhere, no line of the other is lost",
    () =>
      Effect.gen(function* () {
        const { home, store } = yield* tempStore
        const path = yield* writtenRollout(store, metaOf())
        const TURNS = 50
        const start = (name: string) =>
          Effect.gen(function* () {
            const child = spawn(
              process.execPath,
              ["--conditions=@deputy/source", "--import", "tsx", resumeChild, home, path, name, String(TURNS)],
              { cwd: repoRoot, stdio: ["pipe", "pipe", "inherit"] }
            )
            yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
            const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
            const next = Effect.promise(
              async () => JSON.parse((await lines.next()).value as string) as Record<string, unknown>
            )
            assert.deepStrictEqual(yield* next, { ready: true })
            return { child, next }
          })
        const [a, b] = yield* Effect.all([start("a"), start("b")], { concurrency: 2 })
        a.child.stdin!.write("go\n")
        b.child.stdin!.write("go\n")
        const [first, second] = yield* Effect.all([a.next, b.next], { concurrency: 2 })
        const outcomes = [first, second]
        const winner = outcomes.findIndex((outcome) => outcome.resumed === true)
        assert.notStrictEqual(winner, -1)
        const loser = outcomes[1 - winner]!
        const winnerPid = [a, b][winner]!.child.pid
        assert.deepStrictEqual(loser, { error: "ThreadLiveElsewhere", pid: winnerPid })
        const winning = [a, b][winner]!
        winning.child.stdin!.end("write\n")
        assert.deepStrictEqual(yield* [a, b][winner]!.next, { written: TURNS })
        yield* Effect.async<void>((resume) => {
          const child = [a, b][winner]!.child
          if (child.exitCode !== null) resume(Effect.void)
          else child.once("exit", () => resume(Effect.void))
        })
        const contents = yield* store.read(path)
        const name = winner === 0 ? "a" : "b"
        const inputs = contents.lines.flatMap((line) =>
          line.type === "submission" && line.submission.id.startsWith(`${name}-`) ? [line.submission.id] : []
        )
        assert.deepStrictEqual(
          inputs,
          Array.from({ length: TURNS }, (_, turn) => `${name}-${turn}`)
        )
        assert.deepStrictEqual(contents.warnings, [])
      }),
    60_000
  )

  it.scoped(
    "a thread closed in order whose last flush failed (disk full) is not marked crashed at the next start",
    () =>
      Effect.gen(function* () {
        const { fs, home, store } = yield* tempStore
        const meta = metaOf()
        const marker = `${home}/${LIVE_DIR}/${meta.threadId}.json`
        const scope = yield* Scope.make()
        const writer = yield* Scope.extend(store.create(meta, { mode: "lazy", onError: () => Effect.void }), scope)
        yield* writer.submission({ id: "t1", op: userText("hi") })
        const path = Option.getOrThrow(yield* writer.path)
        // The disk refuses every write from now on: a folder where the rollout was.
        yield* fs.rename(path, `${path}.away`)
        yield* fs.makeDirectory(path)
        yield* writer.event({ id: "t1", msg: { type: "turn_complete", turnId: "t1" } })
        yield* writer.terminal("completed", "done")
        yield* Scope.close(scope, Exit.void)
        yield* fs.remove(path, { recursive: true })
        yield* fs.rename(`${path}.away`, path)
        // The process has exited since (its pid is gone): the next start.
        const left = JSON.parse(yield* fs.readFileString(marker)) as LiveMarker
        yield* fs.writeFileString(marker, JSON.stringify({ ...left, pid: deadPid() }))
        assert.deepStrictEqual(yield* store.markCrashed, [])
        const lines = (yield* store.read(path)).lines
        assert.deepStrictEqual(kinds(lines), ["submission", "terminal completed"])
        assert.deepInclude(lines.at(-1), { reason: "done" })
        assert.isFalse(yield* fs.exists(marker))
      })
  )
})
