/**
 * Where a resumed thread picks up (§24): pure functions of its history. A history that ends
 * mid-turn — a `turn_started` with no `turn_complete` / `turn_aborted` after it, nor an `interrupt`
 * or `shutdown` that would have ended it — was cut short (the deputy process crashed, say, while an
 * approval was pending). The resumed agent continues that turn where it stopped, so pending
 * requests are asked again rather than lost, then starts the inputs submitted but never started.
 *
 * Where it stopped: the steps are matched in order against the turn's recorded events (call ids
 * are deterministic). A step whose events all are recorded is done and not re-run: a message,
 * reasoning, token count or fail once its event is there, an ask once answered, an exec or patch
 * once its end event is there (or it was denied), a spawn once every child ended. The first step
 * with only some of its events (a request without an answer, a command begun but not ended, some
 * children ended) runs again: an unanswered request is emitted again, identical (same call id, turn
 * id and event id), an answered one is not asked again but its decision is used. A sleep has no
 * events: it counts as done when a later step is. Everything after runs as usual.
 */
import type { EventMsg, Op, ReviewDecision, RolloutItem, ScriptStep, ScriptTurn } from "@deputy/protocol"
import { isTurnEnd } from "@deputy/protocol"

/** Deterministic (§24): `call-<turn>-<step>`, with `-<round>` when the turn repeats. */
export const callIdOf = (turnIndex: number, stepIndex: number, round: number, repeat: number) =>
  repeat > 1 ? `call-${turnIndex}-${stepIndex}-${round}` : `call-${turnIndex}-${stepIndex}`

/** The error a spawn step reports when the agent cannot start children. */
export const NO_SPAWN_CHILD = "spawn needs a ThreadManager"

/** Work a history left undone: the turn it ends in the middle of, and inputs never started. */
export interface Unfinished {
  /** The turn cut short: its id, its script turn, and the history after its `turn_started`. */
  readonly turn?: { readonly turnId: string; readonly index: number; readonly items: ReadonlyArray<RolloutItem> }
  /** `user_input` submissions with no `turn_started`, and no `shutdown` after them, in order. */
  readonly inputs: ReadonlyArray<string>
}

/** Finds the work `history` left undone (§19: mid-turn is a started turn with no end after it). */
export const unfinishedOf = (history: ReadonlyArray<RolloutItem>): Unfinished => {
  let turnsStarted = 0
  let open: { readonly turnId: string; readonly index: number; readonly start: number } | undefined
  const started = new Set<string>()
  let inputs: Array<string> = []
  history.forEach((item, i) => {
    if (item.type === "event") {
      const { id, msg } = item.event
      if (msg.type === "turn_started") {
        open = { turnId: msg.turnId, index: turnsStarted++, start: i + 1 }
        started.add(msg.turnId)
      } else if (isTurnEnd(msg) && (msg.turnId ?? id) === open?.turnId) {
        open = undefined
      }
      return
    }
    if (item.type !== "submission") return
    const { id, op } = item.submission
    if (op.type === "user_input") inputs.push(id)
    else if (op.type === "interrupt")
      open = undefined // the turn was being aborted: it is not continued
    else if (op.type === "shutdown") {
      open = undefined
      inputs = [] // shutdown drops queued inputs
    }
  })
  const pending = inputs.filter((id) => !started.has(id))
  return open === undefined
    ? { inputs: pending }
    : { turn: { turnId: open.turnId, index: open.index, items: history.slice(open.start) }, inputs: pending }
}

/** Where an unfinished turn goes on. */
export interface Progress {
  /** The position (`round × steps + step`) of the first step to run. */
  readonly from: number
  /** Decisions already given in this turn, keyed as the turn waits for them (`exec:<callId>`, `patch:<callId>`). */
  readonly decisions: ReadonlyMap<string, ReviewDecision>
  /** The last message the done steps said, for `turn_complete`. */
  readonly lastAgentMessage: string | undefined
}

type Mark = { readonly kind: "event"; readonly msg: EventMsg } | { readonly kind: "op"; readonly op: Op }

const isEvent =
  <T extends EventMsg["type"]>(type: T, callId?: string) =>
  (mark: Mark): mark is { kind: "event"; msg: Extract<EventMsg, { type: T }> } =>
    mark.kind === "event" &&
    mark.msg.type === type &&
    (callId === undefined || ("callId" in mark.msg && mark.msg.callId === callId))

const isAnswer = (type: "exec_approval" | "patch_approval" | "user_input_answer", id: string) => (mark: Mark) =>
  mark.kind === "op" && mark.op.type === type && mark.op.id === id

/** Matches the steps of script turn `index` against the items the turn `turnId` recorded (see the module comment). */
export const progressOf = (
  turn: ScriptTurn | undefined,
  index: number,
  turnId: string,
  items: ReadonlyArray<RolloutItem>
): Progress => {
  const marks: Array<Mark> = []
  for (const item of items) {
    if (item.type === "event") {
      const { id, msg } = item.event
      // Deltas are part of their message; warnings answer stray ops.
      if (id !== turnId || msg.type === "agent_message_delta" || msg.type === "agent_reasoning_delta") continue
      if (msg.type === "warning") continue
      marks.push({ kind: "event", msg })
    } else if (item.type === "submission") {
      const { op } = item.submission
      if (op.type === "exec_approval" || op.type === "patch_approval" || op.type === "user_input_answer") {
        marks.push({ kind: "op", op })
      }
    }
  }
  let k = 0
  // One mark, or every repeat of it (a request asked again by an earlier resume, a command begun again).
  const takeOne = (test: (mark: Mark) => boolean) => {
    const mark = marks[k]
    if (mark === undefined || !test(mark)) return undefined
    k++
    return mark
  }
  const takeAll = (test: (mark: Mark) => boolean) => {
    let last: Mark | undefined
    for (let mark = takeOne(test); mark !== undefined; mark = takeOne(test)) last = mark
    return last
  }
  let from = 0
  let lastAgentMessage: string | undefined
  const decisions = new Map<string, ReviewDecision>()
  const steps: ReadonlyArray<ScriptStep> = turn?.steps ?? []
  const repeat = turn?.repeat ?? 1

  // The outcome of matching one step: done, begun (run it again), or not reached.
  const match = (step: ScriptStep, callId: string): "done" | "begun" | "none" => {
    switch (step.type) {
      case "message": {
        const mark = marks[k]
        if (mark === undefined || !isEvent("agent_message")(mark)) return "none"
        k++
        lastAgentMessage = mark.msg.message
        return "done"
      }
      case "reasoning":
        return takeOne(isEvent("agent_reasoning")) ? "done" : "none"
      case "token_count":
        return takeOne(isEvent("token_count")) ? "done" : "none"
      case "fail":
        return takeOne(isEvent("error")) ? "done" : "none"
      case "sleep":
        return "none" // decided by the steps after it
      case "ask": {
        if (!takeAll(isEvent("request_user_input", callId))) return "none"
        return takeAll(isAnswer("user_input_answer", turnId)) ? "done" : "begun"
      }
      case "exec":
      case "patch": {
        const [kind, request, answer, begin, end] =
          step.type === "exec"
            ? (["exec", "exec_approval_request", "exec_approval", "exec_command_begin", "exec_command_end"] as const)
            : ([
                "patch",
                "apply_patch_approval_request",
                "patch_approval",
                "patch_apply_begin",
                "patch_apply_end"
              ] as const)
        const asked = takeAll(isEvent(request, callId))
        const answered = takeAll(isAnswer(answer, callId))
        const decision =
          answered?.kind === "op" && (answered.op.type === "exec_approval" || answered.op.type === "patch_approval")
            ? answered.op.decision
            : undefined
        if (decision !== undefined) decisions.set(`${kind}:${callId}`, decision)
        const began = takeAll(isEvent(begin, callId))
        if (takeOne(isEvent(end, callId)) || decision === "denied") return "done"
        return asked || decision !== undefined || began ? "begun" : "none"
      }
      case "spawn": {
        if (
          takeOne((mark) => mark.kind === "event" && mark.msg.type === "error" && mark.msg.message === NO_SPAWN_CHILD)
        ) {
          return "done"
        }
        // Each child ends with sub_agent_ended, or an error when it could not start.
        let ended = 0
        let seen = 0
        const isChildMark = (mark: Mark) =>
          mark.kind === "event" &&
          (mark.msg.type === "sub_agent_started" || mark.msg.type === "sub_agent_ended" || mark.msg.type === "error")
        for (let mark = takeOne(isChildMark); mark !== undefined; ) {
          seen++
          if (mark.kind === "event" && mark.msg.type !== "sub_agent_started") ended++
          mark = ended < step.agents.length ? takeOne(isChildMark) : undefined
        }
        return ended >= step.agents.length ? "done" : seen > 0 ? "begun" : "none"
      }
    }
  }

  walk: for (let round = 0; round < repeat; round++) {
    for (let stepIndex = 0; stepIndex < steps.length; stepIndex++) {
      const step = steps[stepIndex]!
      const position = round * steps.length + stepIndex
      const outcome = match(step, callIdOf(index, stepIndex, round, repeat))
      if (outcome === "done") from = position + 1
      else if (outcome === "begun") {
        from = position
        break walk
      } else if (step.type !== "sleep") break walk
    }
  }
  return { from, decisions, lastAgentMessage }
}
