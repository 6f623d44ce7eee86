// The rollout reader and its repair (internal/rolloutReader.ts), on real files.
import { dirname } from "node:path"
import { newThreadId } from "@deputy/protocol"
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { makeRolloutReader } from "../src/internal/rolloutReader.js"

const meta = JSON.stringify({
  type: "meta",
  threadId: newThreadId(),
  createdAt: "2026-11-22T01:14:33.000Z",
  backend: "scripted",
  cwd: "/work",
  source: { type: "top_level" }
})
const line = JSON.stringify({
  type: "event",
  at: "2026-11-22T01:14:34.000Z",
  event: { id: "t", msg: { type: "agent_message", message: "hi" } }
})

layer(NodeContext.layer, { excludeTestServices: true })("rolloutReader", (it) => {
  const inFile = (text: string) =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* fs.makeTempDirectoryScoped({ prefix: "deputy-reader-" })
      const file = `${dir}/rollout.jsonl`
      yield* fs.writeFileString(file, text)
      return { fs, file, reader: makeRolloutReader(fs) }
    })

  it.scoped("repairTail cuts a last line that does not parse, names its line, and leaves whole lines", () =>
    Effect.gen(function* () {
      const { fs, file, reader } = yield* inFile(`${meta}\n${line}\n{"type":"ev`)
      const { size, repairs } = yield* reader.repairTail(file)
      assert.strictEqual(yield* fs.readFileString(file), `${meta}\n${line}\n`)
      assert.strictEqual(size, `${meta}\n${line}\n`.length)
      assert.deepStrictEqual(
        repairs.map((repair) => [repair.kind, repair.line]),
        [["torn_last_line", 3]]
      )
    })
  )

  it.scoped("repairTail ends a last line that parses (any type) and leaves a whole file alone", () =>
    Effect.gen(function* () {
      const { fs, file, reader } = yield* inFile(`${meta}\n{"type":"unknown_to_us"}`)
      const repaired = yield* reader.repairTail(file)
      assert.strictEqual(yield* fs.readFileString(file), `${meta}\n{"type":"unknown_to_us"}\n`)
      assert.deepStrictEqual(
        repaired.repairs.map((repair) => repair.kind),
        ["unterminated_last_line"]
      )
      assert.deepStrictEqual((yield* reader.repairTail(file)).repairs, [])
    })
  )

  it.scoped("readMeta reads the first line only; read names every skipped line", () =>
    Effect.gen(function* () {
      const { file, reader } = yield* inFile(`${meta}\nnot json\n${line}\n`)
      assert.strictEqual((yield* reader.readMeta(file)).type, "meta")
      const contents = yield* reader.read(file)
      assert.strictEqual(contents.lines.length, 1)
      assert.deepStrictEqual(
        contents.warnings.map((warning) => [warning.kind, warning.line]),
        [["invalid_json", 2]]
      )
      assert.strictEqual((yield* Effect.flip(reader.read(`${file}.none`)))._tag, "RolloutNotFound")
    })
  )

  it.scoped("a path that cannot be read (a folder) is RolloutIoFailed naming it and the read", () =>
    Effect.gen(function* () {
      const { file, reader } = yield* inFile(`${meta}
`)
      const folder = dirname(file)
      const error = yield* Effect.flip(reader.read(folder))
      assert.strictEqual(error._tag, "RolloutIoFailed")
      assert.include(error.message, `rollout read failed for ${folder}`)
    })
  )
})
