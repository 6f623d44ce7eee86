/**
 * One turn at a time, for a backend's driver fiber (§24, §26). The running turn is a fiber in a
 * FiberSet of the scope `make` runs in (the agent's); inputs arriving during it wait, in order, and
 * start after it. A turn fiber posts its end to the driver's inbox as a TurnDone, so the driver
 * handles it in order with the ops; a sequence number tells a late TurnDone of an interrupted turn
 * from the running turn's. Only the driver fiber may call a runner: its state is plain and mutable.
 */
import type { AgentStatus, Event, EventMsg } from "@deputy/protocol"
import { Effect, Exit, Fiber, FiberSet, type Mailbox, type Scope, SubscriptionRef } from "effect"

/** What a turn fiber posts to the driver's inbox when it ends by itself. */
export interface TurnDone<A> {
  readonly _tag: "TurnDone"
  readonly seq: number
  readonly exit: Exit.Exit<A>
}

/** A backend's turns, run one at a time. It sets the `running`, `idle` and `shutdown` statuses. */
export interface TurnRunner<I, A, R> {
  /** Starts turn `turnId` on `input` now when none runs, else once the turns queued before it have ended. */
  readonly start: (turnId: string, input: I) => Effect.Effect<void, never, R>
  /** Gives `onEnd` the running turn's id and exit; ignores the TurnDone of a turn interrupted and already reported. */
  readonly done: <R2>(
    done: TurnDone<A>,
    onEnd: (turnId: string, exit: Exit.Exit<A>) => Effect.Effect<void, never, R2>
  ) => Effect.Effect<void, never, R2>
  /** Ends turn `turnId`: status `idle` first, then `last`, then the next queued turn (§24). */
  readonly end: (turnId: string, last: EventMsg) => Effect.Effect<void, never, R>
  /** Interrupts the running turn's fiber, then reports turn_aborted (`interrupted`) unless it had already ended. */
  readonly interrupt: Effect.Effect<void, never, R>
  /** Drops the queued turns, interrupts the running one, then: status `shutdown`, `shutdown_complete` as `id`, end of `events`. */
  readonly shutdown: (id: string) => Effect.Effect<void, never, R>
}

/** A runner whose turns `run` plays, each in its own fiber, emitting last events on `events`. */
export const make = <I, A, R>(options: {
  readonly events: Mailbox.Mailbox<Event>
  readonly status: SubscriptionRef.SubscriptionRef<AgentStatus>
  readonly inbox: Pick<Mailbox.Mailbox<TurnDone<A>>, "offer">
  /** Plays turn `turnId`; called as it starts. Interrupting it must end whatever it owns. */
  readonly run: (turnId: string, input: I) => Effect.Effect<A, never, R>
  /** Emit `turn_started` before the turn's fiber runs, for turns that do not emit their own. */
  readonly announce?: boolean
}): Effect.Effect<TurnRunner<I, A, R>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { events, status, inbox, run } = options
    const fibers = yield* FiberSet.make()
    const queued: Array<{ readonly turnId: string; readonly input: I }> = []
    let current:
      | { readonly seq: number; readonly turnId: string; readonly fiber: Fiber.RuntimeFiber<boolean> }
      | undefined
    let nextSeq = 0

    const begin = (turnId: string, input: I) =>
      Effect.gen(function* () {
        const seq = nextSeq++
        const turn = run(turnId, input)
        yield* SubscriptionRef.set(status, { type: "running", turnId })
        if (options.announce) yield* events.offer({ id: turnId, msg: { type: "turn_started", turnId } })
        const fiber = yield* FiberSet.run(
          fibers,
          turn.pipe(
            Effect.exit,
            Effect.flatMap((exit) => inbox.offer({ _tag: "TurnDone", seq, exit }))
          )
        )
        current = { seq, turnId, fiber }
      })

    const start = (turnId: string, input: I) =>
      Effect.suspend(() => {
        if (current === undefined) return begin(turnId, input)
        queued.push({ turnId, input })
        return Effect.void
      })

    const end = (turnId: string, last: EventMsg) =>
      Effect.gen(function* () {
        current = undefined
        yield* SubscriptionRef.set(status, { type: "idle" })
        yield* events.offer({ id: turnId, msg: last })
        const next = queued.shift()
        if (next !== undefined) yield* begin(next.turnId, next.input)
      })

    const done = <R2>(
      message: TurnDone<A>,
      onEnd: (turnId: string, exit: Exit.Exit<A>) => Effect.Effect<void, never, R2>
    ) =>
      Effect.suspend(() => {
        if (current?.seq !== message.seq) return Effect.void // interrupted, and already reported
        const { turnId } = current
        current = undefined
        return onEnd(turnId, message.exit)
      })

    const interrupt = Effect.gen(function* () {
      const running = current
      if (running === undefined) return
      const exit = yield* Fiber.interrupt(running.fiber)
      if (Exit.isSuccess(exit)) return // it had already ended; its TurnDone is in the inbox
      yield* end(running.turnId, { type: "turn_aborted", turnId: running.turnId, reason: "interrupted" })
    })

    const shutdown = (id: string) =>
      Effect.gen(function* () {
        queued.length = 0
        yield* interrupt
        yield* SubscriptionRef.set(status, { type: "shutdown" })
        yield* events.offer({ id, msg: { type: "shutdown_complete" } })
        yield* events.end
      })

    return { start, done, end, interrupt, shutdown }
  })
