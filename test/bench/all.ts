/**
 * `pnpm bench`: runs every benchmark (test/bench/*.bench.ts), each in its own Node process (so one's
 * heap does not weigh on another's figures), one after another, against the compiled packages (dist,
 * what users run: `pnpm bench` builds first; through tsx's source transform every closure carries an
 * extra `name` property, about 8 KB per idle thread), and prints ONE table of their figures:
 * figure, median, min–max, baseline, ratio (median of per-round ratios), target, met. Progress goes to
 * stderr. Round counts and sizes come from the environment (BENCH_ROUNDS, BENCH_EVENTS, BENCH_ALIVE,
 * BENCH_CANCELS, BENCH_TURNS, BENCH_LONGRUN_THREADS, …); BENCH_ONLY=delegate,rollout picks benches.
 *
 *   tsc -b && node --import tsx test/bench/all.ts
 */
import { spawn } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import { cpus, loadavg, totalmem } from "node:os"
import { createInterface } from "node:readline"
import { FIGURE_LINE, type Figure, table } from "./harness.js"

const BENCHES = ["delegate", "rollout", "scheduler", "policy", "codex", "spawn", "longrun", "stress"] as const
const FILES: Record<(typeof BENCHES)[number], string> = {
  delegate: "delegate.bench.ts",
  rollout: "rollout.bench.ts",
  scheduler: "scheduler.bench.ts",
  policy: "policy.bench.ts",
  codex: "codex.bench.ts",
  spawn: "spawn.bench.ts",
  longrun: "manager-longrun.bench.ts",
  stress: "stress.bench.ts"
}

const only = process.env.BENCH_ONLY?.split(",").map((name) => name.trim())
const chosen = BENCHES.filter((name) => only === undefined || only.includes(name))

/** Runs one bench file with BENCH_GATHER=1 and returns the figures it printed. */
const runBench = (file: string): Promise<{ figures: Array<Figure>; code: number | null }> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--expose-gc", "--import", "tsx", new URL(file, import.meta.url).pathname], {
      env: { ...process.env, BENCH_GATHER: "1" },
      stdio: ["ignore", "pipe", "inherit"]
    })
    const figures: Array<Figure> = []
    createInterface({ input: child.stdout }).on("line", (line) => {
      if (line.startsWith(FIGURE_LINE)) figures.push(JSON.parse(line.slice(FIGURE_LINE.length)) as Figure)
      else console.error(line)
    })
    child.on("error", reject)
    child.on("close", (code) => resolve({ figures, code }))
  })

const run = async () => {
  const started = new Date()
  const loads: Array<number> = [loadavg()[0]!]
  const figures: Array<Figure> = []
  const failed: Array<string> = []
  for (const name of chosen) {
    const t0 = performance.now()
    console.error(`== ${name}`)
    const result = await runBench(FILES[name])
    figures.push(...result.figures)
    // Kept as they come, so a later failure loses nothing.
    mkdirSync(".tsbuild", { recursive: true })
    writeFileSync(".tsbuild/bench-figures.json", `${JSON.stringify(figures, null, 2)}\n`)
    if (result.code !== 0) failed.push(name)
    loads.push(loadavg()[0]!)
    console.error(`== ${name}: ${((performance.now() - t0) / 1000).toFixed(0)} s`)
  }
  const minutes = (Date.now() - started.getTime()) / 60_000
  console.log(
    `pnpm bench, ${started.toISOString()}: ${cpus().length} vCPU ${cpus()[0]?.model ?? ""}, ` +
      `${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}; ${minutes.toFixed(1)} min; ` +
      `load average (1 min) ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}`
  )
  console.log("")
  console.log(table(figures))
  if (failed.length > 0) {
    console.log(`\nfailed: ${failed.join(", ")}`)
    process.exitCode = 1
  }
}

void run()
