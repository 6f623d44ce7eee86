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
 *
 * This module is the public face; the parts live in ./stress/: the seeded PRNG (prng.ts), what each
 * agent plays (plan.ts; Codex's side in codex.ts), the parent (parent.ts), what is recorded at each
 * agent (record.ts), one agent's run (agent.ts), the run of all of them (run.ts), the invariants
 * (checks.ts), what could outlive a run (leaks.ts) and the gauges (gauges.ts).
 */

import type { Agent } from "@deputy/core"
import { NodeContext } from "@effect/platform-node"
import { Effect, Logger, LogLevel, Supervisor } from "effect"
import { DeputyError } from "./errors.js"
import { makeChecks } from "./stress/checks.js"
import { startGauges } from "./stress/gauges.js"
import { baseline, leftovers } from "./stress/leaks.js"
import { type RunSettings, runAll } from "./stress/run.js"

export { planFor } from "./stress/plan.js"

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

/**
 * Runs a stress run and checks its invariants. Never rejects for a broken invariant: each one is in
 * `violations`, with the seed and thread id that reproduce it.
 */
export const stress = async (options: StressOptions = {}): Promise<StressReport> => {
  const settings = settingsOf(options)
  const checks = makeChecks(settings)
  const before = await baseline()
  const gauges = startGauges()
  const supervisor = await Effect.runPromise(Supervisor.track)
  const exit = await Effect.runPromiseExit(
    Effect.scoped(runAll({ ...settings, check: checks.check })).pipe(
      Effect.supervised(supervisor),
      // The report is the output: Codex's config warnings (no bubblewrap, an untrusted project) would drown it.
      Logger.withMinimumLogLevel(LogLevel.Error),
      Effect.provide(NodeContext.layer)
    )
  )
  const gauged = gauges.stop()

  if (exit._tag === "Failure") checks.runFailed(String(exit.cause))
  else checks.checkLeftInRun(exit.value)
  const { threads, approvals } = exit._tag === "Success" ? exit.value : { threads: 0, approvals: 0 }
  const fibersLeft = (await Effect.runPromise(supervisor.value)).filter((f) => f !== undefined)
  const left = await leftovers(before)
  checks.checkLeftovers({ fibers: fibersLeft.length, children: left.children, resourceGrowth: left.resourceGrowth })

  const { seconds } = gauged
  const found = checks.summary()
  return {
    backend: settings.backend,
    seed: settings.seed,
    agents: settings.agents,
    threads,
    cancelled: found.cancelled,
    events: found.events,
    approvals,
    seconds: Math.round(seconds * 1000) / 1000,
    threadsPerSecond: Math.round(threads / seconds),
    eventsPerSecond: Math.round(found.events / seconds),
    approvalRoundTripMs: found.approvalRoundTripMs,
    cancelToShutdownMs: found.cancelToShutdownMs,
    peakRssBytes: gauged.peakRssBytes,
    eventLoopDelayMs: gauged.eventLoopDelayMs,
    violations: found.violations
  }
}

/** Every option with its default (Codex runs fewer, slower agents); an unknown backend is refused. */
const settingsOf = (options: StressOptions): RunSettings => {
  const backend = options.backend ?? "scripted"
  if (!STRESS_BACKENDS.includes(backend)) {
    throw new DeputyError(
      "InvalidInput",
      `backend ${JSON.stringify(backend)}: expected one of ${STRESS_BACKENDS.join(", ")}`
    )
  }
  const onCodex = backend === "codex"
  return {
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
