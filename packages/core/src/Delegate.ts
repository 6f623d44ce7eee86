/**
 * The delegate: the machinery between a parent and one sub-agent. It owns a child scope of the
 * caller's scope holding the agent, two bounded mailboxes (ops in, events out) and their forwarders:
 * the events forwarder runs as long as the delegate, the ops mailbox is made at the first submit and
 * its forwarder runs only while ops wait, so an idle delegate holds one fiber. Approval requests go
 * to the Parent, never to the caller. Closing the scope (or `cancel`) withdraws pending requests,
 * then sends Interrupt and Shutdown and drains within a bound (§1–§9).
 */
import {
  type AgentStatus,
  type Event,
  type EventMsg,
  type EventType,
  emptyUserInputResponse,
  isTurnEnd,
  type Op,
  type ReviewDecision,
  type Submission,
  type ThreadId,
  type UserInputOp,
  type UserInputResponse,
  userText
} from "@deputy/protocol"
import {
  type Cause,
  Chunk,
  Data,
  Deferred,
  Duration,
  Effect,
  Either,
  ExecutionStrategy,
  Exit,
  Fiber,
  Mailbox,
  Option,
  type Scheduler,
  Scope,
  Stream,
  type Subscribable
} from "effect"
import type { Agent } from "./Agent.js"
import { fairScheduler } from "./FairScheduler.js"
import * as Mailboxes from "./Mailboxes.js"
import { Parent, type ParentError, type ParentRequest, type ParentService } from "./Parent.js"
import { confinePatch } from "./Workspace.js"

/** The delegate takes no more ops: it is one-shot, or it was cancelled or shut down. */
export class OpsClosed extends Data.TaggedError("OpsClosed")<{ readonly threadId: string; readonly reason: string }> {
  override get message() {
    return `thread ${this.threadId} takes no more ops: ${this.reason}`
  }
}

/** Ops only the parent may send: answers to the agent's requests (§29). */
export type AnswerOp = Extract<Op, { type: "exec_approval" | "patch_approval" | "user_input_answer" }>

const isAnswerOp = (op: Op): op is AnswerOp =>
  op.type === "exec_approval" || op.type === "patch_approval" || op.type === "user_input_answer"

/**
 * The caller tried to answer one of its sub-agent's requests itself (§29). Only the Parent answers
 * (or an ApprovalRegistry on its behalf): a caller could otherwise approve what the parent denies.
 */
export class CallerCannotAnswer extends Data.TaggedError("CallerCannotAnswer")<{
  readonly threadId: string
  readonly op: AnswerOp["type"]
}> {
  override get message() {
    return `thread ${this.threadId}: ${this.op} is the parent's to send; answer through the Parent or the ApprovalRegistry, not submit`
  }
}

/**
 * A second reader of a delegate's events while its `events` stream runs (a bug in the caller: the
 * two would split the events). Raised as a defect by the second reader.
 */
export class EventsAlreadyRead extends Data.TaggedError("EventsAlreadyRead")<{
  readonly threadId: string
  readonly reader: "events" | "take"
}> {
  override get message() {
    return `thread ${this.threadId}: ${this.reader} while its events stream is being read; read them one way (events, or take)`
  }
}

/** Event types the caller never sees by default (§2); they still reach `onEvents` (and so the rollout). */
export const defaultDroppedEvents: ReadonlySet<EventType> = new Set<EventType>([
  "agent_message_delta",
  "agent_reasoning_delta",
  "token_count",
  "session_configured",
  "thread_name_updated"
])

/** The default filter: forwards every event but the dropped kinds. */
export const defaultEventFilter = (msg: EventMsg): boolean => !defaultDroppedEvents.has(msg.type)

/**
 * How an agent's shutdown went: its running turn `completed` or it had none and ended cleanly, its
 * turn was `aborted`, it was let go after the drain bound (`drain_timeout`), or it refused the
 * interrupt / shutdown and never ended (`submit_failed`).
 */
export type ShutdownOutcome = "completed" | "aborted" | "drain_timeout" | "submit_failed"

/** What shutting a delegate down ended: the agent's outcome and the parent requests it withdrew. */
export interface DelegateShutdown {
  readonly outcome: ShutdownOutcome
  /** Request ids withdrawn from the parent because the delegate stopped waiting for them (§4). */
  readonly withdrawn: ReadonlyArray<string>
}

/** How a delegate behaves. Every field has a default. */
export interface DelegateOptions {
  /** Capacity of each of the two mailboxes (ops in, events out). Default 512. */
  readonly capacity?: number
  /** Which events reach the caller (true = forward). Approval requests never do. Default: `defaultEventFilter`. */
  readonly filter?: (msg: EventMsg) => boolean
  /** How long shutdown waits for the agent's turn to end. Default 500 ms. */
  readonly drainTimeout?: Duration.DurationInput
  /** Thread ids from the root down to this thread's parent; this thread is appended for requests' provenance. */
  readonly ancestors?: ReadonlyArray<ThreadId>
  /** The agent's name, shown to the parent with each request. */
  readonly agentName?: string
  /** Sees every event the agent emits, filtered ones included, in order and in batches (a rollout writer). */
  readonly onEvents?: (events: ReadonlyArray<Event>) => Effect.Effect<void>
  /** Sees every submission made to the agent. */
  readonly onSubmission?: (submission: Submission) => Effect.Effect<void>
  /** Runs the agent and the forwarders. Default: the process's fair scheduler (§37); benchmarks pass Effect's own. */
  readonly scheduler?: Scheduler.Scheduler
}

/** A running delegate, as the caller holds it. */
export interface Delegate {
  /** The sub-agent's thread. */
  readonly threadId: ThreadId
  /**
   * Queues an op for the agent and returns its submission id (`id`, or a fresh UUID). Waits while the ops
   * mailbox is full. Answers to the agent's requests are refused with CallerCannotAnswer (§29).
   */
  readonly submit: (op: Op, id?: string) => Effect.Effect<string, OpsClosed | CallerCannotAnswer>
  /**
   * The caller's events in order; ends once the agent is shut down or gone. Read them one way: while
   * this stream runs, `take` and a second run die with EventsAlreadyRead (they would split the events).
   * Run again after it ends (or after `take`s), it goes on with the events not read yet.
   */
  readonly events: Stream.Stream<Event>
  /** The next event; fails with NoSuchElementException once the events have ended. Dies while `events` runs. */
  readonly take: Effect.Effect<Event, Cause.NoSuchElementException>
  /** The agent's status now, and its changes. */
  readonly status: Subscribable.Subscribable<AgentStatus>
  /** Adds an event of deputy's own (e.g. a failed rollout write) to the caller's events; dropped once they ended. */
  readonly report: (msg: EventMsg, id?: string) => Effect.Effect<void>
  /** The caller stops reading events; the delegate then shuts the agent down (§7). */
  readonly close: Effect.Effect<void>
  /** Withdraws pending requests, sends Interrupt then Shutdown, drains within the bound and releases the agent. Never fails. */
  readonly cancel: Effect.Effect<DelegateShutdown>
  /** Waits until the agent has been shut down (by cancel, by the caller leaving, by its own end, or one-shot completion). */
  readonly awaitShutdown: Effect.Effect<DelegateShutdown>
  /** True once the agent has been shut down. */
  readonly isShutDown: Effect.Effect<boolean>
}

const DEFAULT_CAPACITY = 512
const DEFAULT_DRAIN = Duration.millis(500)

/**
 * Starts an agent with `spawn` in a child of the caller's scope and returns its delegate (§1–§8).
 * Closing the caller's scope cancels the delegate.
 */
export const interactive = <E, R>(
  spawn: Effect.Effect<Agent, E, R>,
  options: DelegateOptions = {}
): Effect.Effect<Delegate, E, Exclude<R, Scope.Scope> | Parent | Scope.Scope> => start(spawn, options, false)

/**
 * Starts an agent, submits `input` (text, or a `user_input` op) at once, and shuts the agent down by itself after the first
 * `turn_complete` or `turn_aborted` (§9). The returned delegate refuses further ops with OpsClosed.
 */
export const oneShot = <E, R>(
  spawn: Effect.Effect<Agent, E, R>,
  input: string | UserInputOp,
  options: DelegateOptions & { readonly turnId?: string } = {}
): Effect.Effect<Delegate, E, Exclude<R, Scope.Scope> | Parent | Scope.Scope> =>
  Effect.gen(function* () {
    const delegate = yield* start(spawn, options, true)
    // The ops mailbox was just made, so it is open and has room: this submit cannot fail.
    yield* Effect.orDie(delegate.submit(typeof input === "string" ? userText(input) : input, options.turnId))
    return {
      ...delegate,
      submit: () => Effect.fail(new OpsClosed({ threadId: delegate.threadId, reason: "one-shot delegate" }))
    }
  })

// §37: the agent and both forwarders run on the fair scheduler, so streaming never starves timers and I/O.
const start = <E, R>(
  spawn: Effect.Effect<Agent, E, R>,
  options: DelegateOptions,
  isOneShot: boolean
): Effect.Effect<Delegate, E, Exclude<R, Scope.Scope> | Parent | Scope.Scope> =>
  Effect.withScheduler(startOnCurrentScheduler(spawn, options, isOneShot), options.scheduler ?? fairScheduler)

const startOnCurrentScheduler = <E, R>(
  spawn: Effect.Effect<Agent, E, R>,
  options: DelegateOptions,
  isOneShot: boolean
): Effect.Effect<Delegate, E, Exclude<R, Scope.Scope> | Parent | Scope.Scope> =>
  Effect.gen(function* () {
    const parent = yield* Parent
    const scope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    // An agent spawned already (`Effect.succeed(agent)`, as the ThreadManager gives it) needs no scope
    // around its spawn: about 40 Effect steps a thread (issue 12).
    const spawned: Agent | undefined = Exit.isExit(spawn) && Exit.isSuccess(spawn) ? (spawn.value as Agent) : undefined
    const agent =
      spawned ??
      (yield* spawn.pipe(
        Scope.extend(scope),
        Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause)))
      ))
    const capacity = options.capacity ?? DEFAULT_CAPACITY
    const scheduler = options.scheduler ?? fairScheduler
    const events = yield* Mailbox.make<Event>({ capacity })
    const isShutDown = yield* Deferred.make<DelegateShutdown>()
    const withdrawn: Array<string> = []
    // Made when first needed, so an idle delegate holds neither (issue 12: memory per idle thread):
    // the ops mailbox at the first submit, the fibers asking the parent at the first request.
    let ops: Mailbox.Mailbox<Submission> | undefined
    let opsShut = false
    // The fibers asking the parent, one per pending request: a plain set (a FiberSet and its scope cost
    // some hundred Effect steps a delegate, issue 12). Each adds itself in its first step, so one forked
    // just before the shutdown either is interrupted by it or never asks.
    let asking: Set<Fiber.RuntimeFiber<void>> | undefined
    let askingClosed = false

    const observeSubmission = options.onSubmission
    const observeEvents = options.onEvents

    const forward = options.filter ?? defaultEventFilter
    const drainTimeout = options.drainTimeout ?? DEFAULT_DRAIN

    // Errors submitting to a closed agent are ignored everywhere (§8): the agent is gone, nothing waits.
    const trySend = (submission: Submission) =>
      Effect.isSuccess(
        observeSubmission === undefined
          ? agent.submit(submission)
          : Effect.zipRight(observeSubmission(submission), agent.submit(submission))
      )
    const send = (submission: Submission) => Effect.asVoid(trySend(submission))

    const isLastWord = (event: Event) => isTurnEnd(event.msg) || event.msg.type === "shutdown_complete"
    /** Reads the agent's events until its turn ends or it shuts down; says which, "ended" if the events end first. */
    const drain = Effect.gen(function* () {
      while (true) {
        const event = yield* Mailboxes.take(agent.events)
        if (observeEvents) yield* observeEvents([event])
        if (isLastWord(event)) return event.msg.type
      }
    }).pipe(Effect.orElseSucceed(() => "ended" as const))
    /**
     * The drain within its bound. An idle agent has handled the interrupt and the shutdown by the time
     * this fiber comes round again: what it said is then read without a timer (a race forks two fibers,
     * issue 12). What follows its last word is left unread, as `drain` leaves it.
     */
    const drainInTime = Effect.zipRight(
      Effect.yieldNow(),
      Effect.suspend(() => {
        const buffered = Option.getOrElse(agent.events.unsafeSize(), () => 0)
        const timed = Effect.interruptible(drain).pipe(Effect.timeoutOption(drainTimeout))
        if (buffered === 0) return timed
        return Effect.flatMap(Mailboxes.takeAll(agent.events), ([chunk, done]) => {
          const events = Chunk.toReadonlyArray(chunk)
          const last = events.findIndex(isLastWord)
          const read = last === -1 ? events : events.slice(0, last + 1)
          const seen = observeEvents === undefined ? Effect.void : observeEvents(read)
          if (last !== -1) return Effect.as(seen, Option.some(events[last]!.msg.type))
          return Effect.zipRight(seen, done ? Effect.succeed(Option.some("ended" as const)) : timed)
        })
      })
    )

    // The events forwarder (forked last; stopped by the shutdown, not by a finalizer of its own), and whether
    // it is parked at its take, between two batches: then the first thing it does when it runs again is
    // to see its interruption, so it can start no approval request and take no event after the shutdown began.
    let forwarder: Fiber.RuntimeFiber<void> | undefined
    let forwarderParked = false
    let shuttingDown = false

    // §8: Interrupt, Shutdown, then drain until the turn ends or the bound passes. Never fails, never hangs.
    const shutdownAgent = Effect.gen(function* () {
      shuttingDown = true
      // §4: the forwarder stops before pending requests are withdrawn, so no new one can start after. Parked,
      // it is only told to stop (issue 12): waiting for it to stop is a hop through the run queue, behind
      // every streaming fiber, and the agent would get its interrupt and shutdown only after that wait.
      if (forwarder !== undefined) {
        if (forwarderParked) yield* Fiber.interruptAsFork(forwarder, yield* Effect.fiberId)
        else yield* Fiber.interrupt(forwarder)
      }
      // §4: pending requests are withdrawn and answered `abort` first.
      askingClosed = true
      if (asking !== undefined) yield* Fiber.interruptAll([...asking])
      opsShut = true
      if (ops !== undefined) yield* ops.shutdown
      const interrupted = yield* trySend({ id: "interrupt", op: { type: "interrupt" } })
      const shutDown = yield* trySend({ id: "shutdown", op: { type: "shutdown" } })
      // The drain reads the agent's events alone: the forwarder has stopped by then.
      if (forwarder !== undefined) yield* Fiber.await(forwarder)
      const ended = yield* drainInTime
      const outcome: ShutdownOutcome = Option.match(ended, {
        onNone: () => (interrupted && shutDown ? "drain_timeout" : "submit_failed"),
        onSome: (last) => (last === "turn_aborted" ? "aborted" : "completed")
      })
      yield* events.end
      yield* Deferred.succeed(isShutDown, { outcome, withdrawn: [...withdrawn] })
    })
    // The scope runs its finalizers once; `cancel` and `awaitShutdown` wait on isShutDown.
    yield* Scope.addFinalizer(scope, Effect.uninterruptible(shutdownAgent))

    // Answer ids (`exec:<approval id>`, …) of requests waiting for the parent: one answer each (§30).
    const pendingAnswers = new Set<string>()
    const report = (msg: EventMsg, id: string) => Effect.asVoid(Mailboxes.offer(events, { id, msg }))
    const handleApproval = approvalHandler(parent, agent, send, report, options, (requestId) =>
      withdrawn.push(requestId)
    )
    // Closing our own scope must happen outside it: the closing fiber would otherwise interrupt itself.
    const closeFromOutside = Effect.asVoid(Effect.forkDaemon(Scope.close(scope, Exit.void)))

    const forwardEvents = Effect.gen(function* () {
      while (true) {
        forwarderParked = true
        const [chunk, done] = yield* Mailboxes.takeAll(agent.events)
        forwarderParked = false
        const out: Array<Event> = []
        let turnEnded = false
        const batch = Chunk.toReadonlyArray(chunk)
        // Hot path: one Effect per batch, not per event.
        if (observeEvents) yield* observeEvents(batch)
        for (const event of batch) {
          if (isApprovalRequest(event.msg)) {
            const key = answerKey(event.id, event.msg)
            if (pendingAnswers.has(key)) {
              // §30: any answer to this one would reach the request already pending under the same id.
              out.push({ id: event.id, msg: { type: "error", message: duplicateRequest(event.msg, key) } })
            } else {
              pendingAnswers.add(key)
              const forget = Effect.sync(() => pendingAnswers.delete(key))
              asking ??= new Set()
              const fibers = asking
              const ask = Effect.ensuring(handleApproval(event.id, event.msg), forget)
              yield* Effect.forkDaemon(
                Effect.withFiberRuntime<void>((self) => {
                  if (askingClosed) return forget
                  fibers.add(self)
                  return Effect.ensuring(
                    ask,
                    Effect.sync(() => fibers.delete(self))
                  )
                })
              )
            }
          } else if (forward(event.msg)) {
            out.push(event)
          }
          if (isOneShot && isTurnEnd(event.msg)) {
            turnEnded = true
            break
          }
        }
        // §6: a full events mailbox blocks us here; cancellation still interrupts the wait.
        const undelivered =
          out.length === 1
            ? (yield* Mailboxes.offer(events, out[0]!))
              ? 0
              : 1
            : (yield* Mailboxes.offerAll(events, out)).length
        if (undelivered > 0) return yield* closeFromOutside // §7: the caller has gone
        if (turnEnded) {
          // §9: a one-shot ends itself without the caller cancelling.
          yield* send({ id: "shutdown", op: { type: "shutdown" } })
          return yield* closeFromOutside
        }
        if (done) return yield* closeFromOutside
      }
    })

    // Ops reach the agent through one forwarder at a time, in order. It runs only while ops wait: it
    // stops once the mailbox is empty and a submit starts it again, so an idle delegate has no fiber here.
    let forwardingOps = false
    const opsEmpty = Effect.sync(() => {
      if (ops !== undefined && Option.getOrElse(ops.unsafeSize(), () => 0) > 0) return false
      forwardingOps = false // in the same step as the check: a submit after it starts a new forwarder
      return true
    })
    const forwardOps = (mailbox: Mailbox.Mailbox<Submission>) =>
      Effect.gen(function* () {
        while (true) {
          const [chunk, done] = yield* Mailboxes.takeAll(mailbox)
          for (const submission of Chunk.toReadonlyArray(chunk)) yield* send(submission)
          if (done || (yield* opsEmpty)) return
        }
      })
    // Made in one step with the check, so two first submits share one mailbox; on the delegate's scheduler.
    const makeOps = Effect.map(Mailbox.make<Submission>({ capacity }), (made) => {
      ops ??= made
      return ops
    }).pipe(Effect.withScheduler(scheduler))
    const opsMailbox = Effect.suspend(() => (ops !== undefined ? Effect.succeed(ops) : makeOps))
    const wakeForwarder = (mailbox: Mailbox.Mailbox<Submission>) =>
      Effect.suspend(() => {
        if (forwardingOps) return Effect.void
        forwardingOps = true
        // Interruptible whatever the submitter's region: closing the delegate must be able to stop it.
        return Effect.asVoid(
          Effect.forkIn(Effect.interruptible(Effect.withScheduler(forwardOps(mailbox), scheduler)), scope)
        )
      })
    const opsClosed = () => new OpsClosed({ threadId: agent.threadId, reason: "the agent was shut down" })
    const enqueue = (submission: Submission) =>
      Effect.suspend(() =>
        opsShut
          ? Effect.fail(opsClosed())
          : Effect.flatMap(opsMailbox, (mailbox) =>
              Effect.flatMap(Mailboxes.offer(mailbox, submission), (accepted) =>
                accepted ? Effect.as(wakeForwarder(mailbox), submission.id) : Effect.fail(opsClosed())
              )
            )
      )

    // One way to read at a time: `take` beside a running `events` stream would split the events between
    // the two readers, each silently missing the other's. Concurrent `take`s are a queue's, and fine.
    let streaming = false
    const alreadyRead = (reader: "events" | "take") =>
      Effect.dieSync(() => new EventsAlreadyRead({ threadId: agent.threadId, reader }))
    const readEvents = Stream.unwrapScoped(
      Effect.suspend(() =>
        streaming
          ? alreadyRead("events")
          : Effect.as(
              Effect.acquireRelease(
                Effect.sync(() => {
                  streaming = true
                }),
                () =>
                  Effect.sync(() => {
                    streaming = false
                  })
              ),
              Mailboxes.toStream(events)
            )
      )
    )

    // Forked and recorded in one step, so a shutdown either finds it or comes before it (and it never starts);
    // interruptible whatever the caller's region, or the shutdown could not stop it.
    yield* Effect.uninterruptible(
      Effect.suspend(() =>
        shuttingDown
          ? Effect.void
          : Effect.map(Effect.forkDaemon(Effect.interruptible(forwardEvents)), (fiber) => {
              forwarder = fiber
            })
      )
    )

    return {
      threadId: agent.threadId,
      submit: (op, id = crypto.randomUUID()) =>
        isAnswerOp(op)
          ? Effect.fail(new CallerCannotAnswer({ threadId: agent.threadId, op: op.type }))
          : enqueue({ id, op }),
      events: readEvents,
      take: Effect.suspend(() => (streaming ? alreadyRead("take") : Mailboxes.take(events))),
      report: (msg, id = "") => report(msg, id),
      status: agent.status,
      // §7 at once, not at the agent's next event: nobody will read what it says.
      close: Effect.zipRight(events.shutdown, closeFromOutside),
      cancel: Effect.zipRight(Scope.close(scope, Exit.void), Deferred.await(isShutDown)),
      awaitShutdown: Deferred.await(isShutDown),
      isShutDown: Deferred.isDone(isShutDown)
    }
  })

type ApprovalRequestMsg = Extract<
  EventMsg,
  { type: "exec_approval_request" | "apply_patch_approval_request" | "request_user_input" }
>

const isApprovalRequest = (msg: EventMsg): msg is ApprovalRequestMsg =>
  msg.type === "exec_approval_request" ||
  msg.type === "apply_patch_approval_request" ||
  msg.type === "request_user_input"

/** The id the agent's answer will carry (§3), by kind: two requests with the same key cannot both be answered. */
const answerKey = (eventId: string, msg: ApprovalRequestMsg): string => {
  switch (msg.type) {
    case "exec_approval_request":
      return `exec:${msg.approvalId ?? msg.callId}`
    case "apply_patch_approval_request":
      return `patch:${msg.callId}`
    case "request_user_input":
      return `input:${eventId}`
  }
}

const duplicateRequest = (msg: ApprovalRequestMsg, key: string) =>
  `${msg.type} ignored: a request with the same id (${key}) is still waiting for the parent; ` +
  "a backend must not reuse a pending request's id"

/**
 * Asks the parent while the agent waits (§3). A parent that fails or gives no answer yields the
 * fail-closed answer (§5); interruption withdraws the request and sends the cancelled answer (§4).
 */
const approvalHandler =
  (
    parent: ParentService,
    agent: Agent,
    send: (submission: Submission) => Effect.Effect<void>,
    report: (msg: EventMsg, id: string) => Effect.Effect<void>,
    options: DelegateOptions,
    onWithdrawn: (requestId: string) => void
  ) =>
  (eventId: string, msg: ApprovalRequestMsg): Effect.Effect<void> => {
    const base = {
      threadId: agent.threadId,
      turnId: msg.turnId,
      path: [...(options.ancestors ?? []), agent.threadId],
      ...(options.agentName === undefined ? {} : { agentName: options.agentName })
    }
    const reply = <A>(
      request: ParentRequest,
      ask: Effect.Effect<A, ParentError>,
      answer: (a: A) => Op,
      failClosed: A,
      cancelled: A
    ) =>
      Effect.gen(function* () {
        const a = yield* ask.pipe(
          Effect.orElseSucceed(() => failClosed),
          Effect.onInterrupt(() =>
            Effect.sync(() => onWithdrawn(request.requestId)).pipe(
              Effect.zipRight(parent.withdraw(request.requestId)),
              Effect.zipRight(send({ id: eventId, op: answer(cancelled) }))
            )
          )
        )
        yield* send({ id: eventId, op: answer(a) })
      })

    switch (msg.type) {
      case "exec_approval_request": {
        const approvalId = msg.approvalId ?? msg.callId
        const request: ParentRequest = {
          ...base,
          kind: "exec",
          requestId: `${agent.threadId}:${approvalId}`,
          command: msg.command,
          cwd: msg.cwd,
          ...(msg.reason === undefined ? {} : { reason: msg.reason })
        }
        return reply<ReviewDecision>(
          request,
          parent.requestExecApproval(request),
          (decision) => ({ type: "exec_approval", id: approvalId, turnId: msg.turnId, decision }),
          "denied",
          "abort"
        )
      }
      case "apply_patch_approval_request": {
        const workspace = agent.workspace ?? { cwd: process.cwd() }
        const answer = (decision: ReviewDecision): Op => ({ type: "patch_approval", id: msg.callId, decision })
        return Effect.gen(function* () {
          // §28: a patch is confined before the parent sees it; what lands outside is denied unasked.
          const confined = yield* Effect.either(confinePatch(workspace, msg.changes)).pipe(
            Effect.onInterrupt(() => send({ id: eventId, op: answer("abort") }))
          )
          const paths = Either.isRight(confined) ? confined.right.relative : []
          const refusal = Either.isLeft(confined)
            ? confined.left.message
            : paths.length === 0
              ? "it names no file, so where it writes cannot be checked"
              : undefined
          if (refusal !== undefined) {
            const message = `patch ${msg.callId} denied before asking the parent: ${refusal}`
            yield* Effect.logWarning(message)
            yield* report({ type: "warning", message }, eventId)
            return yield* send({ id: eventId, op: answer("denied") })
          }
          const request: ParentRequest = {
            ...base,
            kind: "patch",
            requestId: `${agent.threadId}:${msg.callId}`,
            changes: msg.changes,
            cwd: workspace.cwd,
            paths,
            ...(msg.reason === undefined ? {} : { reason: msg.reason }),
            ...(msg.grantRoot === undefined ? {} : { grantRoot: msg.grantRoot })
          }
          return yield* reply<ReviewDecision>(request, parent.requestPatchApproval(request), answer, "denied", "abort")
        })
      }
      case "request_user_input": {
        const request: ParentRequest = {
          ...base,
          kind: "user_input",
          requestId: `${agent.threadId}:${msg.callId}`,
          questions: msg.questions
        }
        return reply<UserInputResponse>(
          request,
          parent.requestUserInput(request),
          (response) => ({ type: "user_input_answer", id: eventId, response }),
          emptyUserInputResponse(),
          emptyUserInputResponse()
        )
      }
    }
  }
