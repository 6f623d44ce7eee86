/**
 * The stress harness (issue 13): many scripted sub-agents at once, each playing a script drawn from a
 * seeded PRNG — streamed messages, exec / patch / user-input approvals, nested sub-agents under caps —
 * answered by a parent with random delays and decisions (some never answer, some throw), read by
 * consumers some of which are slow, and a share cancelled at random moments. Afterwards it checks the
 * invariants of DESIGN.md and returns a report: figures, and every violated invariant with the seed and
 * thread id that reproduce it. Everything it starts (a temporary home and workspace, a ThreadManager,
 * timers) lives for one call and is released before the report is returned.
 *
 * It runs on the Effect API, not the Promise one: it needs to see the ops each agent receives, in
 * order (a recording wrapper around every top-level agent), and the requests as the parent sees them.
 */

import { join } from "node:path"
import { monitorEventLoopDelay } from "node:perf_hooks"
import { CodexAppServer } from "@deputy/codex"
import {
  type Agent,
  ApprovalRegistry,
  type Backend,
  Parent,
  type ParentRequest,
  type PendingRequest,
  ProcessSupervisor,
  RolloutStore,
  type SpawnOptions,
  type Thread,
  ThreadManager
} from "@deputy/core"
import type { Event, Op, Script, ScriptStep, ThreadId } from "@deputy/protocol"
import { Scripted } from "@deputy/scripted"
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { Duration, Effect, Either, Layer, Logger, LogLevel, Mailbox, Option, Stream, Supervisor } from "effect"
import { DeputyError } from "./errors.js"
import { type CodexPlay, codexPlay, codexSetup } from "./stressCodex.js"

/** How a stress run is set up. Every field has a default. */
export interface StressOptions {
  /**
   * What plays the sub-agents: `scripted` (in process; default), or `codex`: the real Codex app-server
   * (the installed `@openai/codex`) against deputy's mock model on 127.0.0.1, offline.
   */
  readonly backend?: StressBackend
  /** Top-level sub-agents (their nested sub-agents come on top). Default 1,000 scripted, 20 on Codex. */
  readonly agents?: number
  /** Seeds the PRNG: the same seed plays the same scripts, parents, consumers and cancels. Default 1. */
  readonly seed?: number
  /** Share of top-level agents cancelled at a random moment, 0 to 1. Default 0.3. */
  readonly cancelShare?: number
  /** How long a thread may take to end before it breaks the `thread_ends` invariant. Default 30 s (Codex: 60 s). */
  readonly boundMs?: number
  /** Top-level agents running at once (their nested sub-agents come on top); the rest start as others end. Default 50 (Codex: 10). */
  readonly concurrency?: number
  /** Live sub-agents one thread may have at once (the manager's `perParent` cap). Default 2. */
  readonly perParent?: number
  /** Called each time a top-level agent's run ends, with how many have ended and how many there are (a progress line). */
  readonly onProgress?: (ended: number, total: number) => void
  /**
   * Test only: wraps each top-level agent between the delegate and the recording of what the agent
   * receives, so a test can inject a fault (a backend that runs after a cancel, one that drops the
   * interrupt) and watch the harness catch it.
   */
  readonly wrapAgent?: (agent: Agent) => Agent
}

/** What plays the sub-agents of a stress run. */
export type StressBackend = "scripted" | "codex"

/** The backends `stress` runs on. */
export const STRESS_BACKENDS: ReadonlyArray<StressBackend> = ["scripted", "codex"]

/** The invariants a run checks. */
export type StressInvariant =
  | "thread_ends"
  | "answered_once"
  | "no_run_after_cancel"
  | "interrupt_then_shutdown"
  | "failed_child_reported"
  | "nothing_outlives_run"
  | "rollout_complete"
  | "cancel_reported"
  | "harness"

/** One broken invariant, with what reproduces it. */
export interface StressViolation {
  readonly invariant: StressInvariant
  /** The run's seed: `stress({ agents, seed })` plays it again. */
  readonly seed: number
  /** Which top-level agent (0-based) broke it; -1 for the run as a whole. */
  readonly agent: number
  /** The thread that broke it (derived from seed and agent), or "" for the run as a whole. */
  readonly threadId: string
  readonly detail: string
}

/** Percentiles of a latency, in milliseconds. */
export interface Percentiles {
  readonly count: number
  readonly p50: number
  readonly p99: number
  readonly max: number
}

/** What a stress run measured and found. */
export interface StressReport {
  readonly backend: StressBackend
  readonly seed: number
  readonly agents: number
  /** Top-level and nested threads started. */
  readonly threads: number
  readonly cancelled: number
  readonly events: number
  readonly approvals: number
  readonly seconds: number
  readonly threadsPerSecond: number
  readonly eventsPerSecond: number
  /** From the agent emitting a request to the agent receiving its answer. */
  readonly approvalRoundTripMs: Percentiles
  /** From the caller's cancel to the agent receiving `shutdown`. */
  readonly cancelToShutdownMs: Percentiles
  readonly peakRssBytes: number
  /** The event loop's delay while the run went on (perf_hooks.monitorEventLoopDelay). */
  readonly eventLoopDelayMs: { readonly p50: number; readonly p99: number; readonly max: number }
  readonly violations: ReadonlyArray<StressViolation>
}

// ---------------------------------------------------------------------------------------------
// The PRNG: mulberry32, seeded per agent and per request so one agent's draws never shift another's.

const hash = (seed: number, text: string): number => {
  let h = (seed ^ 0x9e3779b9) >>> 0
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x85ebca6b) >>> 0
  return (h ^ (h >>> 16)) >>> 0
}

interface Rng {
  /** In [0, 1). */
  readonly next: () => number
  /** An integer in [lo, hi]. */
  readonly int: (lo: number, hi: number) => number
  readonly pick: <A>(items: ReadonlyArray<A>) => A
}

const rng = (seed: number): Rng => {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1))
  return { next, int, pick: (items) => items[int(0, items.length - 1)]! }
}

const uuidFrom = (r: Rng): ThreadId => {
  const hex = Array.from({ length: 32 }, () => r.int(0, 15).toString(16))
  hex[12] = "4"
  hex[16] = ((r.int(0, 15) & 0x3) | 0x8).toString(16)
  const s = hex.join("")
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}` as ThreadId
}

// ---------------------------------------------------------------------------------------------
// Plans: what each top-level agent plays, and how its consumer and parent behave.

/** When a cancelled agent is cancelled. */
type CancelMoment = "before_first_event" | "mid_stream" | "approval_pending" | "not_reading"

interface Plan {
  readonly index: number
  readonly threadId: ThreadId
  /** What the scripted backend plays (empty on Codex). */
  readonly script: Script
  /** What the mock model plays for this agent on Codex. */
  readonly codex?: CodexPlay
  /** Names of nested sub-agents (at any depth below this one) whose turn must end `failed`. */
  readonly failingChildren: ReadonlySet<string>
  readonly cancel: Option.Option<{
    readonly moment: CancelMoment
    readonly afterEvents: number
    readonly waitMs: number
  }>
  readonly slowConsumerMs: number
  readonly capacity: number
}

const question = { id: "q", question: "which?", options: [{ label: "a" }, { label: "b" }] }

const leafSteps = (r: Rng, prefix: string, allowAsk: boolean): Array<ScriptStep> => {
  const steps: Array<ScriptStep> = []
  const count = r.int(1, 5)
  for (let k = 0; k < count; k++) {
    const kind = r.pick(["message", "message", "reasoning", "exec", "patch", "ask", "sleep", "tokens"] as const)
    switch (kind) {
      case "message":
        steps.push({ type: "message", text: `${prefix} says ${k}`, ...(r.next() < 0.5 ? { deltas: r.int(1, 6) } : {}) })
        break
      case "reasoning":
        steps.push({ type: "reasoning", text: `${prefix} thinks ${k}`, deltas: r.int(1, 3) })
        break
      case "exec":
        // A distinct argument per step: `approved_for_session` on one must not auto-approve the next.
        steps.push({ type: "exec", command: ["true", `${prefix}-${k}`], needsApproval: true })
        break
      case "patch":
        steps.push({ type: "patch", changes: { [`${prefix}-${k}.txt`]: { type: "add", content: `${prefix} ${k}\n` } } })
        break
      case "ask":
        if (allowAsk) steps.push({ type: "ask", questions: [question] })
        else steps.push({ type: "message", text: `${prefix} would ask` })
        break
      case "sleep":
        steps.push({ type: "sleep", ms: r.int(0, 3) })
        break
      case "tokens":
        steps.push({ type: "token_count", input: r.int(1, 100), output: r.int(1, 100) })
        break
    }
  }
  return steps
}

/** A nested sub-agent's script; says whether it (or anything under it) must end `failed`. */
const childScript = (r: Rng, name: string, depth: number, failing: Set<string>): { script: Script; fails: boolean } => {
  const steps = leafSteps(r, name, true)
  let fails = false
  if (r.next() < 0.2) {
    steps.push({ type: "fail", message: `${name} fails on purpose`, fatal: r.next() < 0.5 })
    fails = true
  }
  if (depth < 2 && r.next() < 0.25) {
    const grandchild = `${name}.g`
    const nested = childScript(r, grandchild, depth + 1, failing)
    steps.splice(r.int(0, steps.length), 0, {
      type: "spawn",
      agents: [{ name: grandchild, script: nested.script, input: "go" }]
    })
    // §35: a child one of whose own sub-agents failed ended failed too.
    fails = fails || nested.fails
  }
  if (fails) failing.add(name)
  return { script: { turns: [{ repeat: 1, steps }] }, fails }
}

/** Whether and when an agent's caller cancels, and how fast it reads (drawn in this order: seeds stay reproducible). */
const consumerPlan = (r: ReturnType<typeof rng>, cancelShare: number, hasApproval: boolean) => {
  const cancelled = r.next() < cancelShare
  const moment = r.pick<CancelMoment>(
    hasApproval
      ? ["before_first_event", "mid_stream", "approval_pending", "approval_pending", "not_reading"]
      : ["before_first_event", "mid_stream", "not_reading"]
  )
  const slow = r.next() < 0.2
  return {
    cancel: cancelled ? Option.some({ moment, afterEvents: r.int(0, 4), waitMs: r.int(0, 10) }) : Option.none(),
    slowConsumerMs: slow ? r.int(1, 3) : 0,
    capacity: slow ? r.int(1, 4) : 512
  }
}

/** What top-level agent `index` of a run with `seed` plays (its thread id included): tests reproduce a violation from it. */
export const planFor = (
  seed: number,
  index: number,
  cancelShare: number,
  backend: StressBackend = "scripted"
): Plan => {
  const r = rng(hash(seed, `agent:${index}`))
  const threadId = uuidFrom(r)
  if (backend === "codex") {
    const play = codexPlay(r, seed, index)
    return {
      index,
      threadId,
      script: { turns: [] },
      codex: play,
      failingChildren: new Set(),
      ...consumerPlan(r, cancelShare, play.tools.length > 0)
    }
  }
  const prefix = `a${index}`
  const steps = leafSteps(r, prefix, true)
  const failing = new Set<string>()
  if (r.next() < 0.2) {
    const agents = Array.from({ length: r.int(1, 3) }, (_, c) => {
      const name = `${prefix}.c${c}`
      return { name, script: childScript(r, name, 1, failing).script, input: "go" }
    })
    steps.splice(r.int(0, steps.length), 0, { type: "spawn", agents })
  }
  const hasApproval = steps.some((s) => s.type === "exec" || s.type === "patch" || s.type === "ask")
  return {
    index,
    threadId,
    script: { turns: [{ repeat: 1, steps }] },
    failingChildren: failing,
    ...consumerPlan(r, cancelShare, hasApproval)
  }
}

/** How the parent treats one request: drawn from the seed and the request id alone. */
type ParentMove =
  | {
      readonly type: "decide"
      readonly delayMs: number
      readonly decision: "approved" | "approved_for_session" | "denied" | "abort"
    }
  | { readonly type: "throw"; readonly delayMs: number; readonly registryMs: number }
  | { readonly type: "no_answer"; readonly registryMs: number }
  | { readonly type: "never" }

const parentMove = (seed: number, requestId: string, isTopLevel: boolean, mayHang: boolean): ParentMove => {
  const r = rng(hash(seed, `request:${requestId}`))
  const roll = r.next()
  const delayMs = r.int(0, 8)
  if (mayHang && roll < 0.15) return { type: "never" }
  if (roll < 0.25) return { type: "throw", delayMs, registryMs: r.int(0, 8) }
  if (roll < 0.35) return { type: "no_answer", registryMs: r.int(0, 8) }
  // `abort` ends the asking turn `aborted`: only top-level turns get it, so a nested child that was
  // meant to fail is reported failed, never aborted, unless its tree was cancelled.
  const decision = r.pick(
    isTopLevel
      ? (["approved", "approved", "approved", "approved_for_session", "denied", "denied", "abort"] as const)
      : (["approved", "approved", "approved", "approved_for_session", "denied", "denied"] as const)
  )
  return { type: "decide", delayMs, decision }
}

// ---------------------------------------------------------------------------------------------
// What the harness records while the run goes on.

/** One request as the parent saw it. */
interface ParentRecord {
  readonly request: ParentRequest
  readonly askedAt: number
  /** What the parent's callback gave (undefined: nothing yet, or nothing at all). */
  answered?: { readonly at: number; readonly approving: boolean }
  withdrawnAt?: number
}

/** What one top-level agent received and emitted, as seen right at the agent. */
interface Recording {
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

const answerKeyOfOp = (op: Op): string | undefined =>
  op.type === "exec_approval"
    ? `exec:${op.id}`
    : op.type === "patch_approval"
      ? `patch:${op.id}`
      : op.type === "user_input_answer"
        ? `input:${op.id}`
        : undefined

const isApprovingOp = (op: Op): boolean =>
  op.type === "user_input_answer"
    ? Object.keys(op.response.answers).length > 0
    : (op.type === "exec_approval" || op.type === "patch_approval") &&
      (op.decision === "approved" || op.decision === "approved_for_session")

/** Wraps an agent so that every op it receives and every request and run it emits is recorded, in order. */
const recording = (agent: Agent, record: Recording) =>
  Effect.gen(function* () {
    const events = yield* Mailbox.make<Event>({ capacity: 64 })
    const pump = Effect.gen(function* () {
      while (true) {
        const [chunk, done] = yield* agent.events.takeAll
        const at = performance.now()
        for (const event of chunk) {
          const msg = event.msg
          if (msg.type === "exec_approval_request") {
            record.asked.push({
              key: `exec:${msg.approvalId ?? msg.callId}`,
              at,
              requestId: `${agent.threadId}:${msg.approvalId ?? msg.callId}`
            })
          } else if (msg.type === "apply_patch_approval_request") {
            record.asked.push({ key: `patch:${msg.callId}`, at, requestId: `${agent.threadId}:${msg.callId}` })
          } else if (msg.type === "request_user_input") {
            record.asked.push({ key: `input:${event.id}`, at, requestId: `${agent.threadId}:${msg.callId}` })
          } else if (msg.type === "exec_command_begin") {
            record.ran.push({ key: `exec:${msg.callId}`, at, opsBefore: record.ops.length })
          } else if (msg.type === "patch_apply_begin") {
            record.ran.push({ key: `patch:${msg.callId}`, at, opsBefore: record.ops.length })
          }
        }
        yield* events.offerAll(chunk)
        if (done) return yield* events.end
      }
    })
    yield* Effect.forkScoped(pump)
    return {
      ...agent,
      events,
      submit: (submission) =>
        Effect.suspend(() => {
          record.ops.push({ op: submission.op, id: submission.id, at: performance.now() })
          return agent.submit(submission)
        })
    } satisfies Agent
  })

const percentiles = (values: ReadonlyArray<number>): Percentiles => {
  if (values.length === 0) return { count: 0, p50: 0, p99: 0, max: 0 }
  const sorted = [...values].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
  const round = (n: number) => Math.round(n * 100) / 100
  return { count: sorted.length, p50: round(at(0.5)), p99: round(at(0.99)), max: round(sorted[sorted.length - 1]!) }
}

/**
 * Pids of this process's live children and of its process supervisor's (which spawns the scripted
 * `exec` commands), Linux /proc; empty elsewhere.
 */
const childPids = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  const pids = new Set<string>()
  const supervisor = ProcessSupervisor.processId()
  const entries = yield* fs.readDirectory("/proc").pipe(Effect.orElseSucceed(() => [] as Array<string>))
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue
    const stat = yield* fs.readFileString(`/proc/${entry}/stat`).pipe(Effect.orElseSucceed(() => ""))
    // Field 2 (the name, in parentheses) may hold spaces: split after it. Then state, parent pid.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // deputy's process supervisor lives as long as this process: not a leftover; its children are.
    const parent = Number(fields[1])
    if ((parent === process.pid || parent === supervisor) && fields[0] !== "Z" && Number(entry) !== supervisor)
      pids.add(entry)
  }
  return pids
})

/** Active handles and requests by type, the harness's own measuring excluded. */
const activeResources = (): Map<string, number> => {
  const counts = new Map<string, number>()
  for (const type of process.getActiveResourcesInfo()) counts.set(type, (counts.get(type) ?? 0) + 1)
  return counts
}

const grown = (before: Map<string, number>, after: Map<string, number>) =>
  [...after]
    .filter(([type, n]) => n > (before.get(type) ?? 0))
    .map(([type, n]) => `${type} ${before.get(type) ?? 0} → ${n}`)

// ---------------------------------------------------------------------------------------------
// The run.

interface Outcome {
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

const sleep = (ms: number) => (ms <= 0 ? Effect.yieldNow() : Effect.sleep(Duration.millis(ms)))

/** A rollout as the checks need it. */
type RolloutRead = { readonly lines: ReadonlyArray<unknown>; readonly warnings: number; readonly error?: string }

/** Checks one agent's outcome: its rollout (when it has one to check), the parent's records, the files on disk. */
type Check = (
  o: Outcome,
  rollout: RolloutRead | undefined,
  parentRecords: ReadonlyMap<string, ParentRecord>,
  onDisk: ReadonlySet<string>
) => void

const runAll = (
  options: Required<Omit<StressOptions, "wrapAgent" | "onProgress">> &
    Pick<StressOptions, "wrapAgent" | "onProgress"> & { readonly check: Check }
) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const workspace = yield* fs.makeTempDirectoryScoped({ prefix: "deputy-stress-work-" })
    const plans = Array.from({ length: options.agents }, (_, i) =>
      planFor(options.seed, i, options.cancelShare, options.backend)
    )
    const byThread = new Map(plans.map((p) => [p.threadId as string, p]))
    const parentRecords = new Map<string, ParentRecord>()
    /** Top-level threads whose first request makes the harness cancel them (moment `approval_pending`). */
    const onFirstRequest = new Map<string, () => void>()

    const move = (request: ParentRequest) => {
      const top = request.path[0] as string
      const agentPlan = byThread.get(top)
      // Only a top-level thread cancelled once it asks may be left hanging; a nested one would hold its tree.
      const mayHang =
        request.path.length === 1 &&
        agentPlan !== undefined &&
        Option.exists(agentPlan.cancel, (c) => c.moment === "approval_pending")
      return parentMove(options.seed, request.requestId, request.path.length === 1, mayHang)
    }

    // Made by whichever comes first: the callback, or the person answering at the registry (the registry
    // lists a request before its callback runs).
    const recordOf = (request: ParentRequest): ParentRecord => {
      const known = parentRecords.get(request.requestId)
      if (known !== undefined) return known
      const record: ParentRecord = { request, askedAt: performance.now() }
      parentRecords.set(request.requestId, record)
      return record
    }

    const answerFor = (request: ParentRequest, approving: boolean): unknown =>
      request.kind === "user_input"
        ? { answers: approving ? { q: { answers: ["a"] } } : {} }
        : approving
          ? "approved"
          : "denied"

    // The parent: plain callbacks (as a program would give), behind the root ApprovalRegistry.
    const callback = async (request: ParentRequest, signal: AbortSignal): Promise<unknown> => {
      const record = recordOf(request)
      onFirstRequest.get(request.threadId)?.()
      const m = move(request)
      if (m.type === "never") return new Promise(() => {}) // answered by nobody: only the cancel ends it
      if (m.type === "no_answer") return undefined // left pending in the registry
      await new Promise((resolve) => setTimeout(resolve, m.delayMs))
      if (signal.aborted) return undefined
      if (m.type === "throw") throw new Error(`parent of ${request.requestId} fails on purpose`)
      const value =
        request.kind === "user_input"
          ? answerFor(request, m.decision !== "denied" && m.decision !== "abort")
          : m.decision
      record.answered = {
        at: performance.now(),
        approving:
          request.kind === "user_input"
            ? m.decision !== "denied" && m.decision !== "abort"
            : m.decision.startsWith("approved")
      }
      return value
    }

    const registryLayer = ApprovalRegistry.layer.pipe(
      Layer.provide(
        Parent.layerCallbacks({
          execApproval: callback,
          patchApproval: callback,
          userInput: callback,
          withdrawn: (requestId) => {
            const record = parentRecords.get(requestId)
            if (record !== undefined && record.withdrawnAt === undefined) record.withdrawnAt = performance.now()
          }
        })
      )
    )
    const home = yield* fs.makeTempDirectoryScoped({ prefix: "deputy-stress-home-" })
    const layer = ThreadManager.layerWith({ limits: { perParent: options.perParent } }).pipe(
      Layer.provideMerge(RolloutStore.layer({ home })),
      Layer.provideMerge(registryLayer)
    )

    // On Codex: the mock model, Codex's home and the shared app-server, for the whole run.
    const codex =
      options.backend === "codex"
        ? yield* codexSetup(
            plans.flatMap((p) => (p.codex === undefined ? [] : [p.codex])),
            workspace,
            yield* fs.makeTempDirectoryScoped({ prefix: "deputy-stress-codex-home-" })
          )
        : undefined

    return yield* Effect.gen(function* () {
      const manager = yield* ThreadManager
      const registry = yield* ApprovalRegistry
      const store = yield* RolloutStore

      // A person at the registry answers what the callbacks left pending (thrown, or no answer), unless
      // the request's move says nobody ever will.
      const handled = new Set<string>()
      const answerLater = (p: PendingRequest) => {
        handled.add(p.requestId)
        const m = move(p.request)
        if (m.type !== "throw" && m.type !== "no_answer") return Effect.void
        const approving = (m.registryMs & 1) === 0
        const answer =
          p.kind === "user_input"
            ? registry.respond(p.requestId, { answers: approving ? { q: { answers: ["b"] } } : {} })
            : registry.decide(p.requestId, approving ? "approved" : "denied")
        const note = Effect.sync(() => {
          const record = recordOf(p.request)
          if (record.withdrawnAt === undefined) record.answered = { at: performance.now(), approving }
        })
        return Effect.forkScoped(
          sleep(m.registryMs).pipe(Effect.zipRight(note), Effect.zipRight(Effect.ignore(answer)))
        )
      }
      yield* Effect.forkScoped(
        Stream.runForEach(registry.changes, (pending) =>
          Effect.forEach(
            pending.filter((p) => !handled.has(p.requestId)),
            answerLater,
            { discard: true }
          )
        )
      )

      /** Spawn options whose nested sub-agents, at any depth, are noted in `record` as they start. */
      const noteNested = (spawnOptions: SpawnOptions, record: Recording): SpawnOptions => {
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

      const backendFor = (record: Recording): Backend<Scripted.Requirements> => {
        return {
          name: codex === undefined ? Scripted.name : CodexAppServer.name,
          spawn: (spawnOptions) =>
            Effect.gen(function* () {
              const p = byThread.get(spawnOptions.threadId as string)!
              const agent = yield* (
                codex !== undefined && p.codex !== undefined
                  ? codex.backendFor(p.codex)
                  : Scripted.backend(p.script, { cwd: workspace })
              ).spawn(noteNested(spawnOptions, record))
              const recorded = yield* recording(agent, record)
              return options.wrapAgent ? options.wrapAgent(recorded) : recorded
            })
        }
      }

      /** One top-level agent, from its start to its confirmed shutdown, all within the bound. */
      const runOne = (p: Plan) =>
        Effect.gen(function* () {
          const record: Recording = { ops: [], asked: [], ran: [], nested: [] }
          const outcome: Outcome = { plan: p, seen: [], recording: record, ended: "timeout", stage: "start" }
          const body = Effect.gen(function* () {
            const started = yield* Effect.either(
              manager.start({
                backend: backendFor(record),
                threadId: p.threadId,
                cwd: workspace,
                delegate: { capacity: p.capacity }
              })
            )
            if (started._tag === "Left") {
              outcome.ended = "start_failed"
              outcome.startError = started.left.message
              return
            }
            const thread: Thread = started.right
            const cancel = Effect.gen(function* () {
              if (outcome.cancelledAt !== undefined) return
              outcome.cancelledAt = performance.now()
              const stage = outcome.stage
              outcome.stage = `cancel (during ${stage})`
              const report = yield* Effect.option(manager.cancel(thread.threadId))
              if (Option.isSome(report)) outcome.cancelReported = new Set(report.value.threads.map((t) => t.threadId))
              outcome.stage = stage
            })
            const cancelPlan = Option.getOrUndefined(p.cancel)
            const pendingCancel = yield* Effect.makeLatch(false)
            if (cancelPlan?.moment === "approval_pending") {
              onFirstRequest.set(p.threadId, () => Effect.runSync(pendingCancel.open))
            }
            if (cancelPlan?.moment === "approval_pending") {
              yield* Effect.forkScoped(Effect.zipRight(pendingCancel.await, cancel))
            }
            if (cancelPlan?.moment === "before_first_event") yield* cancel
            else {
              const text = p.codex?.prompt ?? "go"
              yield* Effect.ignore(thread.submit({ type: "user_input", items: [{ type: "text", text }] }))
            }

            outcome.stage = "read"
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
            onFirstRequest.delete(p.threadId)
            // A cancelled thread whose turn ended first is still cancelled as planned (its moment came too late).
            outcome.stage = "late cancel"
            if (cancelPlan !== undefined && outcome.cancelledAt === undefined) yield* cancel
            const path = yield* thread.rolloutPath
            if (Option.isSome(path)) outcome.rolloutPath = path.value
            outcome.stage = "remove"
            yield* Effect.ignore(manager.remove(thread.threadId))
            // The rollout's last lines are written by the shutdown: wait for it before reading.
            outcome.stage = "await shutdown"
            yield* thread.delegate.awaitShutdown
            outcome.stage = "done"
            if (outcome.rolloutPath === undefined) {
              const later = yield* thread.rolloutPath
              if (Option.isSome(later)) outcome.rolloutPath = later.value
            }
          })
          const inTime = yield* Effect.timeoutOption(Effect.scoped(body), Duration.millis(options.boundMs))
          if (Option.isNone(inTime)) outcome.ended = "timeout"
          onFirstRequest.delete(p.threadId)
          // Checked now, then let go. A thread past its bound is reported as such; its rollout may still be closing.
          const path = outcome.rolloutPath
          const rollout: RolloutRead | undefined =
            path === undefined || outcome.ended === "timeout" || outcome.seen.length === 0
              ? undefined
              : Either.match(yield* Effect.either(store.read(path)), {
                  onLeft: (error) => ({ lines: [], warnings: 0, error: error.message }),
                  onRight: (read) => ({ lines: read.lines, warnings: read.warnings.length })
                })
          // On Codex, which of this agent's execs and patches wrote their file.
          const onDisk = new Set<string>()
          for (const tool of p.codex?.tools ?? []) {
            if (
              tool.type !== "ask" &&
              (yield* fs.exists(join(workspace, tool.file)).pipe(Effect.orElseSucceed(() => false)))
            )
              onDisk.add(tool.file)
          }
          options.check(outcome, rollout, parentRecords, onDisk)
          return { threads: (outcome.ended === "start_failed" ? 0 : 1) + record.nested.length }
        })

      let ended = 0
      const progress = (_: unknown) =>
        Effect.sync(() => {
          ended++
          options.onProgress?.(ended, plans.length)
        })
      // Threads started: the top-level ones and every nested one the recordings saw start (no walk of the store).
      let threads = 0
      yield* Effect.forEach(
        plans,
        (p) =>
          Effect.flatMap(runOne(p), (o) => {
            threads += o.threads
            return progress(o)
          }),
        { concurrency: options.concurrency, discard: true }
      )
      const leftThreads = (yield* manager.list).length
      const leftPending = (yield* registry.pending).map((p) => p.requestId)
      return { leftThreads, leftPending, threads, approvals: parentRecords.size }
    }).pipe(Effect.provide(layer))
  })

/**
 * Runs a stress run and checks its invariants. Never rejects for a broken invariant: each one is in
 * `violations`, with the seed and thread id that reproduce it.
 */
export const stress = async (options: StressOptions = {}): Promise<StressReport> => {
  const backend = options.backend ?? "scripted"
  if (!STRESS_BACKENDS.includes(backend)) {
    throw new DeputyError(
      "InvalidInput",
      `backend ${JSON.stringify(backend)}: expected one of ${STRESS_BACKENDS.join(", ")}`
    )
  }
  const onCodex = backend === "codex"
  const settings = {
    backend,
    agents: options.agents ?? (onCodex ? 20 : 1000),
    seed: options.seed ?? 1,
    cancelShare: options.cancelShare ?? 0.3,
    boundMs: options.boundMs ?? (onCodex ? 60_000 : 30_000),
    perParent: options.perParent ?? 2,
    concurrency: options.concurrency ?? (onCodex ? 10 : 50),
    ...(options.wrapAgent === undefined ? {} : { wrapAgent: options.wrapAgent }),
    ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress })
  }
  const seed = settings.seed
  const violations: Array<StressViolation> = []
  const violate = (invariant: StressInvariant, agent: number, threadId: string, detail: string) =>
    violations.push({ invariant, seed, agent, threadId, detail })

  const cancelToShutdown: Array<number> = []
  const roundTrips: Array<number> = []
  let events = 0
  let cancelled = 0

  /**
   * Checks one top-level agent's run as soon as it is over (its thread shut down, its rollout read), so
   * what it saw, received and wrote is let go at once: a long run holds only the agents still running.
   */
  const checkOutcome: Check = (o, rollout, parentRecords, onDisk) => {
    const { plan: p, recording: rec } = o
    const who = (invariant: StressInvariant, detail: string) => violate(invariant, p.index, p.threadId, detail)
    events += o.seen.length
    if (o.cancelledAt !== undefined) cancelled++
    if (o.ended === "start_failed") {
      who("thread_ends", `could not start: ${o.startError}`)
      return
    }
    if (o.ended === "timeout") {
      const last = o.seen.at(-1)?.msg.type ?? "nothing"
      const ops = rec.ops.map((s) => s.op.type).join(", ")
      who(
        "thread_ends",
        `not ended and shut down within ${settings.boundMs} ms: stuck in ${o.stage} (last event seen: ${last}; ops the agent received: ${ops || "none"}; cancelled: ${o.cancelledAt !== undefined})`
      )
    }

    // After a cancel the agent received interrupt, then shutdown.
    const interruptAt = rec.ops.findIndex((s) => s.op.type === "interrupt")
    const shutdownAt = rec.ops.findIndex((s) => s.op.type === "shutdown")
    if (o.cancelledAt !== undefined) {
      if (interruptAt < 0) who("interrupt_then_shutdown", "cancelled, but the agent never received interrupt")
      if (shutdownAt < 0) who("interrupt_then_shutdown", "cancelled, but the agent never received shutdown")
      if (interruptAt >= 0 && shutdownAt >= 0 && shutdownAt < interruptAt) {
        who("interrupt_then_shutdown", "the agent received shutdown before interrupt")
      }
      if (shutdownAt >= 0) cancelToShutdown.push(Math.max(0, rec.ops[shutdownAt]!.at - o.cancelledAt))
    }

    // Every request: one answer reaches the agent at most (each answer goes to the oldest request it can
    // answer); a request the parent was asked gets one. Answers to nothing pending are counted too.
    const answers = new Map<number, Array<{ op: Op; at: number; index: number }>>()
    const answeredKeys = new Map<string, Array<{ op: Op; index: number }>>()
    rec.ops.forEach((s, index) => {
      const key = answerKeyOfOp(s.op)
      if (key === undefined) return
      const keyed = answeredKeys.get(key) ?? []
      keyed.push({ op: s.op, index })
      answeredKeys.set(key, keyed)
      const open = rec.asked.findIndex((a, i) => a.key === key && a.at <= s.at && !answers.has(i))
      if (open < 0) {
        const last = rec.asked.map((a) => a.key).lastIndexOf(key)
        if (last < 0) who("answered_once", `the agent received ${JSON.stringify(s.op)}, an answer to no request`)
        else who("answered_once", `request ${rec.asked[last]!.requestId} was answered more than once`)
        return
      }
      answers.set(open, [{ op: s.op, at: s.at, index }])
    })
    rec.asked.forEach((asked, i) => {
      const given = answers.get(i) ?? []
      const parentRecord = parentRecords.get(asked.requestId)
      if (parentRecord !== undefined && given.length === 0) {
        who("answered_once", `request ${asked.requestId} reached the parent but the agent got no answer`)
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
              : p.codex.tools.some(
                  (t) => t.type !== "ask" && `${t.type}:${t.callId}` === asked.key && onDisk.has(t.file)
                )
          const why =
            parentRecord?.withdrawnAt !== undefined
              ? "which the cancel had withdrawn"
              : `which the parent did not approve (${parentRecord?.answered === undefined ? "no answer" : "it refused"})`
          who(
            "no_run_after_cancel",
            `the agent received ${JSON.stringify(answer.op)} for ${asked.requestId}, ${why}${ran ? ", and ran it" : ""}`
          )
        }
        if (interruptAt >= 0 && answer.index > interruptAt) {
          who(
            "no_run_after_cancel",
            `the agent received an approving answer for ${asked.requestId} after its interrupt`
          )
        }
      }
    })
    for (const run of rec.ran) {
      // The app-server starts a command's or file change's item before it asks: on Codex the disk says what ran (below).
      if (p.codex !== undefined) continue
      const given = (answeredKeys.get(run.key) ?? []).filter((a) => a.index < run.opsBefore)
      if (!given.some((a) => isApprovingOp(a.op))) who("no_run_after_cancel", `${run.key} ran without an approval`)
      else if (interruptAt >= 0 && interruptAt < run.opsBefore && given.every((a) => a.index > interruptAt)) {
        who("no_run_after_cancel", `${run.key} ran on an approval that came after the interrupt`)
      }
    }

    // On Codex, what ran is on the disk: a file an exec or patch wrote had an approving answer before any interrupt.
    for (const tool of p.codex?.tools ?? []) {
      if (tool.type === "ask" || !onDisk.has(tool.file)) continue
      const key = `${tool.type}:${tool.callId}`
      const given = answeredKeys.get(key) ?? []
      const approving = given.filter((a) => isApprovingOp(a.op))
      if (approving.length === 0) {
        who(
          "no_run_after_cancel",
          `${tool.type} ${tool.callId} wrote ${tool.file} without an approval reaching the agent`
        )
      } else if (interruptAt >= 0 && approving.every((a) => a.index > interruptAt)) {
        who(
          "no_run_after_cancel",
          `${tool.type} ${tool.callId} wrote ${tool.file} on an approval that came after the interrupt`
        )
      }
    }

    // A cancel's report names every thread of the tree live while it ran: a sub-agent that started after
    // the cancel began (its start past the "tree being cancelled" check) is named, however it ended.
    if (o.cancelledAt !== undefined && o.cancelReported !== undefined) {
      for (const n of rec.nested) {
        if (n.at >= o.cancelledAt && !o.cancelReported.has(n.threadId)) {
          who(
            "cancel_reported",
            `sub-agent ${n.threadId} started while its tree was being cancelled, but the cancel's report does not name it`
          )
        }
      }
    }

    // A failed child is reported failed by its parent (unless the tree was cancelled under it).
    if (o.cancelledAt === undefined && o.ended === "turn_complete") {
      for (const e of o.seen) {
        if (e.msg.type !== "sub_agent_ended" || e.msg.name === undefined) continue
        const mustFail = p.failingChildren.has(e.msg.name)
        if (mustFail && e.msg.status !== "failed") {
          who("failed_child_reported", `${e.msg.name} failed but its parent reported it ${e.msg.status}`)
        }
      }
    }

    // Every rollout parses and holds every event the caller saw, in order (a thread past its bound is
    // reported above, and its rollout may still be closing).
    if (o.seen.length > 0 && o.ended !== "timeout") {
      if (rollout === undefined) who("rollout_complete", `the caller saw ${o.seen.length} events but no rollout exists`)
      else if (rollout.error !== undefined) who("rollout_complete", `the rollout does not read: ${rollout.error}`)
      else {
        if (rollout.warnings > 0) who("rollout_complete", `${rollout.warnings} rollout lines did not parse`)
        const written = rollout.lines.flatMap((line) => {
          const item = line as { type: string; event?: Event }
          return item.type === "event" && item.event ? [JSON.stringify(item.event)] : []
        })
        let at = 0
        for (const e of o.seen) {
          const wanted = JSON.stringify(e)
          while (at < written.length && written[at] !== wanted) at++
          if (at === written.length) {
            who(
              "rollout_complete",
              `the caller saw ${e.msg.type} (id ${e.id}) but the rollout lacks it, or holds it out of order`
            )
            break
          }
          at++
        }
      }
    }
  }

  const childrenBefore = await Effect.runPromise(childPids.pipe(Effect.provide(NodeContext.layer)))
  const resourcesBefore = activeResources()
  const delay = monitorEventLoopDelay({ resolution: 10 })
  delay.enable()
  let peakRss = process.memoryUsage.rss()
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage.rss())
  }, 100)
  const startedAt = performance.now()
  const supervisor = await Effect.runPromise(Supervisor.track)
  const exit = await Effect.runPromiseExit(
    Effect.scoped(runAll({ ...settings, check: checkOutcome })).pipe(
      Effect.supervised(supervisor),
      // The report is the output: Codex's config warnings (no bubblewrap, an untrusted project) would drown it.
      Logger.withMinimumLogLevel(LogLevel.Error),
      Effect.provide(NodeContext.layer)
    )
  )
  const seconds = (performance.now() - startedAt) / 1000
  clearInterval(sampler)
  delay.disable()
  peakRss = Math.max(peakRss, process.memoryUsage.rss())

  let threads = 0
  let approvals = 0

  if (exit._tag === "Failure") {
    violate("harness", -1, "", `the run itself failed: ${String(exit.cause)}`)
  } else {
    const { leftThreads, leftPending } = exit.value
    threads = exit.value.threads
    approvals = exit.value.approvals
    if (leftThreads > 0) violate("nothing_outlives_run", -1, "", `${leftThreads} threads still live in the manager`)
    for (const requestId of leftPending)
      violate("answered_once", -1, "", `request ${requestId} still pending at the end`)
  }

  // Nothing outlives the run: fibers, handles and requests (timers, files, pipes), child processes.
  const fibersLeft = (await Effect.runPromise(supervisor.value)).filter((f) => f !== undefined)
  if (fibersLeft.length > 0) violate("nothing_outlives_run", -1, "", `${fibersLeft.length} fibers still running`)
  let resourceGrowth = grown(resourcesBefore, activeResources())
  let childrenLeft: Array<string> = []
  // Closing handles and reaping children finishes on later turns of the loop: give them a short bound.
  for (let attempt = 0; attempt < 40; attempt++) {
    resourceGrowth = grown(resourcesBefore, activeResources())
    const now = await Effect.runPromise(childPids.pipe(Effect.provide(NodeContext.layer)))
    childrenLeft = [...now].filter((pid) => !childrenBefore.has(pid))
    if (childrenLeft.length === 0 && resourceGrowth.length === 0) break
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  if (childrenLeft.length > 0)
    violate("nothing_outlives_run", -1, "", `child processes left: ${childrenLeft.join(", ")}`)
  if (resourceGrowth.length > 0)
    violate("nothing_outlives_run", -1, "", `active resources grew: ${resourceGrowth.join("; ")}`)

  const ms = (ns: number) => Math.round((ns / 1e6) * 100) / 100
  return {
    backend,
    seed,
    agents: settings.agents,
    threads,
    cancelled,
    events,
    approvals,
    seconds: Math.round(seconds * 1000) / 1000,
    threadsPerSecond: Math.round(threads / seconds),
    eventsPerSecond: Math.round(events / seconds),
    approvalRoundTripMs: percentiles(roundTrips),
    cancelToShutdownMs: percentiles(cancelToShutdown),
    peakRssBytes: peakRss,
    eventLoopDelayMs: { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), max: ms(delay.max) },
    // Agents are checked as they end: the report lists them in agent order (the run's own first), stably.
    violations: [...violations].sort((a, b) => a.agent - b.agent)
  }
}

/** The report as a few lines of text, for a terminal (the CLI's `deputy stress` without `--json`). */
export const formatStressReport = (report: StressReport): string => {
  const lines = [
    `deputy stress: ${report.agents} agents on ${report.backend} (${report.threads} threads started, nested ones included), seed ${report.seed}`,
    `${report.seconds} s: ${report.threadsPerSecond} threads/s, ${report.eventsPerSecond} events/s; ${report.cancelled} cancelled, ${report.approvals} approvals`,
    `approval round trip p50 ${report.approvalRoundTripMs.p50} ms, p99 ${report.approvalRoundTripMs.p99} ms`,
    `cancel → shutdown p50 ${report.cancelToShutdownMs.p50} ms, p99 ${report.cancelToShutdownMs.p99} ms`,
    `peak RSS ${Math.round(report.peakRssBytes / 1024 / 1024)} MiB; event-loop delay p50 ${report.eventLoopDelayMs.p50} ms, p99 ${report.eventLoopDelayMs.p99} ms, max ${report.eventLoopDelayMs.max} ms`,
    report.violations.length === 0 ? "no invariant broken" : `${report.violations.length} invariants broken:`,
    ...report.violations.map(
      (v) => `  ${v.invariant} seed ${v.seed} agent ${v.agent} thread ${v.threadId || "(run)"}: ${v.detail}`
    )
  ]
  return lines.join("\n")
}
