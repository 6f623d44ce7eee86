/** A counted pool of slots whose waiters are served in arrival order; a held slot is released with its scope. */
import { Deferred, Effect, FiberId, type Scope } from "effect"

/** One pool: at most `limit` holders at once. */
export interface SlotPool {
  /** Waits (first come, first served) for a slot, held until the caller's scope closes. */
  readonly acquire: Effect.Effect<void, never, Scope.Scope>
  /** True when a slot is free now. */
  readonly isFree: () => boolean
}

export const makeSlotPool = (limit: number): SlotPool => {
  let used = 0
  const waiters: Array<Deferred.Deferred<void>> = []
  const release = Effect.sync(() => {
    const next = waiters.shift()
    // A released slot passes straight to the next waiter, so later arrivals cannot overtake it.
    if (next === undefined) used--
    else Deferred.unsafeDone(next, Effect.void)
  })
  const take = Effect.suspend(() => {
    if (used < limit && waiters.length === 0) {
      used++
      return Effect.void
    }
    const turn = Deferred.unsafeMake<void>(FiberId.none)
    waiters.push(turn)
    return Deferred.await(turn).pipe(
      Effect.onInterrupt(() =>
        Effect.suspend(() => {
          const at = waiters.indexOf(turn)
          if (at >= 0) {
            waiters.splice(at, 1)
            return Effect.void
          }
          return release // it was handed a slot just as it was interrupted: pass it on
        })
      )
    )
  })
  return {
    // Waiting is interruptible; once a slot is taken, its release is registered before anything can interrupt.
    acquire: Effect.uninterruptibleMask((restore) =>
      Effect.zipRight(
        restore(take),
        Effect.addFinalizer(() => release)
      )
    ),
    isFree: () => used < limit && waiters.length === 0
  }
}
