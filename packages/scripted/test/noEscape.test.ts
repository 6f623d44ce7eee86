// §33 no process outlives its thread: a scripted command that backgrounds a SIGTERM-ignoring child
// and one that calls `setsid` leaves nothing running after its turn, after a cancel, or after the
// deputy process is SIGKILLed. Checked through /proc by unique `sleep` arguments, 20 rounds each,
// the rounds side by side (each waits out the supervisor's 2 s grace for the SIGTERM-ignoring sleep).
import { spawn as spawnNode } from "node:child_process"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { type ThreadId, userText } from "@deputy/protocol"
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, layer } from "@effect/vitest"
import { Effect } from "effect"
import { Scripted } from "../src/index.js"
import { escapingScript, runningWith, uniqueSleep } from "./fixtures/escape.js"
import { takeUntil } from "./fixtures/harness.js"

const ROUNDS = 20
const repoRoot = fileURLToPath(new URL("../../../", import.meta.url))
const escapeChild = fileURLToPath(new URL("./fixtures/escapeChild.ts", import.meta.url))

const threadId = (round: number) => `00000000-0000-4000-8000-${String(round).padStart(12, "0")}` as ThreadId

/** Waits (real time, bounded) until every sleep's two escapees have started (their marker files exist). */
const untilStarted = (cwd: string, sleeps: ReadonlyArray<string>) =>
  Effect.promise(async () => {
    const started = () =>
      sleeps.every((sleep) => existsSync(join(cwd, `${sleep}.a`)) && existsSync(join(cwd, `${sleep}.b`)))
    const deadline = Date.now() + 20_000
    while (!started() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    return started()
  })

describe.skipIf(process.platform !== "linux")("§33 no escape", () => {
  layer(NodeContext.layer, { excludeTestServices: true })((it) => {
    const inTempDir = Effect.flatMap(FileSystem.FileSystem, (fs) =>
      fs.makeTempDirectoryScoped({ prefix: "deputy-escape-" })
    )

    it.scoped(
      "after its turn, nothing a command backgrounded (SIGTERM ignored, setsid) is left running",
      () =>
        Effect.gen(function* () {
          const cwd = yield* inTempDir
          const sleeps = Array.from({ length: ROUNDS }, (_, round) => uniqueSleep(round))
          yield* Effect.forEach(
            sleeps,
            (sleep, round) =>
              Effect.gen(function* () {
                const agent = yield* Scripted.spawn(escapingScript(sleep), { threadId: threadId(round), cwd })
                yield* agent.submit({ id: "t1", op: userText("go") })
                yield* takeUntil(agent, (event) => event.msg.type === "turn_complete")
              }),
            { concurrency: "unbounded" }
          )
          assert.deepStrictEqual(runningWith(sleeps), [])
        }),
      30_000
    )

    it.scoped(
      "after a cancel, nothing the running command started is left running",
      () =>
        Effect.gen(function* () {
          const cwd = yield* inTempDir
          const sleeps = Array.from({ length: ROUNDS }, (_, round) => uniqueSleep(round))
          yield* Effect.forEach(
            sleeps,
            (sleep, round) =>
              Effect.gen(function* () {
                const agent = yield* Scripted.spawn(escapingScript(sleep, "exec sleep 60"), {
                  threadId: threadId(round),
                  cwd
                })
                yield* agent.submit({ id: "t1", op: userText("go") })
                yield* takeUntil(agent, (event) => event.msg.type === "exec_command_begin")
                assert.isTrue(yield* untilStarted(cwd, [sleep])) // both escapees run before the cancel
                yield* agent.submit({ id: "stop", op: { type: "interrupt" } })
                yield* takeUntil(agent, (event) => event.msg.type === "turn_aborted")
              }),
            { concurrency: "unbounded" }
          )
          assert.deepStrictEqual(runningWith(sleeps), [])
        }),
      30_000
    )

    it.scoped(
      "after the deputy process is SIGKILLed, nothing its commands started is left running",
      () =>
        Effect.gen(function* () {
          const cwd = yield* inTempDir
          const sleeps = Array.from({ length: ROUNDS }, (_, round) => uniqueSleep(round))
          const child = spawnNode(
            process.execPath,
            ["--conditions=@deputy/source", "--import", "tsx", escapeChild, cwd, ...sleeps],
            { cwd: repoRoot, stdio: ["ignore", "pipe", "inherit"] }
          )
          yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
          yield* Effect.async<void>((resume) => {
            createInterface({ input: child.stdout! }).once("line", () => resume(Effect.void))
          })
          assert.isTrue(yield* untilStarted(cwd, sleeps))
          assert.isAtLeast(runningWith(sleeps).length, 2 * ROUNDS) // every command's two escapees, and its shell
          child.kill("SIGKILL")
          // The supervisor sees its lifeline close, waits out the grace, then SIGKILLs what is left.
          const left = yield* Effect.promise(async () => {
            const deadline = Date.now() + 10_000
            while (runningWith(sleeps).length > 0 && Date.now() < deadline) {
              await new Promise((resolve) => setTimeout(resolve, 50))
            }
            return runningWith(sleeps)
          })
          assert.deepStrictEqual(left, [])
        }),
      30_000
    )
  })
})
