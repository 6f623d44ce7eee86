// §37: the fair scheduler yields to the event loop once a slice of fiber work is spent, and only then.
// A fiber woken from an I/O or timer callback after the loop has turned starts a new slice at once; before,
// every wake-up after an idle spell waited for a setImmediate (about 1.5 ms a hop for a codex exec turn).
import { FairScheduler } from "@deputy/core"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, FiberId } from "effect"

/** A macrotask: the event loop turns once (timers, I/O, immediates) before it resolves. */
const loopTurn = () => new Promise<void>((resolve) => setTimeout(resolve, 2))

describe("FairScheduler", () => {
  it("runs a fiber woken by a timer callback before the immediates queued beside its wake-up", async () => {
    const scheduler = new FairScheduler.FairScheduler()
    const order: Array<string> = []
    const first = Deferred.unsafeMake<void>(FiberId.none)
    const second = Deferred.unsafeMake<void>(FiberId.none)
    const fiber = Effect.runFork(
      Effect.withScheduler(
        Effect.gen(function* () {
          yield* Deferred.await(first)
          order.push("first")
          yield* Deferred.await(second)
          order.push("second")
        }),
        scheduler
      )
    )
    /** Wakes the fiber through `deferred` from a timer callback that first queues an immediate. */
    const wakeBesideImmediate = (deferred: Deferred.Deferred<void>, name: string) =>
      new Promise<void>((resolve) =>
        setTimeout(() => {
          setImmediate(() => {
            order.push(name)
            resolve()
          })
          Deferred.unsafeDone(deferred, Exit.void)
        }, 1)
      )
    await loopTurn()
    await wakeBesideImmediate(first, "immediate 1")
    await loopTurn() // the fiber waits again; its slice is long spent
    await wakeBesideImmediate(second, "immediate 2")
    await Effect.runPromise(Fiber.join(fiber))
    expect(order).toEqual(["first", "immediate 1", "second", "immediate 2"])
  })

  it("still yields to the event loop when promise callbacks, not the loop, keep waking its fibers", async () => {
    // Each Effect.promise leaves the run queue empty and is resumed from a microtask: no macrotask runs
    // between, so the slice must not restart on such a wake-up, or the loop would starve.
    const scheduler = new FairScheduler.FairScheduler()
    const rounds = 20_000
    let done = 0
    let doneWhenLoopRan: number | undefined
    setImmediate(() => {
      doneWhenLoopRan = done
    })
    await Effect.runPromise(
      Effect.withScheduler(
        Effect.gen(function* () {
          for (let i = 0; i < rounds; i++) {
            yield* Effect.promise(() => Promise.resolve())
            done++
          }
        }),
        scheduler
      )
    )
    expect(doneWhenLoopRan).toBeDefined()
    expect(doneWhenLoopRan!).toBeLessThan(rounds)
  })
})
