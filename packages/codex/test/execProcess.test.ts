// §36 a `codex exec` child whose stdout line never ends: the line is bounded, the stream fails with
// LineTooLong, and the child is killed (it would block on a full pipe), so its turn cannot hang.

import { Mailboxes } from "@deputy/core"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Chunk, Effect, Stream } from "effect"
import { startExecProcess } from "../src/internal/execProcess.js"

layer(NodeContext.layer, { excludeTestServices: true })("execProcess", (it) => {
  it.scoped("§36 a stdout line past the bound fails with LineTooLong and the child is killed", () =>
    Effect.gen(function* () {
      const child = yield* startExecProcess({
        binary: "sh",
        args: ["-c", "echo first; head -c 1000000 /dev/zero | tr '\\0' x; exec sleep 60"],
        cwd: "/",
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
        stdin: "",
        killGrace: "200 millis",
        maxLineLength: 10_000
      })
      assert.strictEqual(yield* child.lines.take, "first")
      const error = yield* Effect.flip(child.lines.take)
      assert.strictEqual(error._tag, "LineTooLong")
      assert.include(error.message, "codex exec stdout is longer than 10000 characters")
      assert.isNull(yield* child.exitCode) // killed, not left blocked on its pipe
    })
  )

  it.scoped(
    "§6 lines past the mailbox's capacity arrive whole and in order while the pipe waits, the unterminated last one too",
    () =>
      Effect.gen(function* () {
        const child = yield* startExecProcess({
          binary: "sh",
          args: ["-c", "seq 1 20000; printf last"],
          cwd: "/",
          env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
          stdin: "",
          killGrace: "200 millis"
        })
        const lines = Chunk.toArray(yield* Stream.runCollect(Mailboxes.toStream(child.lines)))
        assert.strictEqual(lines.length, 20_001)
        assert.deepStrictEqual(lines.slice(0, 2), ["1", "2"])
        assert.deepStrictEqual(lines.slice(-2), ["20000", "last"])
        assert.isTrue(lines.slice(0, -1).every((line, index) => line === String(index + 1)))
        assert.strictEqual(yield* child.exitCode, 0)
      })
  )

  it.scoped("the prompt reaches the child's stdin, which is closed after it", () =>
    Effect.gen(function* () {
      const child = yield* startExecProcess({
        binary: "sh",
        args: ["-c", "cat; echo end"],
        cwd: "/",
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
        stdin: "first\nsecond\n",
        killGrace: "200 millis"
      })
      const lines = Chunk.toArray(yield* Stream.runCollect(Mailboxes.toStream(child.lines)))
      assert.deepStrictEqual(lines, ["first", "second", "end"])
    })
  )

  it.scoped(
    "a child node refuses to start (a NUL byte in an argument or its environment) fails to start, not a defect",
    () =>
      Effect.gen(function* () {
        const base = { binary: "true", cwd: "/", stdin: "", killGrace: "200 millis" } as const
        for (const bad of [
          { ...base, args: [], env: { BAD: "a\u0000b" } },
          { ...base, args: ["a\u0000b"], env: {} }
        ]) {
          const exit = yield* Effect.exit(startExecProcess(bad))
          assert.strictEqual(exit._tag, "Failure")
          if (exit._tag === "Failure") {
            assert.isTrue(exit.cause._tag === "Fail", `expected a failure, got ${exit.cause._tag}`)
            assert.include(String(exit.cause._tag === "Fail" ? exit.cause.error.message : ""), "null bytes")
          }
        }
      })
  )
})
