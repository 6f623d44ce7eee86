/**
 * Mailbox operations no yield can split (issues 12/13: nothing hangs). Effect 3.22's Mailbox checks
 * for room (offer) or for messages (take) in one step and registers its wait in a later step. A fiber
 * that yields between the two (a scheduler may yield any fiber at any op: Effect's after 2,048 ops,
 * deputy's fair scheduler once its slice is spent) comes back and waits for a change that happened
 * while it was away, and nothing wakes it:
 *   - a writer finds the mailbox full and yields; the reader takes everything and waits; the writer
 *     then waits for room in the empty mailbox (and a take that finds it so turns the mailbox into a
 *     rendezvous for good: capacity 0);
 *   - a reader finds it empty and yields; a writer offers and the wake-up task finds no reader; the
 *     reader then waits beside the messages.
 * Both sides then wait forever holding no handle, and the process exits mid-turn. Running each of
 * these operations with cooperative yielding off keeps the check and the wait in one step (the fiber
 * still suspends while it waits, and yields as usual outside them). Every Mailbox deputy offers to or
 * takes from in a fiber goes through here.
 */
import {
  Channel,
  type Chunk,
  Effect as E,
  type Effect,
  type Mailbox,
  RuntimeFlags,
  RuntimeFlagsPatch,
  Stream
} from "effect"

const noYield = RuntimeFlagsPatch.disable(RuntimeFlags.CooperativeYielding)

/** Runs `effect` with no cooperative yield inside it; it still suspends while it waits. */
export const whole = <A, Err, R>(effect: Effect.Effect<A, Err, R>): Effect.Effect<A, Err, R> =>
  E.withRuntimeFlagsPatch(effect, noYield)

/** `mailbox.offer(message)`, whole. */
export const offer = <A, Err>(mailbox: Mailbox.Mailbox<A, Err>, message: A): Effect.Effect<boolean> =>
  whole(mailbox.offer(message))

/** `mailbox.offerAll(messages)`, whole: the messages not taken (the mailbox ended). */
export const offerAll = <A, Err>(
  mailbox: Mailbox.Mailbox<A, Err>,
  messages: Iterable<A>
): Effect.Effect<Chunk.Chunk<A>> => whole(mailbox.offerAll(messages))

/** `mailbox.take`, whole. */
export const take = <A, Err>(mailbox: Mailbox.ReadonlyMailbox<A, Err>) => whole(mailbox.take)

/** `mailbox.takeAll`, whole. */
export const takeAll = <A, Err>(
  mailbox: Mailbox.ReadonlyMailbox<A, Err>
): Effect.Effect<readonly [messages: Chunk.Chunk<A>, done: boolean], Err> => whole(mailbox.takeAll)

/** `Mailbox.toStream(mailbox)`, each take whole: one chunk per `takeAll`, ending with the mailbox. */
export const toStream = <A, Err>(mailbox: Mailbox.ReadonlyMailbox<A, Err>): Stream.Stream<A, Err> => {
  const loop: Channel.Channel<Chunk.Chunk<A>, unknown, Err> = Channel.flatMap(
    Channel.fromEffect(takeAll(mailbox)),
    ([messages, done]) =>
      done
        ? messages.length === 0
          ? Channel.void
          : Channel.write(messages)
        : Channel.zipRight(
            Channel.write(messages),
            Channel.suspend(() => loop)
          )
  )
  return Stream.fromChannel(loop)
}
