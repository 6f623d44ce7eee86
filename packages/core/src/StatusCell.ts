/**
 * A status — an agent's, the approval registry's pending list (issue 12: the cost of a thread): what a
 * `SubscriptionRef` gives — the value now, and a stream of it then of every later change — without its
 * semaphore and PubSub, which made each change some forty Effect steps and each agent a PubSub. A set
 * and what every follower receives are one synchronous step, so any fiber may set it without a lock.
 */
import { Effect, Mailbox, Stream, Subscribable } from "effect"
import * as Mailboxes from "./Mailboxes.js"

/** A value any fiber sets, and anyone reads or follows. */
export interface StatusCell<A> extends Subscribable.Subscribable<A> {
  /** Sets the value, and hands it to every follower. */
  readonly set: (value: A) => Effect.Effect<void>
  /** Sets the value to `f` of the current one, and hands it to every follower. */
  readonly update: (f: (current: A) => A) => Effect.Effect<void>
}

/** A cell holding `initial`. `changes` gives the value at the time of reading, then each set, in order. */
export const make = <A>(initial: A): Effect.Effect<StatusCell<A>> =>
  Effect.sync(() => {
    let value = initial
    // Unbounded, like a SubscriptionRef's PubSub: a follower that reads slowly loses nothing.
    const followers = new Set<Mailbox.Mailbox<A>>()
    const publish = (next: A) => {
      value = next
      for (const follower of followers) follower.unsafeOffer(next)
    }
    const follow = Effect.acquireRelease(
      Effect.map(Mailbox.make<A>(), (mailbox) => {
        // The value now and the registration in one step: no set falls between them.
        mailbox.unsafeOffer(value)
        followers.add(mailbox)
        return mailbox
      }),
      (mailbox) => Effect.sync(() => void followers.delete(mailbox))
    )
    const subscribable = Subscribable.make({
      get: Effect.sync(() => value),
      changes: Stream.unwrapScoped(Effect.map(follow, Mailboxes.toStream))
    })
    return Object.assign(subscribable, {
      set: (next: A) => Effect.sync(() => publish(next)),
      update: (f: (current: A) => A) => Effect.sync(() => publish(f(value)))
    })
  })
