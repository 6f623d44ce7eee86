// Nothing hangs (issues 12/13), whatever op a fiber yields at. Effect 3.22's Mailbox checks for room
// (or for messages) in one step and registers its wait in a later one; a fiber that yields between the
// two registers a wait nobody will wake: the reader waits on an empty mailbox while the writer waits
// for room in it. deputy's fair scheduler with a time slice yields fibers at any op, and the delegate
// benchmark then exited silently mid-turn. These runs yield at random ops (seeded, so each run is the
// same every time) and fail as soon as the process falls idle before the turn has been read whole.
import { Delegate, Mailboxes, Parent } from "@deputy/core"
import { type Event, Script, userText } from "@deputy/protocol"
import { Scripted } from "@deputy/scripted"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Layer, Mailbox, Stream } from "effect"
import { AnywhereScheduler } from "./support/anywhereScheduler.js"

/** 2,000 events a turn: 100 messages streamed as 9 deltas each (deltas are filtered out) and 100 plain ones. */
const turn = Script.parse({
  turns: [
    {
      repeat: 100,
      steps: [
        { type: "message", text: "abcdefghi", deltas: 9 },
        { type: "message", text: "x" }
      ]
    }
  ]
})
const FORWARDED = 100 * 2 + 2 // the messages, turn_started and turn_complete

const layer = Layer.mergeAll(Parent.layerCallbacks({}), NodeContext.layer)

/** Reads one turn through a delegate with small mailboxes (many full and empty moments), all on `scheduler`. */
const readTurn = (scheduler: AnywhereScheduler) =>
  Effect.gen(function* () {
    const delegate = yield* Delegate.interactive(Scripted.spawn(turn, { eventsCapacity: 4 }), {
      capacity: 4,
      scheduler
    })
    yield* delegate.submit(userText("go"))
    const read = yield* delegate.events.pipe(
      Stream.takeUntil((e: Event) => e.msg.type === "turn_complete"),
      Stream.runCount
    )
    yield* delegate.cancel
    return read
  }).pipe(Effect.scoped, Effect.withScheduler(scheduler), Effect.provide(layer))

/** The turn's count of forwarded events, or "stalled" once the run falls idle before it ends. */
const run = (seed: number, yieldRate: number) =>
  new Promise<number | "stalled">((resolve, reject) => {
    const scheduler = new AnywhereScheduler(seed, yieldRate, () => resolve("stalled"))
    Effect.runPromise(readTurn(scheduler)).then(resolve, reject)
  })

/** 200 numbers written 10 at a time into a mailbox of 4 and read back, all on `scheduler`. */
const pipe = (scheduler: AnywhereScheduler, read: "takeAll" | "stream") =>
  Effect.gen(function* () {
    const box = yield* Mailbox.make<number>({ capacity: 4 })
    const writer = yield* Effect.fork(
      Effect.gen(function* () {
        for (let i = 0; i < 200; i += 10)
          yield* Mailboxes.offerAll(
            box,
            Array.from({ length: 10 }, (_, k) => i + k)
          )
        yield* box.end
      })
    )
    let count = 0
    if (read === "stream") {
      count = yield* Stream.runCount(Mailboxes.toStream(box))
    } else {
      while (true) {
        const [chunk, done] = yield* Mailboxes.takeAll(box)
        count += Chunk.size(chunk)
        if (done) break
      }
    }
    yield* Fiber.join(writer)
    return count
  }).pipe(Effect.withScheduler(scheduler))

const runPipe = (seed: number, read: "takeAll" | "stream") =>
  new Promise<number | "stalled">((resolve, reject) => {
    const scheduler = new AnywhereScheduler(seed, 0.05, () => resolve("stalled"))
    Effect.runPromise(pipe(scheduler, read)).then(resolve, reject)
  })

describe("yielding at any op", () => {
  for (const read of ["takeAll", "stream"] as const) {
    it(`Mailboxes: a writer and a reader (${read}) of a small mailbox never wait on each other (50 seeds)`, async () => {
      for (let seed = 1; seed <= 50; seed++) assert.strictEqual(await runPipe(seed, read), 200, `seed ${seed}`)
    })
  }

  for (const yieldRate of [0.02, 0.05]) {
    it(`a delegate forwards a whole turn when fibers yield at ${yieldRate * 100} % of their ops (20 seeds)`, async () => {
      for (let seed = 1; seed <= 20; seed++) {
        assert.strictEqual(await run(seed, yieldRate), FORWARDED, `seed ${seed}`)
      }
    })
  }
})
