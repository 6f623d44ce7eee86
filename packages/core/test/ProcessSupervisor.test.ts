import { spawn as spawnNode } from "node:child_process"
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import type { ThreadId } from "@deputy/protocol"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Fiber, Layer } from "effect"
import { LIVE_DIR } from "../src/Crashes.js"
import { Parent } from "../src/Parent.js"
import * as ProcessSupervisor from "../src/ProcessSupervisor.js"
import { RolloutStore } from "../src/Rollout.js"
import { ThreadManager } from "../src/ThreadManager.js"

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url))
const crashChild = fileURLToPath(new URL("./fixtures/crashChild.ts", import.meta.url))
const runChild = fileURLToPath(new URL("./fixtures/runChild.ts", import.meta.url))

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

/** A fresh directory for the files commands write, removed with the scope. */
const scratch = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "deputy-run-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** A shell line writing `words` (pids) to `file` at once (written aside, then renamed). */
const writePids = (file: string, words: string) => `echo ${words} > '${file}.part' && mv '${file}.part' '${file}'`

/** The pids a command wrote with `writePids`, once the file is there (real time, bounded). */
const pidsIn = (file: string, bound = 10_000) =>
  Effect.promise(async () => {
    const deadline = Date.now() + bound
    while (!existsSync(file)) {
      if (Date.now() > deadline) throw new Error(`${file} was not written within ${bound} ms`)
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    return readFileSync(file, "utf8").trim().split(/\s+/).map(Number)
  })

const PATH = process.env.PATH ?? ""

describe.skipIf(process.platform !== "linux")("ProcessSupervisor", () => {
  layer(NodeContext.layer, { excludeTestServices: true })((it) => {
    it.effect("a command runs with exactly the given environment plus this process's marker, in its own group", () =>
      Effect.gen(function* () {
        const { started, pids } = yield* startPrinting("echo $$; exec sleep 30")
        // Its environ is the one `exec sleep` got (sh exports PWD then); read before that, it is sh's own.
        yield* Effect.promise(async () => {
          const deadline = Date.now() + 10_000
          while (readFileSync(`/proc/${pids[0]}/comm`, "utf8").trim() !== "sleep" && Date.now() < deadline)
            await new Promise((resolve) => setTimeout(resolve, 10))
        })
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

    it.effect(
      "endKilled, after this process SIGKILLed the group, still ends a descendant that left it (setsid, SIGTERM ignored)",
      () =>
        Effect.gen(function* () {
          const { started, pids } = yield* startPrinting(
            "setsid sh -c 'trap \"\" TERM; echo $$; exec sleep 30' & exec sleep 30"
          )
          process.kill(-started.child.pid!, "SIGKILL")
          assert.strictEqual((yield* exitOf(started.child)).signal, "SIGKILL")
          assert.deepStrictEqual(pids.filter(isRunning), pids) // it left the group: the group's SIGKILL missed it
          const begun = Date.now()
          yield* started.endKilled
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

  layer(NodeContext.layer, { excludeTestServices: true })("run", (it) => {
    it.effect(
      "issue 12: run spawns the command from the supervisor, not from this process: its parent, own group, exact env",
      () =>
        Effect.gen(function* () {
          const result = yield* ProcessSupervisor.run(
            [
              "sh",
              "-c",
              "echo $PPID $$ $(cut -d' ' -f5 /proc/$$/stat); tr '\\0' '\\n' < /proc/$$/environ | sort; echo oops >&2; exit 3"
            ],
            { cwd: "/", env: { PATH, X: "two\nlines" }, maxOutput: 1 << 20 }
          )
          assert.strictEqual(result._tag, "Exited")
          if (result._tag !== "Exited") return
          const [ids, ...environ] = result.stdout.trimEnd().split("\n")
          const [parent, self, group] = ids!.split(" ").map(Number)
          assert.strictEqual(parent, ProcessSupervisor.processId())
          assert.notStrictEqual(parent, process.pid)
          assert.strictEqual(group, self) // leads its own group
          const marker = environ.find((line) => line.startsWith(`${ProcessSupervisor.MARKER}=`))
          assert.match(marker ?? "", /=c\d+$/)
          assert.deepStrictEqual(environ, [`PATH=${PATH}`, "X=two", "lines", marker!].sort())
          assert.deepStrictEqual([result.exitCode, result.signal, result.stderr], [3, null, "oops\n"])
        })
    )

    it.effect("run: output with newlines and NUL bytes comes back whole; a signal's end says which", () =>
      Effect.gen(function* () {
        const printed = yield* ProcessSupervisor.run(["printf", "a\\nb\\000c\\303\\251"], {
          cwd: "/",
          env: { PATH },
          maxOutput: 100
        })
        assert.deepStrictEqual(
          printed,
          ProcessSupervisor.RunResult.Exited({ exitCode: 0, signal: null, stdout: "a\nb\u0000cé", stderr: "" })
        )
        const killed = yield* ProcessSupervisor.run(["sh", "-c", "kill -KILL $$"], {
          cwd: "/",
          env: { PATH },
          maxOutput: 100
        })
        assert.deepStrictEqual(
          killed,
          ProcessSupervisor.RunResult.Exited({ exitCode: null, signal: "SIGKILL", stdout: "", stderr: "" })
        )
      })
    )

    it.effect(
      "§36 run: output of exactly the bound comes back whole (MiBs, many chunks); a byte more is OutputTooLong",
      () =>
        Effect.gen(function* () {
          const options = { cwd: "/", env: { PATH }, maxOutput: 3_000_000 }
          const whole = yield* ProcessSupervisor.run(["head", "-c", "3000000", "/dev/zero"], options)
          assert.strictEqual(whole._tag, "Exited")
          assert.strictEqual(whole._tag === "Exited" ? whole.stdout : "", "\u0000".repeat(3_000_000))
          const more = yield* ProcessSupervisor.run(["head", "-c", "3000001", "/dev/zero"], options)
          assert.deepStrictEqual(
            more,
            ProcessSupervisor.RunResult.OutputTooLong({ stream: "stdout", limit: 3_000_000 })
          )
        })
    )

    it.effect(
      "run: what node refuses (a NUL byte), a missing program or cwd, an oversized request: NotStarted saying why",
      () =>
        Effect.gen(function* () {
          const reasonOf = (
            argv: readonly [string, ...Array<string>],
            cwd = "/",
            env: Record<string, string> = { PATH }
          ) =>
            ProcessSupervisor.run(argv, { cwd, env, maxOutput: 100 }).pipe(
              Effect.map((result) => (result._tag === "NotStarted" ? result.reason : `not NotStarted: ${result._tag}`))
            )
          assert.include(yield* reasonOf(["echo", "a\u0000b"]), "null bytes")
          assert.include(yield* reasonOf(["echo", "x"], "/", { PATH, BAD: "a\u0000b" }), "null bytes")
          assert.include(yield* reasonOf(["no-such-program-deputy"]), "ENOENT")
          assert.include(yield* reasonOf(["true"], "/no/such/dir/deputy"), "ENOENT")
          assert.include(yield* reasonOf(["echo", "x".repeat(17 * 1024 * 1024)]), "more than the 16777216 a request")
          // The supervisor is still fine.
          assert.strictEqual(
            (yield* ProcessSupervisor.run(["true"], { cwd: "/", env: { PATH }, maxOutput: 1 }))._tag,
            "Exited"
          )
        })
    )

    it.scoped("§36 run: past the output bound the group is killed and what it left is ended before the result", () =>
      Effect.gen(function* () {
        const dir = yield* scratch
        const file = join(dir, "pids")
        const result = yield* ProcessSupervisor.run(
          [
            "sh",
            "-c",
            `setsid sh -c 'exec sleep 30' & ${writePids(file, "$$ $!")}; head -c 100000 /dev/zero >&2; exec sleep 30`
          ],
          { cwd: "/", env: { PATH }, maxOutput: 1000, grace: "300 millis" }
        )
        assert.deepStrictEqual(result, ProcessSupervisor.RunResult.OutputTooLong({ stream: "stderr", limit: 1000 }))
        assert.deepStrictEqual(yield* untilGone(yield* pidsIn(file), 0), [])
      })
    )

    it.scoped(
      "run interrupted: SIGTERM, SIGKILL after the grace to what ignores it, a setsid descendant too; done when all are gone",
      () =>
        Effect.gen(function* () {
          const dir = yield* scratch
          const file = join(dir, "pids")
          const fiber = yield* Effect.fork(
            ProcessSupervisor.run(
              ["sh", "-c", `trap '' TERM; setsid sh -c 'exec sleep 30' & ${writePids(file, "$$ $!")}; exec sleep 30`],
              { cwd: "/", env: { PATH }, maxOutput: 1000, grace: "300 millis" }
            )
          )
          const pids = yield* pidsIn(file)
          assert.deepStrictEqual(pids.filter(isRunning), pids)
          const begun = Date.now()
          yield* Fiber.interrupt(fiber)
          assert.isAtLeast(Date.now() - begun, 250) // the grace before the SIGKILL, give or take a timer
          assert.deepStrictEqual(yield* untilGone(pids, 0), [])
        })
    )

    it.scoped(
      "run: a supervisor that dies mid-run: the runs end Lost saying why, what they started is ended (in their groups or not), the next run gets a new one",
      () =>
        Effect.gen(function* () {
          const dir = yield* scratch
          const files = [join(dir, "a"), join(dir, "b")]
          const fibers = yield* Effect.forEach(files, (file) =>
            Effect.fork(
              ProcessSupervisor.run(
                ["sh", "-c", `sleep 30 & a=$!; setsid sleep 30 & ${writePids(file, "$$ $a $!")}; wait`],
                {
                  cwd: "/",
                  env: { PATH },
                  maxOutput: 1000,
                  grace: "300 millis"
                }
              )
            )
          )
          const pids = (yield* Effect.forEach(files, (file) => pidsIn(file))).flat()
          const supervisor = ProcessSupervisor.processId()
          assert.isDefined(supervisor)
          // Its `started` lines are read before the files are there (the command writes them after it starts).
          process.kill(supervisor!, "SIGKILL")
          for (const fiber of fibers) {
            const result = yield* Fiber.join(fiber)
            assert.strictEqual(result._tag, "Lost")
            assert.include(
              result._tag === "Lost" ? result.reason : "",
              `(pid ${supervisor}) was ended by SIGKILL while the command ran; what it started was ended`
            )
          }
          assert.deepStrictEqual(yield* untilGone(pids), [])
          const next = yield* ProcessSupervisor.run(["sh", "-c", "echo $PPID"], {
            cwd: "/",
            env: { PATH },
            maxOutput: 100
          })
          assert.strictEqual(next._tag === "Exited" ? Number(next.stdout) : -1, ProcessSupervisor.processId())
          assert.notStrictEqual(ProcessSupervisor.processId(), supervisor)
        })
    )

    it.effect("run: many commands at once each get their own result", () =>
      Effect.gen(function* () {
        const results = yield* Effect.forEach(
          Array.from({ length: 40 }, (_, i) => i),
          (i) =>
            ProcessSupervisor.run(["sh", "-c", `echo ${i}; exit ${i % 7}`], {
              cwd: "/",
              env: { PATH },
              maxOutput: 100
            }),
          { concurrency: "unbounded" }
        )
        assert.deepStrictEqual(
          results.map((r) => (r._tag === "Exited" ? [r.exitCode, r.stdout] : r._tag)),
          Array.from({ length: 40 }, (_, i) => [i % 7, `${i}\n`])
        )
      })
    )
  })

  it.live(
    "run: a SIGKILLed deputy process leaves nothing of a command run for it",
    () =>
      Effect.gen(function* () {
        const dir = yield* scratch
        const file = join(dir, "pids")
        const child = spawnNode(process.execPath, ["--conditions=@deputy/source", "--import", "tsx", runChild, file], {
          cwd: repoRoot,
          stdio: ["ignore", "inherit", "inherit"]
        })
        yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
        const pids = yield* pidsIn(file, 30_000)
        assert.strictEqual(pids.length, 3) // sh, its sleep, a setsid sleep that ignores SIGTERM
        assert.deepStrictEqual(pids.filter(isRunning), pids)
        const exited = exitOf(child)
        child.kill("SIGKILL")
        assert.deepStrictEqual(yield* exited, { code: null, signal: "SIGKILL" })
        assert.deepStrictEqual(yield* untilGone(pids), [])
      }).pipe(Effect.scoped),
    60_000
  )

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
