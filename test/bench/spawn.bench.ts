/**
 * What supervision costs a command (issue 12, item 2): the wall time of starting `true`, seeing it
 * exit and, supervised, ending what it left (`ProcessSupervisor.spawn` then its `end`: the supervisor scans
 * for the command's marked descendants and answers), against a plain `child_process.spawn` to exit.
 * PER_ROUND commands one after another per round, paired rounds with the order rotated. Target: no
 * more than a plain spawn plus a few ms.
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

/** Milliseconds per command, over PER_ROUND commands. */
const perCommand = (run: () => Promise<void>) => async () => {
  const t0 = performance.now()
  for (let i = 0; i < PER_ROUND; i++) await run()
  return (performance.now() - t0) / PER_ROUND
}

const supervised = async () => {
  const { child, end } = ProcessSupervisor.spawn("true", [], { stdio: ["ignore", "ignore", "ignore"] })
  await exited(child)
  await Effect.runPromise(end)
}

main(async () => {
  const samples = await paired(
    ROUNDS,
    [
      ["plain", perCommand(() => exited(spawn("true", [], { stdio: "ignore" })))],
      ["supervised", perCommand(supervised)]
    ],
    { log: "spawn" }
  )
  const extra = median(samples.supervised) - median(samples.plain)
  return [
    compare(
      "spawn",
      `a command (\`true\`) supervised, start to exit and swept (${PER_ROUND} a round)`,
      "ms",
      samples.supervised,
      { name: "plain child_process.spawn", samples: samples.plain },
      { text: "≤ plain + 5 ms", met: () => extra <= 5 }
    )
  ]
})
