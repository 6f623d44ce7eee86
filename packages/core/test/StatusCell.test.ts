import { assert, describe, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Fiber, Stream } from "effect"
import * as StatusCell from "../src/StatusCell.js"

/** A follower reading `count` values of `cell.changes`, started once it has its first one. */
const follow = <A>(cell: StatusCell.StatusCell<A>, count: number) =>
  Effect.gen(function* () {
    const started = yield* Deferred.make<void>()
    const fiber = yield* Effect.fork(
      Stream.runCollect(
        Stream.take(
          Stream.tap(cell.changes, () => Deferred.succeed(started, undefined)),
          count
        )
      )
    )
    yield* Deferred.await(started)
    return Effect.map(Fiber.join(fiber), Chunk.toReadonlyArray)
  })

describe("StatusCell", () => {
  it.effect("get gives the value last set", () =>
    Effect.gen(function* () {
      const cell = yield* StatusCell.make("pending")
      assert.strictEqual(yield* cell.get, "pending")
      yield* cell.set("idle")
      yield* cell.update((s) => `${s}!`)
      assert.strictEqual(yield* cell.get, "idle!")
    })
  )

  it.effect("changes gives the value when read, then every later set in order, to each follower", () =>
    Effect.gen(function* () {
      const cell = yield* StatusCell.make(0)
      yield* cell.set(1)
      const first = yield* follow(cell, 4)
      yield* cell.set(2)
      const second = yield* follow(cell, 3)
      // Sets in a row with no yield between: a follower gets each one, not only the last.
      yield* cell.set(3)
      yield* cell.set(4)
      assert.deepStrictEqual(yield* first, [1, 2, 3, 4])
      assert.deepStrictEqual(yield* second, [2, 3, 4])
    })
  )

  it.effect("a follower may stop reading at any time; a later one starts from the value then", () =>
    Effect.gen(function* () {
      const cell = yield* StatusCell.make("a")
      assert.deepStrictEqual(Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.take(cell.changes, 1))), ["a"])
      yield* cell.set("b")
      const later = yield* follow(cell, 2)
      yield* cell.set("c")
      assert.deepStrictEqual(yield* later, ["b", "c"])
    })
  )
})
