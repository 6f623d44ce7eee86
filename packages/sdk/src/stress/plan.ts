/**
 * Plans: what each top-level agent of a run plays (a script, or a chain of mock-model responses on
 * Codex, with nested sub-agents some of which must fail), and how its caller reads and cancels it. A
 * plan is drawn from the run's seed and the agent's index alone, so any agent of any run can be drawn
 * again on its own: the draws below are taken in a fixed order, and reordering them changes every run.
 */
import type { Script, ScriptStep, ThreadId } from "@deputy/protocol"
import { Duration, Effect, Option } from "effect"
import type { StressBackend } from "../stress.js"
import { type CodexPlay, codexPlay } from "./codex.js"
import { hash, type Rng, rng, uuidFrom } from "./prng.js"

/** When a cancelled agent is cancelled. */
export type CancelMoment = "before_first_event" | "mid_stream" | "approval_pending" | "not_reading"

/** What one top-level agent plays, and how its caller reads and cancels it. */
export interface Plan {
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

/** Plays a drawn delay: 0 ms yields to other fibers rather than setting a timer. */
export const sleep = (ms: number) => (ms <= 0 ? Effect.yieldNow() : Effect.sleep(Duration.millis(ms)))

const question = { id: "q", question: "which?", options: [{ label: "a" }, { label: "b" }] }

/** One to five plain steps (messages, reasoning, approvals, sleeps, token counts) named after `prefix`. */
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
const consumerPlan = (r: Rng, cancelShare: number, hasApproval: boolean) => {
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
