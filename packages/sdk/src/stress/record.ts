/**
 * What the harness records right at each top-level agent while it runs: the ops it receives, the
 * requests and the work it emits, and the nested sub-agents that start under it, each in order with a
 * time. A recording belongs to one agent's run and is let go once that agent is checked.
 */
import type { Agent, SpawnOptions } from "@deputy/core"
import type { Event, Op } from "@deputy/protocol"
import { Effect, type Mailbox } from "effect"

/** What one top-level agent received and emitted, as seen right at the agent. */
export interface Recording {
  readonly ops: Array<{ readonly op: Op; readonly id: string; readonly at: number }>
  /**
   * Requests in the order the agent emitted them: answer key (`exec:<id>`, `patch:<id>`, `input:<event
   * id>`; a turn's questions share the turn's event id, one at a time), when, and the parent's request id.
   */
  readonly asked: Array<{ readonly key: string; readonly at: number; readonly requestId: string }>
  /** Call ids of exec / patch work that started, with when, and the ops received before. */
  readonly ran: Array<{ readonly key: string; readonly at: number; readonly opsBefore: number }>
  /** Nested sub-agents (any depth) that started, with when. */
  readonly nested: Array<{ readonly threadId: string; readonly at: number }>
}

/** The answer key (as in `Recording.asked`) of the request an op answers; undefined for an op that answers none. */
export const answerKeyOfOp = (op: Op): string | undefined =>
  op.type === "exec_approval"
    ? `exec:${op.id}`
    : op.type === "patch_approval"
      ? `patch:${op.id}`
      : op.type === "user_input_answer"
        ? `input:${op.id}`
        : undefined

/** Whether an op lets the agent go ahead: an approving decision, or answers to its questions. */
export const isApprovingOp = (op: Op): boolean =>
  op.type === "user_input_answer"
    ? Object.keys(op.response.answers).length > 0
    : (op.type === "exec_approval" || op.type === "patch_approval") &&
      (op.decision === "approved" || op.decision === "approved_for_session")

/** Notes in `record` the requests and the work among `events`, as seen at `at`. */
const noteEvents = (record: Recording, threadId: string, events: Iterable<Event>, at: number): void => {
  for (const event of events) {
    const msg = event.msg
    if (msg.type === "exec_approval_request") {
      const id = msg.approvalId ?? msg.callId
      record.asked.push({ key: `exec:${id}`, at, requestId: `${threadId}:${id}` })
    } else if (msg.type === "apply_patch_approval_request") {
      record.asked.push({ key: `patch:${msg.callId}`, at, requestId: `${threadId}:${msg.callId}` })
    } else if (msg.type === "request_user_input") {
      record.asked.push({ key: `input:${event.id}`, at, requestId: `${threadId}:${msg.callId}` })
    } else if (msg.type === "exec_command_begin") {
      record.ran.push({ key: `exec:${msg.callId}`, at, opsBefore: record.ops.length })
    } else if (msg.type === "patch_apply_begin") {
      record.ran.push({ key: `patch:${msg.callId}`, at, opsBefore: record.ops.length })
    }
  }
}

/**
 * The agent's own events mailbox, its takes noted in `record` as they leave it. A view, not a copy:
 * a pump into a second mailbox cost every top-level agent a fiber and every event a hop (about 6 %
 * of the main thread's CPU in a 2,000-agent run). An event is noted when its reader (the delegate)
 * takes it, which is when a pump would have: both stop taking while the reader's side is full.
 */
const notedEvents = (
  events: Mailbox.ReadonlyMailbox<Event>,
  record: Recording,
  threadId: string
): Mailbox.ReadonlyMailbox<Event> => {
  const noteNow = (taken: Iterable<Event>) => Effect.sync(() => noteEvents(record, threadId, taken, performance.now()))
  const takeAll = Effect.tap(events.takeAll, ([taken]) => noteNow(taken))
  const noted: Record<PropertyKey, unknown> = {
    take: Effect.tap(events.take, (event) => noteNow([event])),
    takeAll,
    takeN: (n: number) => Effect.tap(events.takeN(n), ([taken]) => noteNow(taken)),
    clear: Effect.tap(events.clear, noteNow),
    // The mailbox as an Effect (`yield* events`) is its takeAll.
    commit: () => takeAll,
    [Symbol.iterator]: () => takeAll[Symbol.iterator]()
  }
  return new Proxy(events, {
    get: (target, property) => {
      if (Object.hasOwn(noted, property)) return noted[property]
      const value: unknown = Reflect.get(target, property, target)
      return typeof value === "function" ? value.bind(target) : value
    }
  })
}

/** Wraps an agent so that every op it receives and every request and run it emits is recorded, in order. */
export const recording = (agent: Agent, record: Recording): Agent => ({
  ...agent,
  events: notedEvents(agent.events, record, agent.threadId),
  submit: (submission) =>
    Effect.suspend(() => {
      record.ops.push({ op: submission.op, id: submission.id, at: performance.now() })
      return agent.submit(submission)
    })
})

/** Spawn options whose nested sub-agents, at any depth, are noted in `record` as they start. */
export const noteNested = (spawnOptions: SpawnOptions, record: Recording): SpawnOptions => {
  const spawnChild = spawnOptions.spawnChild
  if (spawnChild === undefined) return spawnOptions
  return {
    ...spawnOptions,
    spawnChild: (request) =>
      spawnChild({
        ...request,
        backend: { name: request.backend.name, spawn: (o) => request.backend.spawn(noteNested(o, record)) },
        onStarted: (threadId) =>
          Effect.zipRight(
            Effect.sync(() => record.nested.push({ threadId, at: performance.now() })),
            request.onStarted?.(threadId) ?? Effect.void
          )
      })
  }
}
