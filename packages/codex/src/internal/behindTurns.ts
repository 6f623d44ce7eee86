/**
 * Work behind a codex exec agent's turns: a turn reports as soon as Codex says it ended, and what
 * follows it (the child's exit, its group's SIGKILL, the supervisor's sweep) runs here, each piece on
 * a fiber of its own. Closing the scope this is made in waits for all of it (each piece bounded by its
 * grace plus a few seconds); work asked for after that runs inline.
 */
import { Effect, Fiber, Scope } from "effect"

/** Makes, in the caller's scope, the function that runs `work` behind the turns (see the module). */
export const behindTurns: Effect.Effect<
  (work: Effect.Effect<void>) => Effect.Effect<Fiber.Fiber<void>>,
  never,
  Scope.Scope
> = Effect.gen(function* () {
  // Made at the first piece: an agent that never ran a turn holds no set.
  let live: Set<Fiber.RuntimeFiber<void>> | undefined
  let closed = false
  yield* Scope.addFinalizer(
    yield* Effect.scope,
    Effect.suspend(() => {
      closed = true
      return live === undefined ? Effect.void : Effect.asVoid(Fiber.awaitAll(live))
    })
  )
  return (work) =>
    Effect.suspend(() => {
      if (closed) return Effect.map(Effect.exit(work), Fiber.done)
      return Effect.map(Effect.forkDaemon(work), (fiber) => {
        live ??= new Set()
        const set = live
        set.add(fiber)
        fiber.addObserver(() => set.delete(fiber))
        return fiber
      })
    })
})
