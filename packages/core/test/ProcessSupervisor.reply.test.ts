// What deputy does with a supervisor that answers wrongly or goes away: a failed result, never a crash.
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"

// Read when ProcessSupervisor loads: set first, then load it.
process.env.DEPUTY_SUPERVISOR = fileURLToPath(new URL("./fixtures/fakeSupervisor.mjs", import.meta.url))
const ProcessSupervisor = await import("../src/ProcessSupervisor.js")

const run = (program: string) => ProcessSupervisor.run([program], { cwd: "/", env: {}, maxOutput: 16 })
const reasonOf = (program: string) =>
  run(program).pipe(Effect.map((result) => (result._tag === "Lost" ? result.reason : `not Lost: ${result._tag}`)))

describe.skipIf(process.platform === "win32")("ProcessSupervisor.run against a faulty supervisor", () => {
  it.effect("a reply line past the bound is a Lost result, and the next reply is read", () =>
    Effect.gen(function* () {
      assert.include(yield* reasonOf("overlong"), "the supervisor's answer is longer than 65584 bytes")
      assert.deepStrictEqual(
        yield* run("fine"),
        ProcessSupervisor.RunResult.Exited({ exitCode: 0, signal: null, stdout: "hi", stderr: "" })
      )
    })
  )

  it.effect("a reply that is not JSON is a Lost result", () =>
    Effect.gen(function* () {
      assert.include(yield* reasonOf("garbage"), "not the JSON of a result")
    })
  )

  it.effect("a supervisor that exits before answering: Lost saying so; the next run starts a new one", () =>
    Effect.gen(function* () {
      const first = ProcessSupervisor.processId()
      assert.include(yield* reasonOf("die"), "exited with code 3 before the command was known to start")
      assert.strictEqual((yield* run("fine"))._tag, "Exited")
      assert.notStrictEqual(ProcessSupervisor.processId(), first)
    })
  )

  it.live(
    "a stopped run the supervisor never answers: the interruption still ends, at its bound (2 × grace + 3 s)",
    () =>
      Effect.gen(function* () {
        const fiber = yield* Effect.fork(
          ProcessSupervisor.run(["deaf"], { cwd: "/", env: {}, maxOutput: 16, grace: "100 millis" })
        )
        yield* Effect.yieldNow()
        const begun = Date.now()
        yield* Fiber.interrupt(fiber)
        assert.isAtLeast(Date.now() - begun, 3_000)
        assert.deepStrictEqual((yield* run("fine"))._tag, "Exited") // the supervisor is still used
      })
  )
})
