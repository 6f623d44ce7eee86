/**
 * Test side of the no-orphans tests: runs fixtures/crashDeputy.ts as a child deputy process, reads the
 * process group its Codex process runs in, and watches that group through /proc (Linux only).
 */
import { spawn } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { Effect, type Scope } from "effect"

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url))
const fixture = fileURLToPath(new URL("./fixtures/crashDeputy.ts", import.meta.url))
const REPORT = '{"group":'

/** The running (not zombie) processes of process group `group`. */
export const groupMembers = (group: number): ReadonlyArray<number> =>
  readdirSync("/proc").flatMap((name) => {
    if (!/^\d+$/.test(name)) return []
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8")
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      return Number(pgrp) === group && state !== "Z" && state !== "X" ? [Number(name)] : []
    } catch {
      return [] // gone while we looked
    }
  })

/** Waits (real time, bounded) until group `group` has no running process; returns those left at the bound. */
export const untilGroupGone = (group: number, bound = 5_000) =>
  Effect.promise(async () => {
    const deadline = Date.now() + bound
    for (;;) {
      const left = groupMembers(group)
      if (left.length === 0 || Date.now() > deadline) return left
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  })

/**
 * Starts the child deputy (`exec` or `app-server` in `dir`) and waits for its report. `crash` SIGKILLs
 * it and waits for its exit; the scope SIGKILLs it in any case.
 */
export const startCrashDeputy = (mode: "exec" | "app-server", dir: string) =>
  Effect.gen(function* () {
    const child = spawn(process.execPath, ["--conditions=@deputy/source", "--import", "tsx", fixture, mode, dir], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "inherit"]
    })
    yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.once("exit", (_code, signal) => resolve(signal))
    )
    const { group } = yield* Effect.async<{ readonly group: number }, Error>((resume) => {
      // Other lines (the child's logs) may come first.
      createInterface({ input: child.stdout! }).on("line", (line) => {
        if (line.startsWith(REPORT)) resume(Effect.succeed(JSON.parse(line)))
      })
      void exited.then(() => resume(Effect.fail(new Error(`the ${mode} deputy exited before its report`))))
    })
    const crash = Effect.promise(() => {
      child.kill("SIGKILL")
      return exited
    })
    return { group, crash }
  }) satisfies Effect.Effect<unknown, Error, Scope.Scope>
