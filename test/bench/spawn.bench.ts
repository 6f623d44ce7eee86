/**
 * What supervision costs a command (issue 12, item 2), two ways, against a plain
 * `child_process.spawn` to exit:
 * - `spawn`: started from this process (`ProcessSupervisor.spawn`), seen to exit, then `end` (the
 *   supervisor scans for the command's marked descendants and answers): what the Codex backends use;
 * - `run`: the supervisor spawns it, gathers its output, sweeps and answers with the result
 *   (`ProcessSupervisor.run`): what a scripted `exec` uses. This process never forks for it, so its
 *   own CPU per command is a figure too (a fork of a big deputy was ~6 ms of its CPU a command).
 * PER_ROUND commands (`true`) one after another per round, paired rounds with the order rotated.
 * Target: no more than a plain spawn plus a few ms of wall time; `run` below a plain spawn's CPU here.
 *
 *   node --conditions=@deputy/source --import tsx test/bench/spawn.bench.ts
 */
import { type ChildProcess, spawn } from "node:child_process"
import { ProcessSupervisor } from "@deputy/core"
import { Effect } from "effect"
import { compare, knob, main, median, paired, rounds } from "./harness.js"

const PER_ROUND = knob("BENCH_SPAWNS", 20)
const ROUNDS = rounds(7)

const exited = (child: ChildProcess) =>
  new Promise<void>((resolve, reject) => {
    child.on("error", reject)
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`true exited ${code}`))))
  })

/** This process's CPU (user + system) per command of each variant, in the rounds' order. */
const cpu: Record<string, Array<number>> = { plain: [], supervised: [], run: [] }

/** Milliseconds of wall time per command, over PER_ROUND commands; the CPU goes to `cpu[name]`. */
const perCommand = (name: string, one: () => Promise<void>) => async () => {
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  for (let i = 0; i < PER_ROUND; i++) await one()
  const wall = (performance.now() - t0) / PER_ROUND
  const used = process.cpuUsage(c0)
  cpu[name]!.push((used.user + used.system) / 1000 / PER_ROUND)
  return wall
}

const supervised = async () => {
  const { child, end } = ProcessSupervisor.spawn("true", [], { stdio: ["ignore", "ignore", "ignore"] })
  await exited(child)
  await Effect.runPromise(end)
}

const run = async () => {
  const result = await Effect.runPromise(
    ProcessSupervisor.run(["true"], { cwd: process.cwd(), env: { PATH: process.env.PATH ?? "" }, maxOutput: 1024 })
  )
  if (result._tag !== "Exited" || result.exitCode !== 0) throw new Error(`true ended ${JSON.stringify(result)}`)
}

main(async () => {
  const samples = await paired(
    ROUNDS,
    [
      ["plain", perCommand("plain", () => exited(spawn("true", [], { stdio: "ignore" })))],
      ["supervised", perCommand("supervised", supervised)],
      ["run", perCommand("run", run)]
    ],
    { log: "spawn" }
  )
  // The warm-up round's CPU is not a sample.
  for (const name of Object.keys(cpu)) cpu[name] = cpu[name]!.slice(-ROUNDS)
  const plain = { name: "plain child_process.spawn", samples: samples.plain }
  return [
    compare(
      "spawn",
      `a command (\`true\`) supervised, start to exit and swept (${PER_ROUND} a round)`,
      "ms",
      samples.supervised,
      plain,
      { text: "≤ plain + 5 ms", met: () => median(samples.supervised) - median(samples.plain) <= 5 }
    ),
    compare(
      "spawn",
      `a command (\`true\`) run by the supervisor, request to result, swept (${PER_ROUND} a round)`,
      "ms",
      samples.run,
      plain,
      { text: "≤ plain + 5 ms", met: () => median(samples.run) - median(samples.plain) <= 5 }
    ),
    compare(
      "spawn",
      "this process's CPU per command run by the supervisor",
      "ms",
      cpu.run!,
      { name: "a plain child_process.spawn's", samples: cpu.plain! },
      { text: "ratio < 1", met: (ratio) => ratio < 1 }
    )
  ]
})
