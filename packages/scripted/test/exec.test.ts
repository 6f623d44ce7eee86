// §36 a scripted command's output is bounded: past the bound it is killed, the step ends, memory stays bounded.

import { ProcessSupervisor } from "@deputy/core"
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
      assert.include(result.stderr, "more than 10000 bytes on stdout")
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

  it.effect.skipIf(process.platform === "win32")(
    "issue 12: a command is a child of deputy's process supervisor, not of deputy's process (deputy does not fork for it)",
    () =>
      Effect.gen(function* () {
        const result = yield* runCommand(["sh", "-c", "echo $PPID"], "/", { PATH: process.env.PATH ?? "" })
        assert.strictEqual(result.exitCode, 0)
        assert.notStrictEqual(Number(result.stdout), process.pid)
        assert.strictEqual(Number(result.stdout), ProcessSupervisor.processId())
      })
  )

  it.effect("a command's output comes back byte for byte (newlines, NUL bytes, UTF-8), and its environment too", () =>
    Effect.gen(function* () {
      const result = yield* runCommand(["sh", "-c", 'printf "$X\\000\\303\\251"; printf oops >&2; exit 4'], "/", {
        PATH: process.env.PATH ?? "",
        X: "a\nb"
      })
      assert.deepStrictEqual(result, { exitCode: 4, stdout: "a\nb\u0000é", stderr: "oops" })
    })
  )
})
