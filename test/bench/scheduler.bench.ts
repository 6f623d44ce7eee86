/**
 * The fair scheduler's cost and benefit (§37, issue 12): the same delegate turn of 500,000 events
 * (1,000 messages of 499 deltas each; the deltas are filtered out) run on Effect's default scheduler and
 * on deputy's fair scheduler, in paired rounds with the order rotated. Prints per variant the median
 * time and the ticks of a 1 ms `setInterval` during the turn, and the median of per-round time ratios
 * fair / default (target ≤ 1.10).
 *
 *   node --conditions=@deputy/source --import tsx test/bench/scheduler.bench.ts
 */
import { Delegate, FairScheduler, Parent } from "@deputy/core"
import { Script } from "@deputy/protocol"
import { Scripted } from "@deputy/scripted"
import { NodeContext } from "@effect/platform-node"
import { Effect, Layer, Scheduler, Stream } from "effect"

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 9)
const flood = Script.parse({
  turns: [{ repeat: 1000, steps: [{ type: "message", text: "x".repeat(499), deltas: 499 }] }]
})
const userInput = { type: "user_input" as const, items: [{ type: "text" as const, text: "go" }] }

const variants: ReadonlyArray<readonly [string, Scheduler.Scheduler]> = [
  ["default", Scheduler.defaultScheduler],
  ["fair", FairScheduler.fairScheduler]
]

const runOnce = (scheduler: Scheduler.Scheduler) =>
  Effect.gen(function* () {
    let ticks = 0
    const interval = setInterval(() => ticks++, 1)
    const start = performance.now()
    const delegate = yield* Delegate.oneShot(Scripted.spawn(flood), userInput, { scheduler })
    yield* Stream.runDrain(delegate.events)
    const ms = performance.now() - start
    clearInterval(interval)
    return { ms, ticks }
  }).pipe(Effect.scoped)

const median = (xs: ReadonlyArray<number>) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

const main = Effect.gen(function* () {
  yield* runOnce(Scheduler.defaultScheduler) // warm-up
  const results = new Map<string, Array<{ ms: number; ticks: number }>>(variants.map(([name]) => [name, []]))
  const ratios: Array<number> = []
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? variants : [...variants].reverse()
    const times = new Map<string, number>()
    for (const [name, scheduler] of order) {
      const result = yield* runOnce(scheduler)
      results.get(name)!.push(result)
      times.set(name, result.ms)
    }
    ratios.push(times.get("fair")! / times.get("default")!)
  }
  for (const [name, rs] of results) {
    const ms = rs.map((r) => r.ms)
    console.log(
      `${name.padEnd(8)} median ${median(ms).toFixed(0)} ms (min ${Math.min(...ms).toFixed(0)}, max ${Math.max(...ms).toFixed(0)}), ` +
        `1 ms ticks during the turn: median ${median(rs.map((r) => r.ticks))}`
    )
  }
  console.log(
    `fair / default: median of ${ROUNDS} per-round ratios ${median(ratios).toFixed(3)} ` +
      `(min ${Math.min(...ratios).toFixed(3)}, max ${Math.max(...ratios).toFixed(3)}); target ≤ 1.10`
  )
}).pipe(Effect.provide(Layer.merge(Parent.layerCallbacks({}), NodeContext.layer)))

Effect.runPromise(main)
