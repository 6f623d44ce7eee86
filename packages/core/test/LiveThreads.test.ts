import type { ThreadId } from "@deputy/protocol"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Option, Scope } from "effect"
import * as LiveThreads from "../src/internal/LiveThreads.js"
import { Parent } from "../src/Parent.js"
import { makeFakeAgent, THREAD } from "./fixtures/FakeAgent.js"
import { fakeThread } from "./fixtures/fakeThread.js"

const OTHER = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb" as ThreadId

/** A registry entry for a fake agent's thread, in a scope of its own. */
const entryFor = Effect.gen(function* () {
  const scope = yield* Scope.make()
  const thread = yield* fakeThread((yield* makeFakeAgent()).agent, scope)
  return { thread, internal: false, scope, flush: Effect.void } satisfies LiveThreads.Entry
})

describe("LiveThreads", () => {
  it.effect("§11 an id that is live, or reserved by a start in flight, is DuplicateThreadId", () =>
    Effect.gen(function* () {
      const registry = LiveThreads.make()
      yield* registry.reserve(OTHER)
      assert.strictEqual((yield* Effect.flip(registry.reserve(OTHER)))._tag, "DuplicateThreadId")
      yield* registry.unreserve(OTHER)
      yield* registry.reserve(OTHER) // free again once the start gave it back
      const entry = yield* entryFor
      yield* registry.add(entry)
      const duplicate = yield* Effect.flip(registry.reserve(THREAD))
      assert.strictEqual(duplicate.message, `thread ${THREAD} already exists`)
    }).pipe(Effect.provide(Parent.layerCallbacks({})))
  )

  it.effect("drop shuts the thread down, and leaves a newer entry under the same id alone", () =>
    Effect.gen(function* () {
      const registry = LiveThreads.make()
      const stale = yield* entryFor
      const fresh = yield* entryFor
      yield* registry.add(fresh)
      assert.isTrue(Option.isNone(yield* registry.drop(THREAD, stale)))
      assert.strictEqual(Option.getOrThrow(registry.get(THREAD)), fresh)
      assert.strictEqual(Option.getOrThrow(yield* registry.drop(THREAD, fresh)), fresh)
      assert.isFalse(yield* fresh.thread.isRunning)
      assert.deepStrictEqual(registry.size(), { live: 0, reserved: 0 })
      yield* Scope.close(stale.scope, Exit.void)
    }).pipe(Effect.provide(Parent.layerCallbacks({})))
  )
})
