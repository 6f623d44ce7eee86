// §36 a scripted command's output is bounded: past the bound it is killed, the step ends, memory stays bounded.
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { runCommand } from "../src/internal/exec.js"

layer(NodeContext.layer, { excludeTestServices: true })("exec", (it) => {
  it.effect("§36 a command printing past the bound is killed and ends with exit code null saying why", () =>
    Effect.gen(function* () {
      const result = yield* runCommand(
        ["sh", "-c", "head -c 1000000 /dev/zero; exec sleep 60"],
        "/",
        { PATH: process.env.PATH ?? "" },
        10_000
      )
      assert.isNull(result.exitCode)
      assert.include(result.stderr, "more than 10000 characters on stdout")
      const fine = yield* runCommand(["sh", "-c", "printf hello"], "/", { PATH: process.env.PATH ?? "" }, 10_000)
      assert.deepStrictEqual(fine, { exitCode: 0, stdout: "hello", stderr: "" })
    })
  )

  it.effect(
    "an argument node cannot pass to a process (a NUL byte) ends with exit code null saying why, not a defect",
    () =>
      Effect.gen(function* () {
        const result = yield* runCommand(["echo", "a\u0000b"], "/", { PATH: process.env.PATH ?? "" })
        assert.isNull(result.exitCode)
        assert.include(result.stderr, "cannot start echo in /")
      })
  )
})
