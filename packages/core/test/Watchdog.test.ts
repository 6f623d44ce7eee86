import { spawn as spawnNode } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import type { ThreadId } from "@deputy/protocol"
import { Command } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Layer, Option, Stream } from "effect"
import { LIVE_DIR } from "../src/Crashes.js"
import { Parent } from "../src/Parent.js"
import { RolloutStore } from "../src/Rollout.js"
import { ThreadManager } from "../src/ThreadManager.js"
import * as Watchdog from "../src/Watchdog.js"

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url))
const crashChild = fileURLToPath(new URL("./fixtures/crashChild.ts", import.meta.url))

/** True while `pid` is a process that runs: not gone (ESRCH), and not a zombie waiting for its parent. */
const isRunning = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "ESRCH"
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    return !["Z", "X"].includes(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0] ?? "")
  } catch {
    return process.platform !== "linux"
  }
}

/** Waits (real time, bounded) until none of `pids` runs; returns those still running at the bound. */
const untilGone = (pids: ReadonlyArray<number>, bound = 10_000) =>
  Effect.promise(async () => {
    const deadline = Date.now() + bound
    for (;;) {
      const left = pids.filter(isRunning)
      if (left.length === 0 || Date.now() > deadline) return left
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  })

interface Ran {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs `command args…` under the watchdog (fd 3 lifeline) with `input` on stdin, to the end. */
const runWatched = (command: string, args: ReadonlyArray<string>, input = "") =>
  Effect.async<Ran>((resume) => {
    const child = Watchdog.spawn(command, args)
    let stdout = ""
    let stderr = ""
    child.stdout!.on("data", (chunk) => {
      stdout += chunk
    })
    child.stderr!.on("data", (chunk) => {
      stderr += chunk
    })
    child.stdin!.end(input)
    child.once("close", (code, signal) => resume(Effect.succeed({ code, signal, stdout, stderr })))
  })

/** Starts `sh -c script` under the watchdog and reads the pids it prints on its first line. */
const startPrinting = (script: string) =>
  Effect.async<{ readonly child: ReturnType<typeof Watchdog.spawn>; readonly pids: ReadonlyArray<number> }>(
    (resume) => {
      const child = Watchdog.spawn("sh", ["-c", script], { stdio: ["ignore", "pipe", "inherit"], grace: "500 millis" })
      createInterface({ input: child.stdout! }).once("line", (line) =>
        resume(Effect.succeed({ child, pids: line.trim().split(/\s+/).map(Number) }))
      )
    }
  )

const exitOf = (child: ReturnType<typeof Watchdog.spawn>) =>
  Effect.async<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resume(Effect.succeed({ code: child.exitCode, signal: child.signalCode }))
      return
    }
    child.once("exit", (code, signal) => resume(Effect.succeed({ code, signal })))
  })

describe.skipIf(process.platform === "win32")("Watchdog", () => {
  layer(NodeContext.layer, { excludeTestServices: true })((it) => {
    it.effect("the command's stdout, stderr, stdin and exit code pass through", () =>
      Effect.gen(function* () {
        const ran = yield* runWatched("sh", ["-c", "cat; echo out; echo err >&2; exit 3"], "in\n")
        assert.deepStrictEqual(ran, { code: 3, signal: null, stdout: "in\nout\n", stderr: "err\n" })
        const ok = yield* runWatched("true", [])
        assert.deepStrictEqual([ok.code, ok.signal], [0, null])
      })
    )

    it.effect("a command killed by a signal ends its watchdog with the same signal", () =>
      Effect.gen(function* () {
        const ran = yield* runWatched("sh", ["-c", "kill -KILL $$"])
        assert.deepStrictEqual([ran.code, ran.signal], [null, "SIGKILL"])
      })
    )

    it.effect("a command that cannot start is exit code 127 with a line spawnFailure recognises", () =>
      Effect.gen(function* () {
        const ran = yield* runWatched("deputy-no-such-program", [])
        assert.strictEqual(ran.code, Watchdog.SPAWN_FAILED_EXIT)
        const reason = Watchdog.spawnFailure(ran.code, ran.stderr)
        assert.isTrue(Option.isSome(reason))
        assert.include(Option.getOrThrow(reason), "deputy-no-such-program")
        // A command's own 127 is not a spawn failure.
        const own = yield* runWatched("sh", ["-c", "exit 127"])
        assert.isTrue(Option.isNone(Watchdog.spawnFailure(own.code, own.stderr)))
      })
    )

    it.effect("closing the lifeline ends the command's whole group, grandchildren included", () =>
      Effect.gen(function* () {
        const { child, pids } = yield* startPrinting("sleep 30 & echo $$ $!; wait")
        assert.strictEqual(pids.length, 2)
        assert.deepStrictEqual(pids.filter(isRunning), pids)
        child.stdio[3]!.destroy() // what the kernel does to deputy's end when deputy dies
        yield* exitOf(child)
        assert.deepStrictEqual(yield* untilGone([child.pid!, ...pids]), [])
      })
    )

    it.effect("a command that ignores SIGTERM is SIGKILLed after the grace", () =>
      Effect.gen(function* () {
        const { child, pids } = yield* startPrinting("trap '' TERM; sleep 30 & echo $$ $!; wait; wait")
        const started = Date.now()
        child.stdio[3]!.destroy()
        assert.deepStrictEqual((yield* exitOf(child)).signal, "SIGKILL")
        assert.isAtLeast(Date.now() - started, 400) // the 500 ms grace, give or take a timer
        assert.deepStrictEqual(yield* untilGone([child.pid!, ...pids]), [])
      })
    )

    it.effect("SIGTERM to the watchdog alone ends the group", () =>
      Effect.gen(function* () {
        const { child, pids } = yield* startPrinting("sleep 30 & echo $$ $!; wait")
        process.kill(child.pid!, "SIGTERM")
        assert.deepStrictEqual((yield* exitOf(child)).signal, "SIGTERM")
        assert.deepStrictEqual(yield* untilGone(pids), [])
      })
    )

    it.effect("what the command leaves running in its group ends with it", () =>
      Effect.gen(function* () {
        const { child, pids } = yield* startPrinting("sleep 30 & echo $!")
        assert.deepStrictEqual(yield* exitOf(child), { code: 0, signal: null })
        assert.deepStrictEqual(yield* untilGone(pids), [])
      })
    )

    it.effect("as an @effect/platform Command with the parent lifeline, the command reads the Command's stdin", () =>
      Effect.gen(function* () {
        const command = Watchdog.command("sh", ["-c", "cat; exit 4"], { lifeline: "parent" }).pipe(
          Command.stdin(Stream.make(new TextEncoder().encode("prompt\n")))
        )
        const output = yield* Effect.scoped(
          Effect.gen(function* () {
            const process = yield* Command.start(command)
            return yield* Effect.all([Stream.mkString(Stream.decodeText(process.stdout)), process.exitCode], {
              concurrency: 2
            })
          })
        )
        assert.deepStrictEqual(output, ["prompt\n", 4])
      })
    )

    it.effect("as an @effect/platform Command (stdin lifeline) it reads /dev/null and passes output through", () =>
      Effect.gen(function* () {
        const command = Watchdog.command("sh", ["-c", "cat; echo done $PPID"])
        const output = yield* Effect.scoped(
          Effect.gen(function* () {
            const process = yield* Command.start(command)
            const [stdout, code] = yield* Effect.all(
              [Stream.mkString(Stream.decodeText(process.stdout)), process.exitCode],
              { concurrency: 2 }
            )
            return { stdout, code, pid: process.pid }
          })
        )
        assert.strictEqual(output.code, 0)
        assert.strictEqual(output.stdout, `done ${output.pid}\n`) // the command's parent is the watchdog
      })
    )
  })

  it.live(
    "a SIGKILLed deputy process leaves no child process running, and the next start marks its threads crashed",
    () =>
      Effect.gen(function* () {
        const home = mkdtempSync(join(tmpdir(), "deputy-crash-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(home, { recursive: true, force: true })))
        const child = spawnNode(
          process.execPath,
          ["--conditions=@deputy/source", "--import", "tsx", crashChild, home],
          {
            cwd: repoRoot,
            stdio: ["ignore", "pipe", "inherit"]
          }
        )
        yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
        const report = yield* Effect.async<{
          readonly threads: ReadonlyArray<ThreadId>
          readonly watchdogs: ReadonlyArray<number>
          readonly pids: ReadonlyArray<number>
        }>((resume) => {
          createInterface({ input: child.stdout! }).once("line", (line) => resume(Effect.succeed(JSON.parse(line))))
        })
        assert.strictEqual(report.threads.length, 2)
        assert.strictEqual(report.pids.length, 8) // 3 watchdogs, 1 sleep, 2 sh and their sleeps
        assert.deepStrictEqual(report.pids.filter(isRunning), report.pids)
        for (const threadId of report.threads) assert.isTrue(existsSync(join(home, LIVE_DIR, `${threadId}.json`)))

        const exited = exitOf(child as ReturnType<typeof Watchdog.spawn>)
        child.kill("SIGKILL")
        assert.deepStrictEqual(yield* exited, { code: null, signal: "SIGKILL" })
        // The process table: none of its children, grandchildren or watchdogs is left.
        assert.deepStrictEqual(yield* untilGone(report.pids), [])

        // The next start (building a ThreadManager in that home) ends both threads' rollouts.
        const store = yield* Effect.provide(
          Effect.gen(function* () {
            yield* ThreadManager
            return yield* RolloutStore
          }),
          ThreadManager.layer.pipe(
            Layer.provideMerge(RolloutStore.layer({ home })),
            Layer.provide(Parent.layerCallbacks({})),
            Layer.provide(NodeContext.layer)
          )
        )
        for (const threadId of report.threads) {
          const location = yield* store.findById(threadId)
          const contents = yield* store.read(location.path)
          const last = contents.lines.at(-1)
          assert.strictEqual(last?.type, "terminal")
          assert.strictEqual(last?.type === "terminal" ? last.state : undefined, "crashed")
          assert.isFalse(existsSync(join(home, LIVE_DIR, `${threadId}.json`)))
        }
        assert.deepStrictEqual(yield* store.markCrashed, []) // once only
      }).pipe(Effect.scoped),
    60_000
  )
})
