/**
 * What supervision costs a command (issue 12, item 2): the wall time of starting `true` and seeing it
 * exit, plainly (`child_process.spawn`) and under deputy's watchdog (`Watchdog.spawn`, a Node process
 * per command that marks and sweeps the command's descendants), PER_ROUND commands one after another
 * per round, paired rounds with the order rotated. Target: no more than a plain spawn plus a few ms.
 *
 *   node --conditions=@deputy/source --import tsx test/bench/spawn.bench.ts
 */
import { type ChildProcess, spawn } from "node:child_process"
import { Watchdog } from "@deputy/core"
import { compare, knob, main, median, paired, rounds } from "./harness.js"

const PER_ROUND = knob("BENCH_SPAWNS", 20)
const ROUNDS = rounds(7)

const exited = (child: ChildProcess) =>
  new Promise<void>((resolve, reject) => {
    child.on("error", reject)
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`true exited ${code}`))))
  })

/** Milliseconds per command, over PER_ROUND commands. */
const perCommand = (start: () => ChildProcess) => async () => {
  const t0 = performance.now()
  for (let i = 0; i < PER_ROUND; i++) await exited(start())
  return (performance.now() - t0) / PER_ROUND
}

main(async () => {
  const samples = await paired(
    ROUNDS,
    [
      ["plain", perCommand(() => spawn("true", [], { stdio: "ignore" }))],
      ["watchdog", perCommand(() => Watchdog.spawn("true", [], { stdio: ["ignore", "ignore", "ignore"] }))]
    ],
    { log: "spawn" }
  )
  const extra = median(samples.watchdog) - median(samples.plain)
  return [
    compare(
      "spawn",
      `a command (\`true\`) under the watchdog, start to exit (${PER_ROUND} a round)`,
      "ms",
      samples.watchdog,
      { name: "plain child_process.spawn", samples: samples.plain },
      { text: "≤ plain + 5 ms", met: () => extra <= 5 }
    )
  ]
})
