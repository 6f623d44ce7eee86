import { newThreadId } from "@deputy/protocol"
import { FileSystem, Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Option } from "effect"
import { readLastThread, readPointer, workspacePointerPath, writeLastThread, writePointer } from "../src/Pointer.js"

const tempHome = Effect.flatMap(FileSystem.FileSystem, (fs) =>
  fs.makeTempDirectoryScoped({ prefix: "deputy-pointer-" })
)

layer(NodeContext.layer, { excludeTestServices: true })("Pointer", (it) => {
  describe("pointer files", () => {
    it.scoped("§22 a pointer is written with mode 0600 and read back; a missing one is none", () =>
      Effect.gen(function* () {
        const fs = yield* FileSystem.FileSystem
        const home = yield* tempHome
        const pointer = `${home}/nested/folder/last`
        assert.isTrue(Option.isNone(yield* readPointer(pointer)))
        yield* writePointer(pointer, "first\n")
        assert.deepStrictEqual(yield* readPointer(pointer), Option.some("first"))
        assert.strictEqual((yield* fs.stat(pointer)).mode & 0o777, 0o600)
      })
    )

    it.scoped("§22 a write replaces the pointer whole and leaves no temp file behind", () =>
      Effect.gen(function* () {
        const fs = yield* FileSystem.FileSystem
        const home = yield* tempHome
        const pointer = `${home}/last`
        yield* writePointer(pointer, "a much longer first value")
        yield* writePointer(pointer, "second")
        assert.deepStrictEqual(yield* readPointer(pointer), Option.some("second"))
        assert.strictEqual((yield* fs.stat(pointer)).mode & 0o777, 0o600)
        assert.deepStrictEqual(yield* fs.readDirectory(home), ["last"])
      })
    )

    it.scoped("§22 a temp file left by a crash does not break reads or later writes", () =>
      Effect.gen(function* () {
        const fs = yield* FileSystem.FileSystem
        const home = yield* tempHome
        const pointer = `${home}/last`
        yield* writePointer(pointer, "kept")
        // A crash between creating the temp file and renaming it leaves this behind.
        yield* fs.writeFileString(`${home}/.last.0000-crashed.tmp`, "")
        assert.deepStrictEqual(yield* readPointer(pointer), Option.some("kept"))
        yield* writePointer(pointer, "next")
        assert.deepStrictEqual(yield* readPointer(pointer), Option.some("next"))
      })
    )

    it.scoped("§22 a failed write leaves the old pointer untouched and reports PointerFailed", () =>
      Effect.gen(function* () {
        const fs = yield* FileSystem.FileSystem
        const home = yield* tempHome
        const pointer = `${home}/last`
        yield* writePointer(pointer, "old")
        // A folder where the pointer should be: the rename fails.
        const blocked = `${home}/blocked`
        yield* fs.makeDirectory(`${blocked}/child`, { recursive: true })
        const error = yield* Effect.flip(writePointer(blocked, "new"))
        assert.strictEqual(error._tag, "PointerFailed")
        assert.include(error.message, blocked)
        assert.deepStrictEqual((yield* fs.readDirectory(home)).sort(), ["blocked", "last"])
        assert.deepStrictEqual(yield* readPointer(pointer), Option.some("old"))
      })
    )
  })

  describe("last thread of a workspace", () => {
    it.scoped("§22 the last thread is kept per workspace folder, under home/pointers/<sha256>", () =>
      Effect.gen(function* () {
        const fs = yield* FileSystem.FileSystem
        const path = yield* Path.Path
        const home = yield* tempHome
        const one = yield* fs.makeTempDirectoryScoped({ prefix: "deputy-ws-" })
        const two = yield* fs.makeTempDirectoryScoped({ prefix: "deputy-ws-" })
        assert.isTrue(Option.isNone(yield* readLastThread(one, { home })))
        const first = newThreadId()
        const second = newThreadId()
        yield* writeLastThread(one, first, { home })
        yield* writeLastThread(two, second, { home })
        assert.deepStrictEqual(yield* readLastThread(one, { home }), Option.some(first))
        assert.deepStrictEqual(yield* readLastThread(`${two}/.`, { home }), Option.some(second))

        const file = yield* workspacePointerPath(one, { home })
        assert.match(path.relative(home, file), /^pointers\/[0-9a-f]{64}$/)
        assert.strictEqual((yield* fs.stat(file)).mode & 0o777, 0o600)

        yield* fs.writeFileString(file, "not a thread id")
        const error = yield* Effect.flip(readLastThread(one, { home }))
        assert.strictEqual(error._tag, "InvalidInput")
        assert.include(error.message, file)
      })
    )
  })
})
