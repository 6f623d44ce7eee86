/**
 * One top-level agent's run, from its start to its confirmed shutdown, within the run's bound: the
 * backend it is spawned on (recorded, its nested sub-agents noted), its caller (who sends the input,
 * reads, slowly or not, and cancels as planned), then what the checks need (its rollout, the files its
 * tools wrote). Everything one agent's run holds is let go as soon as it is checked.
 */
import { join } from "node:path"
import { CodexAppServer } from "@deputy/codex"
import type { Agent, Backend, RolloutStoreService, Thread, ThreadManagerService } from "@deputy/core"
import type { Event } from "@deputy/protocol"
import { Scripted } from "@deputy/scripted"
import type { FileSystem } from "@effect/platform"
import { Duration, Effect, Either, Option } from "effect"
import type { codexSetup } from "./codex.js"
import type { ParentRecord, StressParent } from "./parent.js"
import { type Plan, sleep } from "./plan.js"
import { noteNested, type Recording, recording } from "./record.js"

/** How one top-level agent's run went, as the checks read it. */
export interface Outcome {
  readonly plan: Plan
  /** Events the caller read, in order. */
  readonly seen: Array<Event>
  readonly recording: Recording
  ended: "turn_complete" | "turn_aborted" | "shutdown" | "timeout" | "start_failed"
  /** Where the run of this agent is (or was when its bound passed). */
  stage: string
  cancelledAt?: number
  /** The threads the cancel's report names (§35), when it returned one. */
  cancelReported?: ReadonlySet<string>
  rolloutPath?: string
  startError?: string
}

/** A rollout as the checks need it. */
export type RolloutRead = { readonly lines: ReadonlyArray<unknown>; readonly warnings: number; readonly error?: string }

/** Checks one agent's outcome: its rollout (when it has one to check), the parent's records, the files on disk. */
export type Check = (
  o: Outcome,
  rollout: RolloutRead | undefined,
  parentRecords: ReadonlyMap<string, ParentRecord>,
  onDisk: ReadonlySet<string>
) => void

/** What every top-level agent's run shares: the run's services, workspace, plans and parent, and its settings. */
export interface AgentRun {
  readonly manager: ThreadManagerService
  readonly store: RolloutStoreService
  readonly fs: FileSystem.FileSystem
  readonly workspace: string
  /** Every top-level agent's plan, by thread id. */
  readonly plans: ReadonlyMap<string, Plan>
  readonly parent: StressParent
  /** On Codex: the mock model and the app-server backends. */
  readonly codex: Effect.Effect.Success<ReturnType<typeof codexSetup>> | undefined
  readonly boundMs: number
  readonly wrapAgent: ((agent: Agent) => Agent) | undefined
  readonly check: Check
}

/** The backend a top-level agent is spawned on: its plan's, recorded into `record`, wrapped by the test's fault if any. */
const backendFor = (run: AgentRun, record: Recording): Backend<Scripted.Requirements> => ({
  name: run.codex === undefined ? Scripted.name : CodexAppServer.name,
  spawn: (spawnOptions) =>
    Effect.gen(function* () {
      const p = run.plans.get(spawnOptions.threadId as string)!
      const agent = yield* (
        run.codex !== undefined && p.codex !== undefined
          ? run.codex.backendFor(p.codex)
          : Scripted.backend(p.script, { cwd: run.workspace })
      ).spawn(noteNested(spawnOptions, record))
      const recorded = recording(agent, record)
      return run.wrapAgent ? run.wrapAgent(recorded) : recorded
    })
})

/** Cancels the agent's thread the first time it runs, noting when, and the threads the cancel's report names. */
const cancelOnce = (run: AgentRun, thread: Thread, outcome: Outcome) =>
  Effect.gen(function* () {
    if (outcome.cancelledAt !== undefined) return
    outcome.cancelledAt = performance.now()
    const stage = outcome.stage
    outcome.stage = `cancel (during ${stage})`
    const report = yield* Effect.option(run.manager.cancel(thread.threadId))
    if (Option.isSome(report)) outcome.cancelReported = new Set(report.value.threads.map((t) => t.threadId))
    outcome.stage = stage
  })

/** The caller reads until the turn ends or the thread shuts down, slowly if planned, cancelling mid-stream as planned. */
const readTurn = (thread: Thread, p: Plan, outcome: Outcome, cancel: Effect.Effect<void>) =>
  Effect.gen(function* () {
    const cancelPlan = Option.getOrUndefined(p.cancel)
    let turnEnded = false
    while (!turnEnded) {
      const next = yield* Effect.option(thread.delegate.take)
      if (Option.isNone(next)) {
        outcome.ended = "shutdown"
        break
      }
      outcome.seen.push(next.value)
      const type = next.value.msg.type
      if (type === "turn_complete" || type === "turn_aborted") {
        outcome.ended = type
        turnEnded = true
      } else if (cancelPlan !== undefined && outcome.seen.length > cancelPlan.afterEvents) {
        if (cancelPlan.moment === "mid_stream") yield* cancel
        if (cancelPlan.moment === "not_reading") {
          // The consumer stops reading; the agent fills the mailbox; then the cancel comes.
          yield* sleep(cancelPlan.waitMs)
          yield* cancel
        }
      }
      if (p.slowConsumerMs > 0) yield* sleep(p.slowConsumerMs)
    }
  })

/** The caller's side of one agent: start, input (or a cancel first), read, a late cancel if planned, remove, shutdown. */
const play = (run: AgentRun, p: Plan, outcome: Outcome) =>
  Effect.gen(function* () {
    const started = yield* Effect.either(
      run.manager.start({
        backend: backendFor(run, outcome.recording),
        threadId: p.threadId,
        cwd: run.workspace,
        delegate: { capacity: p.capacity }
      })
    )
    if (started._tag === "Left") {
      outcome.ended = "start_failed"
      outcome.startError = started.left.message
      return
    }
    const thread: Thread = started.right
    const cancel = cancelOnce(run, thread, outcome)
    const cancelPlan = Option.getOrUndefined(p.cancel)
    const pendingCancel = yield* Effect.makeLatch(false)
    if (cancelPlan?.moment === "approval_pending") {
      run.parent.onRequest(p.threadId, () => Effect.runSync(pendingCancel.open))
      yield* Effect.forkScoped(Effect.zipRight(pendingCancel.await, cancel))
    }
    if (cancelPlan?.moment === "before_first_event") yield* cancel
    else {
      const text = p.codex?.prompt ?? "go"
      yield* Effect.ignore(thread.submit({ type: "user_input", items: [{ type: "text", text }] }))
    }

    outcome.stage = "read"
    yield* readTurn(thread, p, outcome, cancel)
    run.parent.forget(p.threadId)
    // A cancelled thread whose turn ended first is still cancelled as planned (its moment came too late).
    outcome.stage = "late cancel"
    if (cancelPlan !== undefined && outcome.cancelledAt === undefined) yield* cancel
    const path = yield* thread.rolloutPath
    if (Option.isSome(path)) outcome.rolloutPath = path.value
    outcome.stage = "remove"
    yield* Effect.ignore(run.manager.remove(thread.threadId))
    // The rollout's last lines are written by the shutdown: wait for it before reading.
    outcome.stage = "await shutdown"
    yield* thread.delegate.awaitShutdown
    outcome.stage = "done"
    if (outcome.rolloutPath === undefined) {
      const later = yield* thread.rolloutPath
      if (Option.isSome(later)) outcome.rolloutPath = later.value
    }
  })

/** The agent's rollout, read for the checks; none for a thread past its bound (it may still be closing) or one that showed nothing. */
const readRollout = (run: AgentRun, outcome: Outcome) =>
  Effect.gen(function* () {
    const path = outcome.rolloutPath
    if (path === undefined || outcome.ended === "timeout" || outcome.seen.length === 0) return undefined
    return Either.match(yield* Effect.either(run.store.read(path)), {
      onLeft: (error): RolloutRead => ({ lines: [], warnings: 0, error: error.message }),
      onRight: (read): RolloutRead => ({ lines: read.lines, warnings: read.warnings.length })
    })
  })

/** On Codex, which of this agent's execs and patches wrote their file. */
const filesOnDisk = (run: AgentRun, p: Plan) =>
  Effect.gen(function* () {
    const onDisk = new Set<string>()
    for (const tool of p.codex?.tools ?? []) {
      if (
        tool.type !== "ask" &&
        (yield* run.fs.exists(join(run.workspace, tool.file)).pipe(Effect.orElseSucceed(() => false)))
      )
        onDisk.add(tool.file)
    }
    return onDisk
  })

/** One top-level agent, from its start to its confirmed shutdown, all within the bound; checked, then let go. */
export const runAgent = (run: AgentRun, p: Plan) =>
  Effect.gen(function* () {
    const record: Recording = { ops: [], asked: [], ran: [], nested: [] }
    const outcome: Outcome = { plan: p, seen: [], recording: record, ended: "timeout", stage: "start" }
    const inTime = yield* Effect.timeoutOption(Effect.scoped(play(run, p, outcome)), Duration.millis(run.boundMs))
    if (Option.isNone(inTime)) outcome.ended = "timeout"
    run.parent.forget(p.threadId)
    // Checked now, then let go. A thread past its bound is reported as such; its rollout may still be closing.
    const rollout = yield* readRollout(run, outcome)
    const onDisk = yield* filesOnDisk(run, p)
    run.check(outcome, rollout, run.parent.records, onDisk)
    return { threads: (outcome.ended === "start_failed" ? 0 : 1) + record.nested.length }
  })
