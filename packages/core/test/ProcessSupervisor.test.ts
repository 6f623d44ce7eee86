import { spawn as spawnNode } from "node:child_process"
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import type { ThreadId } from "@deputy/protocol"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { LIVE_DIR } from "../src/Crashes.js"
import { Parent } from "../src/Parent.js"
import * as ProcessSupervisor from "../src/ProcessSupervisor.js"
import { RolloutStore } from "../src/Rollout.js"
import { ThreadManager } from "../src/ThreadManager.js"

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

/** Starts `sh -c script` supervised (grace 500 ms) and reads the pids it prints on its first line. */
const startPrinting = (script: string) =>
  Effect.async<{ readonly started: ReturnType<typeof ProcessSupervisor.spawn>; readonly pids: ReadonlyArray<number> }>(
    (resume) => {
      const started = ProcessSupervisor.spawn("sh", ["-c", script], {
        stdio: ["ignore", "pipe", "inherit"],
        grace: "500 millis"
      })
      createInterface({ input: started.child.stdout! }).once("line", (line) =>
        resume(Effect.succeed({ started, pids: line.trim().split(/\s+/).map(Number) }))
      )
    }
  )

const exitOf = (
  child: { readonly exitCode: number | null; readonly signalCode: NodeJS.Signals | null } & NodeJS.EventEmitter
) =>
  Effect.async<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resume(Effect.succeed({ code: child.exitCode, signal: child.signalCode }))
      return
    }
    child.once("exit", (code, signal) => resume(Effect.succeed({ code, signal })))
  })

/** The environment of a running process, as a record. */
const environOf = (pid: number): Record<string, string> =>
  Object.fromEntries(
    readFileSync(`/proc/${pid}/environ`, "utf8")
      .split("\0")
      .filter((entry) => entry !== "")
      .map((entry) => [entry.slice(0, entry.indexOf("=")), entry.slice(entry.indexOf("=") + 1)])
  )

/** The pids of this process's supervisor (its command line names this process's marker). */
const supervisorPids = (): Array<number> =>
  readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .filter((name) => {
      try {
        return readFileSync(`/proc/${name}/cmdline`, "utf8").includes(`--marker=${ProcessSupervisor.MARKER}`)
      } catch {
        return false
      }
    })
    .map(Number)
    .filter(isRunning)

describe.skipIf(process.platform !== "linux")("ProcessSupervisor", () => {
  layer(NodeContext.layer, { excludeTestServices: true })((it) => {
    it.effect("a command runs with exactly the given environment plus this process's marker, in its own group", () =>
      Effect.gen(function* () {
        const { started, pids } = yield* startPrinting("echo $$; exec sleep 30")
        const env = environOf(pids[0]!)
        assert.deepStrictEqual(Object.keys(env).sort(), [ProcessSupervisor.MARKER, "PWD"].sort())
        const stat = readFileSync(`/proc/${pids[0]}/stat`, "utf8")
        assert.strictEqual(Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]), pids[0]) // leads its group
        yield* started.end
        assert.deepStrictEqual(yield* untilGone(pids, 0), [])
      })
    )

    it.effect("end, once the command exits, ends what it left running in its group", () =>
      Effect.gen(function* () {
        const { started, pids } = yield* startPrinting("sleep 30 & echo $!")
        assert.deepStrictEqual(yield* exitOf(started.child), { code: 0, signal: null })
        assert.deepStrictEqual(pids.filter(isRunning), pids) // nothing ends it but `end`
        yield* started.end
        assert.deepStrictEqual(yield* untilGone(pids, 0), [])
      })
    )

    it.effect(
      "end reaches a descendant that left the group (setsid) and ignores SIGTERM: SIGKILL after the grace",
      () =>
        Effect.gen(function* () {
          const { started, pids } = yield* startPrinting("setsid sh -c 'trap \"\" TERM; echo $$; exec sleep 30' &")
          yield* exitOf(started.child)
          const begun = Date.now()
          yield* started.end
          assert.isAtLeast(Date.now() - begun, 400) // the 500 ms grace, give or take a timer
          assert.deepStrictEqual(yield* untilGone(pids, 0), [])
        })
    )

    it.effect("end of a running command ends its whole group, grandchildren included", () =>
      Effect.gen(function* () {
        const { started, pids } = yield* startPrinting("sleep 30 & echo $$ $!; wait")
        yield* started.end
        assert.deepStrictEqual((yield* exitOf(started.child)).signal, "SIGTERM")
        assert.deepStrictEqual(yield* untilGone(pids, 0), [])
      })
    )

    it.effect(
      "a supervisor that dies is replaced: end still ends the group from here, the next command gets a new one",
      () =>
        Effect.gen(function* () {
          const before = yield* startPrinting("sleep 30 & echo $$ $!; wait")
          const [supervisor] = supervisorPids()
          assert.isDefined(supervisor)
          process.kill(supervisor!, "SIGKILL")
          assert.deepStrictEqual(yield* untilGone([supervisor!]), [])
          yield* before.started.end
          assert.deepStrictEqual(yield* untilGone(before.pids, 0), [])
          const after = yield* startPrinting("setsid sh -c 'echo $$; exec sleep 30' &")
          const [replacement] = supervisorPids()
          assert.isDefined(replacement)
          assert.notStrictEqual(replacement, supervisor)
          yield* after.started.end
          assert.deepStrictEqual(yield* untilGone(after.pids, 0), [])
        })
    )

    it.effect("many commands ending at once are all answered, each ending only its own", () =>
      Effect.gen(function* () {
        const all = yield* Effect.forEach(Array.from({ length: 12 }), () => startPrinting("sleep 30 & echo $!"), {
          concurrency: "unbounded"
        })
        const [kept, ...ended] = all
        yield* Effect.forEach(ended, ({ started }) => started.end, { concurrency: "unbounded", discard: true })
        assert.deepStrictEqual(
          yield* untilGone(
            ended.flatMap(({ pids }) => pids),
            0
          ),
          []
        )
        assert.deepStrictEqual(kept!.pids.filter(isRunning), kept!.pids)
        yield* kept!.started.end
        assert.deepStrictEqual(yield* untilGone(kept!.pids, 0), [])
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
          readonly pids: ReadonlyArray<number>
        }>((resume) => {
          createInterface({ input: child.stdout! }).once("line", (line) => resume(Effect.succeed(JSON.parse(line))))
        })
        assert.strictEqual(report.threads.length, 2)
        assert.strictEqual(report.pids.length, 4) // 1 sleep, 1 sh and its sleep, 1 setsid sleep that ignores SIGTERM
        assert.deepStrictEqual(report.pids.filter(isRunning), report.pids)
        for (const threadId of report.threads) assert.isTrue(existsSync(join(home, LIVE_DIR, `${threadId}.json`)))

        const exited = exitOf(child)
        child.kill("SIGKILL")
        assert.deepStrictEqual(yield* exited, { code: null, signal: "SIGKILL" })
        // The process table: none of its children or grandchildren is left, in their groups or not.
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
