/**
 * The invariants a run checks (issue 13; DESIGN.md), made once per run. `check` reads one top-level
 * agent's outcome as soon as that agent is over and adds to the run's figures (events, cancels,
 * latencies); the run-wide checks read what the run left behind. The violations and figures live as
 * long as the run; `summary` hands them to the report.
 */
import type { Event, Op } from "@deputy/protocol"
import type { Percentiles, StressInvariant, StressViolation } from "../stress.js"
import type { Check, Outcome, RolloutRead } from "./agent.js"
import type { ParentRecord } from "./parent.js"
import { answerKeyOfOp, isApprovingOp, type Recording } from "./record.js"

/** Notes one broken invariant of the agent being checked. */
type Note = (invariant: StressInvariant, detail: string) => void

/** Answers the agent received, by the index (in `Recording.asked`) of the request each answered. */
type Answers = Map<number, Array<{ op: Op; at: number; index: number }>>

/** Every answer the agent received, by answer key, with its index among the ops. */
type AnswersByKey = Map<string, Array<{ op: Op; index: number }>>

/** Latency percentiles of `values`, rounded to 0.01 ms. */
export const percentiles = (values: ReadonlyArray<number>): Percentiles => {
  if (values.length === 0) return { count: 0, p50: 0, p99: 0, max: 0 }
  const sorted = [...values].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
  const round = (n: number) => Math.round(n * 100) / 100
  return { count: sorted.length, p50: round(at(0.5)), p99: round(at(0.99)), max: round(sorted[sorted.length - 1]!) }
}

/** The checks of one run with `seed`, whose threads must end within `boundMs`. */
export const makeChecks = (settings: { readonly seed: number; readonly boundMs: number }) => {
  const violations: Array<StressViolation> = []
  const violate = (invariant: StressInvariant, agent: number, threadId: string, detail: string) =>
    violations.push({ invariant, seed: settings.seed, agent, threadId, detail })
  const cancelToShutdown: Array<number> = []
  const roundTrips: Array<number> = []
  let events = 0
  let cancelled = 0

  /**
   * Checks one top-level agent's run as soon as it is over (its thread shut down, its rollout read), so
   * what it saw, received and wrote is let go at once: a long run holds only the agents still running.
   */
  const check: Check = (o, rollout, parentRecords, onDisk) => {
    const { plan: p, recording: rec } = o
    const note: Note = (invariant, detail) => violate(invariant, p.index, p.threadId, detail)
    events += o.seen.length
    if (o.cancelledAt !== undefined) cancelled++
    if (o.ended === "start_failed") {
      note("thread_ends", `could not start: ${o.startError}`)
      return
    }
    if (o.ended === "timeout") {
      const last = o.seen.at(-1)?.msg.type ?? "nothing"
      const ops = rec.ops.map((s) => s.op.type).join(", ")
      note(
        "thread_ends",
        `not ended and shut down within ${settings.boundMs} ms: stuck in ${o.stage} (last event seen: ${last}; ops the agent received: ${ops || "none"}; cancelled: ${o.cancelledAt !== undefined})`
      )
    }
    const interruptAt = rec.ops.findIndex((s) => s.op.type === "interrupt")
    checkInterruptThenShutdown(o, interruptAt, note, cancelToShutdown)
    const { answers, answeredKeys } = pairAnswers(rec, note)
    checkAnswered(o, answers, interruptAt, parentRecords, onDisk, note, roundTrips)
    checkRuns(o, answeredKeys, interruptAt, note)
    checkFilesWritten(o, answeredKeys, interruptAt, onDisk, note)
    checkCancelReported(o, note)
    checkFailedChildren(o, note)
    checkRollout(o, rollout, note)
  }

  return {
    check,
    /** The run itself failed (a defect of the harness or what it runs). */
    runFailed: (cause: string) => violate("harness", -1, "", `the run itself failed: ${cause}`),
    /** What the manager and the registry still held once every agent had ended. */
    checkLeftInRun: (left: { readonly leftThreads: number; readonly leftPending: ReadonlyArray<string> }) => {
      if (left.leftThreads > 0)
        violate("nothing_outlives_run", -1, "", `${left.leftThreads} threads still live in the manager`)
      for (const requestId of left.leftPending)
        violate("answered_once", -1, "", `request ${requestId} still pending at the end`)
    },
    /** Nothing outlives the run: fibers, child processes, handles and requests (timers, files, pipes). */
    checkLeftovers: (left: {
      readonly fibers: number
      readonly children: ReadonlyArray<string>
      readonly resourceGrowth: ReadonlyArray<string>
    }) => {
      if (left.fibers > 0) violate("nothing_outlives_run", -1, "", `${left.fibers} fibers still running`)
      if (left.children.length > 0)
        violate("nothing_outlives_run", -1, "", `child processes left: ${left.children.join(", ")}`)
      if (left.resourceGrowth.length > 0)
        violate("nothing_outlives_run", -1, "", `active resources grew: ${left.resourceGrowth.join("; ")}`)
    },
    /** The figures and violations so far. */
    summary: () => ({
      events,
      cancelled,
      approvalRoundTripMs: percentiles(roundTrips),
      cancelToShutdownMs: percentiles(cancelToShutdown),
      // Agents are checked as they end: the report lists them in agent order (the run's own first), stably.
      violations: [...violations].sort((a, b) => a.agent - b.agent)
    })
  }
}

/** After a cancel the agent received interrupt, then shutdown; notes how long the shutdown took to arrive. */
const checkInterruptThenShutdown = (
  o: Outcome,
  interruptAt: number,
  note: Note,
  cancelToShutdown: Array<number>
): void => {
  const rec = o.recording
  const shutdownAt = rec.ops.findIndex((s) => s.op.type === "shutdown")
  if (o.cancelledAt === undefined) return
  if (interruptAt < 0) note("interrupt_then_shutdown", "cancelled, but the agent never received interrupt")
  if (shutdownAt < 0) note("interrupt_then_shutdown", "cancelled, but the agent never received shutdown")
  if (interruptAt >= 0 && shutdownAt >= 0 && shutdownAt < interruptAt) {
    note("interrupt_then_shutdown", "the agent received shutdown before interrupt")
  }
  if (shutdownAt >= 0) cancelToShutdown.push(Math.max(0, rec.ops[shutdownAt]!.at - o.cancelledAt))
}

/**
 * One answer reaches the agent per request at most: each answer goes to the oldest request it can
 * answer; an answer to nothing pending is noted.
 */
const pairAnswers = (rec: Recording, note: Note): { answers: Answers; answeredKeys: AnswersByKey } => {
  const answers: Answers = new Map()
  const answeredKeys: AnswersByKey = new Map()
  rec.ops.forEach((s, index) => {
    const key = answerKeyOfOp(s.op)
    if (key === undefined) return
    const keyed = answeredKeys.get(key) ?? []
    keyed.push({ op: s.op, index })
    answeredKeys.set(key, keyed)
    const open = rec.asked.findIndex((a, i) => a.key === key && a.at <= s.at && !answers.has(i))
    if (open < 0) {
      const last = rec.asked.map((a) => a.key).lastIndexOf(key)
      if (last < 0) note("answered_once", `the agent received ${JSON.stringify(s.op)}, an answer to no request`)
      else note("answered_once", `request ${rec.asked[last]!.requestId} was answered more than once`)
      return
    }
    answers.set(open, [{ op: s.op, at: s.at, index }])
  })
  return { answers, answeredKeys }
}

/**
 * A request the parent was asked gets an answer; nothing the parent did not approve, or approved after
 * the request was withdrawn, or after the interrupt, is approved to the agent. Notes each round trip.
 */
const checkAnswered = (
  o: Outcome,
  answers: Answers,
  interruptAt: number,
  parentRecords: ReadonlyMap<string, ParentRecord>,
  onDisk: ReadonlySet<string>,
  note: Note,
  roundTrips: Array<number>
): void => {
  const { plan: p, recording: rec } = o
  rec.asked.forEach((asked, i) => {
    const given = answers.get(i) ?? []
    const parentRecord = parentRecords.get(asked.requestId)
    if (parentRecord !== undefined && given.length === 0) {
      note("answered_once", `request ${asked.requestId} reached the parent but the agent got no answer`)
    }
    if (given[0] !== undefined) roundTrips.push(given[0].at - asked.at)
    // Nothing the parent did not approve, or approved after the request was withdrawn, is approved to the agent.
    for (const answer of given) {
      if (!isApprovingOp(answer.op)) continue
      const approvedInTime =
        parentRecord?.answered?.approving === true &&
        (parentRecord.withdrawnAt === undefined || parentRecord.answered.at <= parentRecord.withdrawnAt)
      if (!approvedInTime) {
        const ran =
          p.codex === undefined
            ? rec.ran.some((run) => run.key === asked.key && run.opsBefore > answer.index)
            : p.codex.tools.some((t) => t.type !== "ask" && `${t.type}:${t.callId}` === asked.key && onDisk.has(t.file))
        const why =
          parentRecord?.withdrawnAt !== undefined
            ? "which the cancel had withdrawn"
            : `which the parent did not approve (${parentRecord?.answered === undefined ? "no answer" : "it refused"})`
        note(
          "no_run_after_cancel",
          `the agent received ${JSON.stringify(answer.op)} for ${asked.requestId}, ${why}${ran ? ", and ran it" : ""}`
        )
      }
      if (interruptAt >= 0 && answer.index > interruptAt) {
        note("no_run_after_cancel", `the agent received an approving answer for ${asked.requestId} after its interrupt`)
      }
    }
  })
}

/** Work the scripted agent started had an approving answer before it, not only after the interrupt. */
const checkRuns = (o: Outcome, answeredKeys: AnswersByKey, interruptAt: number, note: Note): void => {
  // The app-server starts a command's or file change's item before it asks: on Codex the disk says what ran (below).
  if (o.plan.codex !== undefined) return
  for (const run of o.recording.ran) {
    const given = (answeredKeys.get(run.key) ?? []).filter((a) => a.index < run.opsBefore)
    if (!given.some((a) => isApprovingOp(a.op))) note("no_run_after_cancel", `${run.key} ran without an approval`)
    else if (interruptAt >= 0 && interruptAt < run.opsBefore && given.every((a) => a.index > interruptAt)) {
      note("no_run_after_cancel", `${run.key} ran on an approval that came after the interrupt`)
    }
  }
}

/** On Codex, what ran is on the disk: a file an exec or patch wrote had an approving answer before any interrupt. */
const checkFilesWritten = (
  o: Outcome,
  answeredKeys: AnswersByKey,
  interruptAt: number,
  onDisk: ReadonlySet<string>,
  note: Note
): void => {
  for (const tool of o.plan.codex?.tools ?? []) {
    if (tool.type === "ask" || !onDisk.has(tool.file)) continue
    const key = `${tool.type}:${tool.callId}`
    const given = answeredKeys.get(key) ?? []
    const approving = given.filter((a) => isApprovingOp(a.op))
    if (approving.length === 0) {
      note(
        "no_run_after_cancel",
        `${tool.type} ${tool.callId} wrote ${tool.file} without an approval reaching the agent`
      )
    } else if (interruptAt >= 0 && approving.every((a) => a.index > interruptAt)) {
      note(
        "no_run_after_cancel",
        `${tool.type} ${tool.callId} wrote ${tool.file} on an approval that came after the interrupt`
      )
    }
  }
}

/**
 * A cancel's report names every thread of the tree live while it ran: a sub-agent that started after
 * the cancel began (its start past the "tree being cancelled" check) is named, however it ended.
 */
const checkCancelReported = (o: Outcome, note: Note): void => {
  if (o.cancelledAt === undefined || o.cancelReported === undefined) return
  for (const n of o.recording.nested) {
    if (n.at >= o.cancelledAt && !o.cancelReported.has(n.threadId)) {
      note(
        "cancel_reported",
        `sub-agent ${n.threadId} started while its tree was being cancelled, but the cancel's report does not name it`
      )
    }
  }
}

/** A failed child is reported failed by its parent (unless the tree was cancelled under it). */
const checkFailedChildren = (o: Outcome, note: Note): void => {
  if (o.cancelledAt !== undefined || o.ended !== "turn_complete") return
  for (const e of o.seen) {
    if (e.msg.type !== "sub_agent_ended" || e.msg.name === undefined) continue
    const mustFail = o.plan.failingChildren.has(e.msg.name)
    if (mustFail && e.msg.status !== "failed") {
      note("failed_child_reported", `${e.msg.name} failed but its parent reported it ${e.msg.status}`)
    }
  }
}

/**
 * Every rollout parses and holds every event the caller saw, in order (a thread past its bound is
 * reported as such, and its rollout may still be closing).
 */
const checkRollout = (o: Outcome, rollout: RolloutRead | undefined, note: Note): void => {
  if (o.seen.length === 0 || o.ended === "timeout") return
  if (rollout === undefined) {
    note("rollout_complete", `the caller saw ${o.seen.length} events but no rollout exists`)
    return
  }
  if (rollout.error !== undefined) {
    note("rollout_complete", `the rollout does not read: ${rollout.error}`)
    return
  }
  if (rollout.warnings > 0) note("rollout_complete", `${rollout.warnings} rollout lines did not parse`)
  const written = rollout.lines.flatMap((line) => {
    const item = line as { type: string; event?: Event }
    return item.type === "event" && item.event ? [JSON.stringify(item.event)] : []
  })
  let at = 0
  for (const e of o.seen) {
    const wanted = JSON.stringify(e)
    while (at < written.length && written[at] !== wanted) at++
    if (at === written.length) {
      note(
        "rollout_complete",
        `the caller saw ${e.msg.type} (id ${e.id}) but the rollout lacks it, or holds it out of order`
      )
      return
    }
    at++
  }
}
