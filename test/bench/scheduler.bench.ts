/**
 * The fair scheduler's cost and benefit (§37, issue 12): the same delegate turn of 500,000 events
 * (1,000 messages of 499 deltas each; the deltas are filtered out) run on Effect's default scheduler and
 * on deputy's fair scheduler, in paired rounds with the order rotated. A measurement is 5 such turns one
 * after another (about half a second: one turn, ~0.1 s, swung by up to 1.7× between rounds on a
 * shared 2-core host). Prints per variant the median
 * time and the ticks of a 1 ms `setInterval` per 100 ms of the turn (target ≥ 20: a tick every 5 ms, as
 * the §37 test asserts; a count per turn would depend on how fast the turn runs), and the median of
 * per-round time ratios fair / default (target ≤ 1.10).
 *
 *   node --conditions=@deputy/source --import tsx test/bench/scheduler.bench.ts
 */
import { Delegate, FairScheduler, Parent } from "@deputy/core"
import { Script } from "@deputy/protocol"
import { Scripted } from "@deputy/scripted"
import { NodeContext } from "@effect/platform-node"
import { Effect, Layer, Scheduler, Stream } from "effect"
import { compare, type Figure, main, paired, rounds } from "./harness.js"

const ROUNDS = rounds(7)
const flood = Script.parse({
  turns: [{ repeat: 1000, steps: [{ type: "message", text: "x".repeat(499), deltas: 499 }] }]
})
const userInput = { type: "user_input" as const, items: [{ type: "text" as const, text: "go" }] }

const variants: ReadonlyArray<readonly [string, Scheduler.Scheduler]> = [
  ["default", Scheduler.defaultScheduler],
  ["fair", FairScheduler.fairScheduler]
]

/** Turns in one measurement. */
const TURNS = 5

const runOnce = (scheduler: Scheduler.Scheduler) =>
  Effect.gen(function* () {
    let ticks = 0
    const interval = setInterval(() => ticks++, 1)
    const start = performance.now()
    for (let i = 0; i < TURNS; i++) {
      const delegate = yield* Delegate.oneShot(Scripted.spawn(flood), userInput, { scheduler })
      yield* Stream.runDrain(delegate.events)
    }
    const ms = performance.now() - start
    clearInterval(interval)
    return { ms, ticks }
  }).pipe(Effect.scoped)

const figures = async (): Promise<ReadonlyArray<Figure>> => {
  const ticks = { default: [] as Array<number>, fair: [] as Array<number> }
  const measure = (name: "default" | "fair", scheduler: Scheduler.Scheduler) => async () => {
    const result = await Effect.runPromise(runOnce(scheduler).pipe(Effect.provide(layer)))
    ticks[name].push((result.ticks * 100) / result.ms)
    return result.ms
  }
  const times = await paired(
    ROUNDS,
    variants.map(([name, scheduler]) => [name as "default" | "fair", measure(name as "default" | "fair", scheduler)]),
    { log: "scheduler" }
  )
  const counted = ticks.fair.slice(-ROUNDS)
  return [
    compare(
      "scheduler",
      `${TURNS} delegate turns of 500,000 events on the fair scheduler`,
      "ms",
      times.fair,
      { name: "Effect's default scheduler", samples: times.default },
      { text: "ratio ≤ 1.10", met: (r) => r <= 1.1 }
    ),
    compare(
      "scheduler",
      "1 ms setInterval ticks per 100 ms of those turns, fair",
      "ticks",
      counted,
      {
        name: "default",
        samples: ticks.default.slice(-ROUNDS)
      },
      { text: "≥ 20", met: (_, m) => m >= 20 }
    )
  ]
}

const layer = Layer.merge(Parent.layerCallbacks({}), NodeContext.layer)

main(figures)
