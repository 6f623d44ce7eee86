import { spawn } from "node:child_process"
import { homedir } from "node:os"
import { fileURLToPath } from "node:url"
import {
  type Event,
  newThreadId,
  type RolloutItem,
  type RolloutMeta,
  type Submission,
  userText
} from "@deputy/protocol"
import { FileSystem, Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, layer } from "@effect/vitest"
import { ConfigProvider, Effect, Exit, Option, Ref, Scope } from "effect"
import { deputyHome } from "../src/internal/home.js"
import { writeLastThread } from "../src/Pointer.js"
import { type RolloutIoFailed, RolloutStore, type RolloutStoreService } from "../src/Rollout.js"

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url))
const childFixture = fileURLToPath(new URL("./fixtures/rolloutWriterChild.ts", import.meta.url))

const metaOf = (overrides: Partial<Omit<RolloutMeta, "type">> = {}): Omit<RolloutMeta, "type"> => ({
  threadId: newThreadId(),
  createdAt: "2026-11-22T01:14:33.000Z",
  backend: "scripted",
  cwd: "/work",
  source: { type: "top_level" },
  ...overrides
})

const userInput = (id: string, text = "hello"): Submission => ({ id, op: userText(text) })
const message = (id: string, text: string): Event => ({ id, msg: { type: "agent_message", message: text } })
const turnComplete = (id: string): Event => ({ id, msg: { type: "turn_complete", turnId: id } })
const configured = (threadId: string): Event => ({
  id: "init",
  msg: { type: "session_configured", threadId, backend: "scripted" }
})
const at = "2026-11-22T01:14:34.000Z"
const metaLine = (meta: Omit<RolloutMeta, "type">) => JSON.stringify({ type: "meta", ...meta })
const eventLine = (event: Event) => JSON.stringify({ type: "event", at, event })

/** A store in a fresh temp home, removed when the test's scope closes. */
const tempStore = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  const home = yield* fs.makeTempDirectoryScoped({ prefix: "deputy-rollout-" })
  const store = yield* Effect.provide(RolloutStore, RolloutStore.layer({ home }))
  return { fs, home, store }
})

/** The writer lives in its own scope so the test can close it (which flushes). */
const openWriter = (
  store: RolloutStoreService,
  meta: Omit<RolloutMeta, "type">,
  options: Parameters<RolloutStoreService["create"]>[1]
) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const writer = yield* Scope.extend(store.create(meta, options), scope)
    return { writer, close: Scope.close(scope, Exit.void) }
  })

const kinds = (lines: ReadonlyArray<RolloutItem>) =>
  lines.map((line) =>
    line.type === "submission" ? line.submission.op.type : line.type === "event" ? line.event.msg.type : line.type
  )

layer(NodeContext.layer, { excludeTestServices: true })("RolloutStore", (it) => {
  describe("writing", () => {
    it.scoped("§20 a fresh thread leaves no rollout file until its first turn, then it starts with the metadata", () =>
      Effect.gen(function* () {
        const { fs, store } = yield* tempStore
        const meta = metaOf()
        const { writer } = yield* openWriter(store, meta, { mode: "lazy" })
        yield* writer.event(configured(meta.threadId))
        yield* writer.flush
        assert.isTrue(Option.isNone(yield* writer.path))
        assert.strictEqual((yield* Effect.flip(store.findById(meta.threadId)))._tag, "RolloutNotFound")

        yield* writer.submission(userInput("turn-1"))
        const path = Option.getOrThrow(yield* writer.path)
        assert.isTrue(yield* fs.exists(path))
        assert.strictEqual((yield* store.findById(meta.threadId)).path, path)
        const firstLine = (yield* fs.readFileString(path)).split("\n")[0]!
        assert.deepStrictEqual(JSON.parse(firstLine), { type: "meta", ...meta })
        const back = yield* store.read(path)
        assert.deepStrictEqual(back.meta, { type: "meta", ...meta })
        assert.deepStrictEqual(kinds(back.lines), ["session_configured", "user_input"])
        assert.match(path, /sessions\/2026\/11\/22\/rollout-2026-11-22T01-14-33-[0-9a-f-]{36}\.jsonl$/)
      })
    )

    it.scoped("§20 a lazy writer records the backend's thread id in the metadata written at the first turn", () =>
      Effect.gen(function* () {
        const { store } = yield* tempStore
        const meta = metaOf()
        const { writer } = yield* openWriter(store, meta, { mode: "lazy" })
        yield* writer.setBackendThreadId("codex-thread-7")
        yield* writer.submission(userInput("turn-1"))
        const back = yield* store.read(Option.getOrThrow(yield* writer.path))
        assert.strictEqual(back.meta.backendThreadId, "codex-thread-7")
      })
    )

    it.scoped("§20 a forked thread writes its rollout at once: metadata, then the snapshot's history", () =>
      Effect.gen(function* () {
        const { fs, store } = yield* tempStore
        const source = newThreadId()
        const meta = metaOf({ forkedFromId: source })
        const history: ReadonlyArray<RolloutItem> = [
          { type: "submission", at, submission: userInput("turn-0") },
          { type: "event", at, event: turnComplete("turn-0") }
        ]
        const { writer } = yield* openWriter(store, meta, { mode: "immediate", history })
        const path = Option.getOrThrow(yield* writer.path)
        assert.isTrue(yield* fs.exists(path))
        const back = yield* store.read(path)
        assert.strictEqual(back.meta.forkedFromId, source)
        assert.deepStrictEqual(back.lines, history)
      })
    )

    it.scoped("§20 a resumed thread appends to its file", () =>
      Effect.gen(function* () {
        const { store } = yield* tempStore
        const meta = metaOf()
        const first = yield* openWriter(store, meta, { mode: "lazy" })
        yield* first.writer.submission(userInput("turn-1"))
        yield* first.writer.event(turnComplete("turn-1"))
        const path = Option.getOrThrow(yield* first.writer.path)
        yield* first.close

        const scope = yield* Scope.make()
        const resumed = yield* Scope.extend(store.resume(path), scope)
        assert.strictEqual(resumed.threadId, meta.threadId)
        assert.deepStrictEqual(yield* resumed.path, Option.some(path))
        yield* resumed.submission(userInput("turn-2"))
        yield* resumed.event(message("turn-2", "again"))
        yield* Scope.close(scope, Exit.void)

        const back = yield* store.read(path)
        assert.deepStrictEqual(kinds(back.lines), ["user_input", "turn_complete", "user_input", "agent_message"])
        assert.deepStrictEqual(back.warnings, [])
      })
    )

    it.scoped("§34 appends use O_APPEND: a line that reached the file meanwhile is never overwritten", () =>
      Effect.gen(function* () {
        const { fs, store } = yield* tempStore
        const meta = metaOf()
        const first = yield* openWriter(store, meta, { mode: "lazy" })
        yield* first.writer.submission(userInput("turn-1"))
        yield* first.writer.event(turnComplete("turn-1"))
        const path = Option.getOrThrow(yield* first.writer.path)
        // Another writer's line lands after this writer's last flush (what two processes did before §34).
        yield* fs.writeFileString(path, `${eventLine(message("other", "written elsewhere"))}\n`, { flag: "a" })
        yield* first.writer.submission(userInput("turn-2"))
        yield* first.writer.event(turnComplete("turn-2"))
        yield* first.close
        const back = yield* store.read(path)
        assert.deepStrictEqual(kinds(back.lines), [
          "user_input",
          "turn_complete",
          "agent_message",
          "user_input",
          "turn_complete"
        ])
        assert.deepStrictEqual(back.warnings, [])
      })
    )

    it.scoped("§20 a turn boundary flushes: the line is on disk after turn_complete, without closing", () =>
      Effect.gen(function* () {
        const { store } = yield* tempStore
        const { writer } = yield* openWriter(store, metaOf(), { mode: "lazy" })
        yield* writer.submission(userInput("turn-1"))
        const path = Option.getOrThrow(yield* writer.path)
        yield* writer.event(message("turn-1", "working"))
        assert.deepStrictEqual(kinds((yield* store.read(path)).lines), ["user_input"]) // buffered, not yet written
        yield* writer.event(turnComplete("turn-1"))
        assert.deepStrictEqual(kinds((yield* store.read(path)).lines), ["user_input", "agent_message", "turn_complete"])
      })
    )

    it.scoped("§20 closing the writer's scope flushes what it buffered", () =>
      Effect.gen(function* () {
        const { store } = yield* tempStore
        const { writer, close } = yield* openWriter(store, metaOf(), { mode: "lazy" })
        yield* writer.submission(userInput("turn-1"))
        yield* writer.event(message("turn-1", "half done"))
        const path = Option.getOrThrow(yield* writer.path)
        yield* close
        assert.deepStrictEqual(kinds((yield* store.read(path)).lines), ["user_input", "agent_message"])
      })
    )

    it.scoped("§20 a failed creation is reported to onError and the next turn tries again, losing no line", () =>
      Effect.gen(function* () {
        const { fs, home, store } = yield* tempStore
        const path = yield* Path.Path
        const blocker = path.join(home, "sessions")
        yield* fs.writeFileString(blocker, "a file where the sessions folder should be")
        const errors = yield* Ref.make<ReadonlyArray<RolloutIoFailed>>([])
        const { writer } = yield* openWriter(store, metaOf(), {
          mode: "lazy",
          onError: (error) => Ref.update(errors, (all) => [...all, error])
        })
        yield* writer.submission(userInput("turn-1"))
        yield* writer.event(turnComplete("turn-1"))
        const reported = yield* Ref.get(errors)
        assert.isAtLeast(reported.length, 1)
        assert.strictEqual(reported[0]!._tag, "RolloutIoFailed")
        assert.strictEqual(reported[0]!.operation, "create")
        assert.isTrue(Option.isNone(yield* writer.path))
        assert.strictEqual((yield* Effect.flip(writer.flush)).operation, "create")

        yield* fs.remove(blocker)
        yield* writer.submission(userInput("turn-2"))
        const file = Option.getOrThrow(yield* writer.path)
        assert.deepStrictEqual(kinds((yield* store.read(file)).lines), ["user_input", "turn_complete", "user_input"])
      })
    )

    it.scoped(
      "§20 a failed append is reported, and the next turn boundary writes the kept lines after the last whole line",
      () =>
        Effect.gen(function* () {
          const { fs, store } = yield* tempStore
          const errors = yield* Ref.make<ReadonlyArray<RolloutIoFailed>>([])
          const { writer } = yield* openWriter(store, metaOf(), {
            mode: "lazy",
            onError: (error) => Ref.update(errors, (all) => [...all, error])
          })
          yield* writer.submission(userInput("turn-1"))
          const file = Option.getOrThrow(yield* writer.path)
          // The rollout is moved away and a folder put in its place: the append fails, and creates nothing.
          yield* fs.rename(file, `${file}.away`)
          yield* fs.makeDirectory(file)
          yield* writer.event(message("turn-1", "kept"))
          yield* writer.event(turnComplete("turn-1"))
          assert.deepStrictEqual(
            (yield* Ref.get(errors)).map((error) => error.operation),
            ["append"]
          )
          yield* fs.remove(file, { recursive: true })
          yield* fs.rename(`${file}.away`, file)
          yield* writer.event(turnComplete("turn-2"))
          const back = yield* store.read(file)
          assert.deepStrictEqual(kinds(back.lines), ["user_input", "agent_message", "turn_complete", "turn_complete"])
          assert.deepStrictEqual(back.warnings, [])
        })
    )

    it.effect("§20 home is DEPUTY_HOME when set, else ~/.deputy", () =>
      Effect.gen(function* () {
        const fromEnv = yield* deputyHome.pipe(
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["DEPUTY_HOME", "/tmp/deputy-home"]])))
        )
        assert.strictEqual(fromEnv, "/tmp/deputy-home")
        const fallback = yield* deputyHome.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map())))
        assert.strictEqual(fallback, `${homedir()}/.deputy`)
        const store = yield* Effect.provide(RolloutStore, RolloutStore.layer({ home: "/tmp/elsewhere" }))
        assert.strictEqual(store.home, "/tmp/elsewhere")
      })
    )

    it.scoped("§20 a large buffer is flushed before the turn ends, as one append of whole lines", () =>
      Effect.gen(function* () {
        const { fs } = yield* tempStore
        const home = yield* fs.makeTempDirectoryScoped({ prefix: "deputy-rollout-" })
        const store = yield* Effect.provide(RolloutStore, RolloutStore.layer({ home, flushThreshold: 1000 }))
        const { writer } = yield* openWriter(store, metaOf(), { mode: "lazy" })
        yield* writer.submission(userInput("turn-1"))
        // Each line is ~700 characters, so every second one crosses the 1000-character threshold.
        for (let i = 0; i < 23; i++) yield* writer.event(message("turn-1", `${i} ${"y".repeat(600)}`))
        const path = Option.getOrThrow(yield* writer.path)
        // Past the threshold the writes go on in the background, one at a time; never a torn line.
        // (how far they got is up to the disk), each of whole lines: nothing torn, nothing skipped.
        const before = yield* store.read(path)
        assert.isAtMost(before.lines.length, 1 + 22)
        assert.deepStrictEqual(before.warnings, [])
        yield* writer.flush
        assert.strictEqual((yield* store.read(path)).lines.length, 1 + 23)
      })
    )
  })

  describe("crash safety", () => {
    it.scoped(
      "§21 a writer killed with SIGKILL mid-write leaves every complete line readable, at most a torn last line skipped",
      () =>
        Effect.gen(function* () {
          const { home, store } = yield* tempStore
          const threadId = newThreadId()
          // Kill after the child reported 5 turn-boundary flushes: it is writing its next turn then.
          const { flushed } = yield* Effect.async<{ flushed: number; signal: string | null }, Error>((resume) => {
            const child = spawn(
              process.execPath,
              ["--conditions=@deputy/source", "--import", "tsx", childFixture, home, threadId],
              { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] }
            )
            let flushed = 0
            let stdout = ""
            let stderr = ""
            child.stderr.on("data", (chunk: Buffer) => {
              stderr += chunk.toString()
            })
            child.stdout.on("data", (chunk: Buffer) => {
              stdout += chunk.toString()
              for (const match of stdout.matchAll(/flushed (\d+)\n/g)) flushed = Number(match[1])
              if ((stdout.match(/flushed/g)?.length ?? 0) >= 5) child.kill("SIGKILL")
            })
            child.on("exit", (code, signal) =>
              signal === "SIGKILL"
                ? resume(Effect.succeed({ flushed, signal }))
                : resume(Effect.fail(new Error(`child exited with ${code}: ${stderr}`)))
            )
            return Effect.sync(() => child.kill("SIGKILL"))
          })
          const location = yield* store.findById(threadId)
          const back = yield* store.read(location.path)
          assert.strictEqual(back.meta.threadId, threadId)
          const numbers = back.lines.flatMap((line) =>
            line.type === "event" && line.event.msg.type === "agent_message"
              ? [Number(line.event.msg.message.split(" ")[0])]
              : []
          )
          // Every complete line is kept, in order, without gaps, including all the child reported flushed.
          assert.isAtLeast(numbers.length, flushed)
          assert.deepStrictEqual(
            numbers,
            numbers.map((_, i) => i)
          )
          assert.isAtMost(back.warnings.length, 1)
          for (const warning of back.warnings) {
            assert.strictEqual(warning.kind, "torn_last_line")
            assert.include(warning.message, location.path)
          }
        })
    )

    it.scoped("§21 a torn last line is skipped with a warning naming file and line; every line before it is kept", () =>
      Effect.gen(function* () {
        const { fs, home, store } = yield* tempStore
        const meta = metaOf()
        const file = `${home}/torn.jsonl`
        const whole = eventLine(message("t", "complete"))
        yield* fs.writeFileString(file, `${metaLine(meta)}\n${whole}\n${whole.slice(0, 25)}`)
        const back = yield* store.read(file)
        assert.deepStrictEqual(kinds(back.lines), ["agent_message"])
        assert.strictEqual(back.warnings.length, 1)
        assert.strictEqual(back.warnings[0]!.kind, "torn_last_line")
        assert.strictEqual(back.warnings[0]!.line, 3)
        assert.strictEqual(back.warnings[0]!.message.startsWith(`${file}:3:`), true)
      })
    )

    it.scoped("§21 resuming a torn rollout cuts the torn tail, so appended lines stay readable", () =>
      Effect.gen(function* () {
        const { fs, home, store } = yield* tempStore
        const meta = metaOf()
        const file = `${home}/torn.jsonl`
        const whole = eventLine(message("t", "complete"))
        yield* fs.writeFileString(file, `${metaLine(meta)}\n${whole}\n${whole.slice(0, 25)}`)
        yield* Effect.scoped(
          Effect.gen(function* () {
            const writer = yield* store.resume(file)
            yield* writer.event(turnComplete("t"))
          })
        )
        const back = yield* store.read(file)
        assert.deepStrictEqual(kinds(back.lines), ["agent_message", "turn_complete"])
        assert.deepStrictEqual(back.warnings, [])
      })
    )
  })

  describe("bad input", () => {
    it.scoped("§21 a garbage line in the middle is a warning naming file and line; the readable lines are kept", () =>
      Effect.gen(function* () {
        const { fs, home, store } = yield* tempStore
        const file = `${home}/garbage.jsonl`
        const lines = [
          metaLine(metaOf()),
          eventLine(message("t", "one")),
          "}}not json{{",
          eventLine(message("t", "two"))
        ]
        yield* fs.writeFileString(file, `${lines.join("\n")}\n`)
        const back = yield* store.read(file)
        assert.deepStrictEqual(kinds(back.lines), ["agent_message", "agent_message"])
        assert.strictEqual(back.warnings.length, 1)
        assert.strictEqual(back.warnings[0]!.kind, "invalid_json")
        assert.strictEqual(back.warnings[0]!.line, 3)
        assert.isTrue(back.warnings[0]!.message.startsWith(`${file}:3: `))
      })
    )

    it.scoped("§21 a valid JSON line failing the schema is a warning naming file, line and field", () =>
      Effect.gen(function* () {
        const { fs, home, store } = yield* tempStore
        const file = `${home}/schema.jsonl`
        const bad = JSON.stringify({
          type: "event",
          at,
          event: { id: "t", msg: { type: "exec_command_end", callId: "c" } }
        })
        const lines = [metaLine(metaOf()), bad, eventLine(message("t", "after"))]
        yield* fs.writeFileString(file, `${lines.join("\n")}\n`)
        const back = yield* store.read(file)
        assert.deepStrictEqual(kinds(back.lines), ["agent_message"])
        assert.strictEqual(back.warnings.length, 1)
        assert.strictEqual(back.warnings[0]!.kind, "invalid_line")
        assert.strictEqual(back.warnings[0]!.line, 2)
        assert.include(back.warnings[0]!.message, `${file}:2:`)
        assert.include(back.warnings[0]!.message, "event.msg.exitCode")
      })
    )

    it.scoped("§21 an empty file is RolloutUnreadable naming the file", () =>
      Effect.gen(function* () {
        const { fs, home, store } = yield* tempStore
        const file = `${home}/empty.jsonl`
        yield* fs.writeFileString(file, "")
        const error = yield* Effect.flip(store.read(file))
        assert.strictEqual(error._tag, "RolloutUnreadable")
        assert.include(error.message, file)
        assert.include(error.message, "empty")
      })
    )

    it.scoped("§21 a missing or bad metadata line is RolloutUnreadable naming file and line 1", () =>
      Effect.gen(function* () {
        const { fs, home, store } = yield* tempStore
        const noMeta = `${home}/no-meta.jsonl`
        yield* fs.writeFileString(noMeta, `${eventLine(message("t", "orphan"))}\n`)
        const missing = yield* Effect.flip(store.read(noMeta))
        assert.strictEqual(missing._tag, "RolloutUnreadable")
        assert.include(missing.message, `${noMeta}:1:`)
        assert.include(missing.message, 'type "meta"')
        // Nothing saved is lost: the readable lines come back with the error.
        const readable = missing._tag === "RolloutUnreadable" ? (missing.readable ?? []) : []
        assert.deepStrictEqual(kinds(readable), ["agent_message"])

        const badMeta = `${home}/bad-meta.jsonl`
        yield* fs.writeFileString(badMeta, `${JSON.stringify({ type: "meta", threadId: "nope" })}\n`)
        const bad = yield* Effect.flip(store.read(badMeta))
        assert.strictEqual(bad._tag, "RolloutUnreadable")
        assert.include(bad.message, `${badMeta}:1:`)
        assert.include(bad.message, "threadId")
      })
    )

    it.scoped(
      "§21 a file that is not valid UTF-8: a bad metadata line is RolloutUnreadable, a bad later line a warning",
      () =>
        Effect.gen(function* () {
          const { fs, home, store } = yield* tempStore
          const binary = `${home}/binary.jsonl`
          yield* fs.writeFile(binary, new Uint8Array([0xff, 0xfe, 0x00, 0xc3, 0x28, 0x0a]))
          const error = yield* Effect.flip(store.read(binary))
          assert.strictEqual(error._tag, "RolloutUnreadable")
          assert.include(error.message, `${binary}:1:`)
          assert.include(error.message, "UTF-8")

          const mixed = `${home}/mixed.jsonl`
          const encoder = new TextEncoder()
          const head = encoder.encode(`${metaLine(metaOf())}\n${eventLine(message("t", "before"))}\n`)
          const tail = encoder.encode(`${eventLine(message("t", "after"))}\n`)
          yield* fs.writeFile(mixed, new Uint8Array([...head, 0xc3, 0x28, 0x0a, ...tail]))
          const back = yield* store.read(mixed)
          assert.deepStrictEqual(kinds(back.lines), ["agent_message", "agent_message"])
          assert.strictEqual(back.warnings.length, 1)
          assert.strictEqual(back.warnings[0]!.kind, "invalid_utf8")
          assert.strictEqual(back.warnings[0]!.line, 3)
          assert.include(back.warnings[0]!.message, `${mixed}:3:`)
        })
    )

    it.scoped("§21 reading a file that does not exist is RolloutNotFound", () =>
      Effect.gen(function* () {
        const { home, store } = yield* tempStore
        const error = yield* Effect.flip(store.read(`${home}/nothing.jsonl`))
        assert.strictEqual(error._tag, "RolloutNotFound")
      })
    )
  })

  describe("finding", () => {
    const writeTurn = (store: RolloutStoreService, meta: Omit<RolloutMeta, "type">) =>
      Effect.scoped(
        Effect.gen(function* () {
          const writer = yield* store.create(meta, { mode: "lazy" })
          yield* writer.submission(userInput("turn-1"))
          return Option.getOrThrow(yield* writer.path)
        })
      )

    it.scoped("§21 archive moves a rollout into archived_sessions, unarchive moves it back; findById finds both", () =>
      Effect.gen(function* () {
        const { fs, home, store } = yield* tempStore
        const meta = metaOf()
        const live = yield* writeTurn(store, meta)
        assert.deepStrictEqual(yield* store.findById(meta.threadId.toUpperCase()), {
          threadId: meta.threadId,
          path: live,
          archived: false
        })

        const archived = yield* store.archive(meta.threadId)
        assert.strictEqual(archived, live.replace(`${home}/sessions/`, `${home}/archived_sessions/`))
        assert.isFalse(yield* fs.exists(live))
        assert.deepStrictEqual(yield* store.findById(meta.threadId), {
          threadId: meta.threadId,
          path: archived,
          archived: true
        })
        assert.strictEqual((yield* store.list()).items.length, 0)
        assert.strictEqual((yield* Effect.flip(store.archive(meta.threadId)))._tag, "RolloutNotFound")

        assert.strictEqual(yield* store.unarchive(meta.threadId), live)
        assert.isFalse(yield* fs.exists(archived))
        assert.deepStrictEqual((yield* store.read(live)).meta, { type: "meta", ...meta })
        assert.strictEqual((yield* Effect.flip(store.unarchive(meta.threadId)))._tag, "RolloutNotFound")
        assert.strictEqual((yield* Effect.flip(store.findById("not-a-uuid")))._tag, "InvalidInput")
      })
    )

    it.scoped("§20 list gives live rollouts newest first, a page at a time, without archived ones", () =>
      Effect.gen(function* () {
        const { store } = yield* tempStore
        const created = ["2025-12-31T23:59:59.000Z", "2026-01-01T00:00:00.000Z", "2026-02-10T08:00:00.000Z"]
        const metas: Array<Omit<RolloutMeta, "type">> = []
        for (const [i, createdAt] of [...created, "2026-02-10T09:00:00.000Z", "2026-03-01T00:00:00.000Z"].entries()) {
          const meta = metaOf({ createdAt, name: `thread ${i}` })
          metas.push(meta)
          yield* writeTurn(store, meta)
        }
        yield* store.archive(metas[4]!.threadId)
        const expected = [metas[3]!, metas[2]!, metas[1]!, metas[0]!].map((m) => m.threadId)

        const first = yield* store.list({ limit: 3 })
        assert.deepStrictEqual(
          first.items.map((item) => item.threadId),
          expected.slice(0, 3)
        )
        assert.deepStrictEqual(
          Option.map(first.items[0]!.meta, (m) => m.name),
          Option.some("thread 3")
        )
        const second = yield* store.list({ limit: 3, cursor: Option.getOrThrow(first.nextCursor) })
        assert.deepStrictEqual(
          second.items.map((item) => item.threadId),
          expected.slice(3)
        )
        assert.isTrue(Option.isNone(second.nextCursor))
        assert.strictEqual((yield* Effect.flip(store.list({ cursor: "garbage" })))._tag, "InvalidInput")
        assert.strictEqual((yield* store.allMetas).length, 5)
      })
    )

    it.scoped("one day folder that cannot be listed does not make list, findById or resume fail for every thread", () =>
      Effect.gen(function* () {
        const { fs, home, store } = yield* tempStore
        const meta = metaOf({ createdAt: "2026-11-22T01:14:33.000Z" })
        const path = yield* writeTurn(store, meta)
        // A day folder that cannot be listed: a file where the folder should be (root reads any folder).
        yield* fs.writeFileString(`${home}/sessions/2026/11/23`, "not a folder")
        yield* fs.makeDirectory(`${home}/sessions/2026/12`, { recursive: true })
        yield* fs.chmod(`${home}/sessions/2026/12`, 0o000)
        assert.deepStrictEqual(
          (yield* store.list()).items.map((item) => item.threadId),
          [meta.threadId]
        )
        assert.strictEqual((yield* store.findById(meta.threadId)).path, path)
        assert.strictEqual((yield* store.allMetas).length, 1)
        yield* Effect.scoped(store.resume(path))
        yield* fs.chmod(`${home}/sessions/2026/12`, 0o700)
      })
    )
  })

  it.scoped("§32 a thread's rollout is 0600 and every folder under home 0700 (markers, archive, pointers too)", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const paths = yield* Path.Path
      const parent = yield* fs.makeTempDirectoryScoped({ prefix: "deputy-modes-" })
      const home = paths.join(parent, "home") // made by deputy
      const store = yield* Effect.provide(RolloutStore, RolloutStore.layer({ home }))
      const meta = metaOf()
      const scope = yield* Scope.make()
      const writer = yield* Scope.extend(store.create(meta, { mode: "lazy" }), scope)
      yield* writer.submission(userInput("turn-1"))
      yield* writer.event(turnComplete("turn-1"))
      yield* store.archive(meta.threadId).pipe(Effect.zipRight(store.unarchive(meta.threadId)))
      yield* writeLastThread("/work", meta.threadId, { home })
      const modes: Array<[string, string]> = []
      const walk = (dir: string): Effect.Effect<void, unknown> =>
        Effect.gen(function* () {
          modes.push([paths.relative(parent, dir) || ".", ((yield* fs.stat(dir)).mode & 0o777).toString(8)])
          for (const name of yield* fs.readDirectory(dir)) {
            const entry = paths.join(dir, name)
            const info = yield* fs.stat(entry)
            if (info.type === "Directory") yield* walk(entry)
            else modes.push([paths.relative(parent, entry), (info.mode & 0o777).toString(8)])
          }
        })
      yield* walk(home)
      yield* Scope.close(scope, Exit.void)
      assert.isAbove(modes.length, 8) // home, sessions/YYYY/MM/DD, the rollout, live/, its marker, …
      assert.deepStrictEqual(
        modes.filter(([, mode]) => mode !== "700" && mode !== "600"),
        []
      )
      assert.isTrue(modes.some(([name, mode]) => name.endsWith(".jsonl") && mode === "600"))
    })
  )
})
