/**
 * One turn at a time, for a backend's driver (§24, §26). The running turn is a fiber of the scope
 * `make` runs in (the agent's); inputs arriving during it wait, in order, and start after it. A turn
 * fiber posts its end to the driver's inbox as a TurnDone, so the driver handles it in order with the
 * ops; a sequence number tells a late TurnDone of an interrupted turn from the running turn's. Only
 * the driver may call a runner: its state is plain and mutable.
 *
 * The driver itself (`makeDriver`) handles its messages one at a time on a fiber that runs only while
 * messages wait, so an idle agent holds no fiber (issue 12: memory per idle thread).
 */
import type { AgentStatus, Event, EventMsg } from "@deputy/protocol"
import { Effect, Exit, Fiber, type Mailbox, Runtime, Scope } from "effect"
import * as Mailboxes from "./Mailboxes.js"
import type * as StatusCell from "./StatusCell.js"

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
  readonly status: StatusCell.StatusCell<AgentStatus>
  readonly inbox: Pick<Mailbox.Mailbox<TurnDone<A>>, "offer">
  /** Plays turn `turnId`; called as it starts. Interrupting it must end whatever it owns. */
  readonly run: (turnId: string, input: I) => Effect.Effect<A, never, R>
  /** Emit `turn_started` before the turn's fiber runs, for turns that do not emit their own. */
  readonly announce?: boolean
}): Effect.Effect<TurnRunner<I, A, R>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { events, status, inbox, run } = options
    const queued: Array<{ readonly turnId: string; readonly input: I }> = []
    let current:
      | { readonly seq: number; readonly turnId: string; readonly fiber: Fiber.RuntimeFiber<boolean> }
      | undefined
    let nextSeq = 0
    // Turn fibers still running. Closing the agent's scope interrupts them, at the place `make` ran in
    // its finalizer order (a FiberSet's place), with no FiberSet held while idle. Each fiber adds itself
    // in its first step, so one forked just before the close either is interrupted or never starts.
    const live = new Set<Fiber.RuntimeFiber<boolean>>()
    let closed = false
    yield* Scope.addFinalizer(
      yield* Effect.scope,
      Effect.suspend(() => {
        closed = true
        return Fiber.interruptAll(live)
      })
    )
    const turnFiber = (body: Effect.Effect<boolean, never, R>) =>
      Effect.withFiberRuntime<boolean, never, R>((self) => {
        if (closed) return Effect.succeed(false)
        live.add(self)
        return Effect.ensuring(
          body,
          Effect.sync(() => live.delete(self))
        )
      })

    const begin = (turnId: string, input: I) =>
      Effect.gen(function* () {
        const seq = nextSeq++
        const turn = run(turnId, input)
        yield* status.set({ type: "running", turnId })
        if (options.announce) yield* Mailboxes.offer(events, { id: turnId, msg: { type: "turn_started", turnId } })
        const fiber = yield* Effect.forkDaemon(
          turnFiber(
            turn.pipe(
              Effect.exit,
              Effect.flatMap((exit) => inbox.offer({ _tag: "TurnDone", seq, exit }))
            )
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
        yield* status.set({ type: "idle" })
        yield* Mailboxes.offer(events, { id: turnId, msg: last })
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
        yield* status.set({ type: "shutdown" })
        yield* Mailboxes.offer(events, { id, msg: { type: "shutdown_complete" } })
        yield* events.end
      })

    return { start, done, end, interrupt, shutdown }
  })

/** How a driver handles its messages. */
export interface DriverHandlers<M, R> {
  /** Runs first, before any message (a backend's startup events). */
  readonly start: Effect.Effect<void, never, R>
  /** Handles one message; `stop` ends the driver, and later messages are dropped. */
  readonly handle: (message: M) => Effect.Effect<"continue" | "stop", never, R>
}

/** A backend's driver: the agent's messages (ops, turn ends), handled one at a time and in order. */
export interface Driver<M, R> {
  /**
   * Queues `message` and starts the driver's fiber if none runs. False (and dropped) once a message's
   * handling said `stop`. Never waits: the queue is unbounded, like the inbox of a Mailbox.
   */
  readonly offer: (message: M) => Effect.Effect<boolean>
  /**
   * Starts the driver (once): `start`, then `handle` on each message, those offered before first.
   * Separate from `makeDriver` so the handlers may use what is made with the driver (a TurnRunner).
   */
  readonly run: (handlers: DriverHandlers<M, R>) => Effect.Effect<void>
}

/**
 * A driver in the caller's scope, with the caller's context. Its fiber runs only while messages wait
 * and belongs to that scope (closing it interrupts the fiber); each run has the context `makeDriver`
 * was called in.
 */
export const makeDriver = <M, R>(): Effect.Effect<Driver<M, R>, never, Scope.Scope | R> =>
  Effect.gen(function* () {
    // The driver's fibers start from the agent's runtime (its services, scheduler, supervisors): a
    // root fiber is cheaper than a daemon fork that then provides the context (it is made per wake).
    const runtime = yield* Effect.runtime<R>()
    const waiting: Array<M> = []
    let handlers: DriverHandlers<M, R> | undefined
    let running = true // until `run`: messages wait for the handlers
    let stopped = false
    let fiber: Fiber.RuntimeFiber<void> | undefined
    // Closing the caller's scope stops the driver at the place `makeDriver` ran in its finalizer order
    // (a forkScoped fiber's place), though its fiber may be forked later.
    yield* Scope.addFinalizer(
      yield* Effect.scope,
      Effect.suspend(() => {
        stopped = true
        waiting.length = 0
        const running = fiber
        fiber = undefined
        return running === undefined ? Effect.void : Fiber.interrupt(running)
      })
    )
    // The check and `running = false` in one step: an offer after it starts a new fiber.
    const next = Effect.sync(() => {
      const message = stopped ? undefined : waiting.shift()
      if (message === undefined) {
        running = false
        fiber = undefined
      }
      return message
    })
    const drain = Effect.gen(function* () {
      while (true) {
        const message = yield* next
        if (message === undefined) return
        if ((yield* handlers!.handle(message)) === "stop") {
          stopped = true
          waiting.length = 0
          fiber = undefined
          return
        }
      }
    })
    // The fiber names itself in its first step, so a close just after the fork either interrupts it or
    // stops it before it starts. Interruptible whatever the region of the fiber that woke it.
    const runFrom = (first: Effect.Effect<void, never, R>): Effect.Effect<void> =>
      Effect.sync(() => {
        Runtime.runFork(runtime)(
          Effect.interruptible(
            Effect.withFiberRuntime<void, never, R>((self) => {
              if (stopped) return Effect.void
              fiber = self
              return Effect.zipRight(first, drain)
            })
          )
        )
      })
    return {
      // Queueing and starting the fiber are one step: an interrupted offer cannot leave a message with no fiber.
      offer: (message) =>
        Effect.uninterruptible(
          Effect.suspend(() => {
            if (stopped) return Effect.succeed(false)
            waiting.push(message)
            if (running) return Effect.succeed(true)
            running = true
            return Effect.as(runFrom(Effect.void), true)
          })
        ),
      run: (given) =>
        Effect.uninterruptible(
          Effect.suspend(() => {
            if (handlers !== undefined) return Effect.void
            handlers = given
            return runFrom(given.start)
          })
        )
    }
  })
