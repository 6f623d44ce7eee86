/**
 * Runs a pipeline: each step in its own Deputy (its policy, its thread), started once every step it
 * needs has succeeded and a concurrency slot is free. A step that fails, times out or is cancelled
 * cancels the steps that need it (transitively) and nothing else. Ctrl-C cancels every running step
 * (Interrupt, Shutdown, drain) and the ones not started.
 */
import { Deputy, type ThreadEvent } from "@deputy/sdk"
import { type ApprovalLine, type Ask, approver, describe } from "../approvals.js"
import { makeBackend } from "../backends.js"
import { CliError, ExitCode, oneLine } from "../errors.js"
import { runTurn } from "../session.js"
import { type Pipeline, type Step, substitute } from "./Pipeline.js"

/** Where a step is. */
export type StepState = "waiting" | "running" | "done" | "failed" | "timed_out" | "cancelled"

/** A step's state, as the views show it. */
export interface StepStatus {
  readonly name: string
  state: StepState
  /** The step is optional: its failure does not fail the pipeline. */
  readonly optional?: boolean
  startedAt?: number
  endedAt?: number
  /** What the step waits for a person to approve, while it does. */
  approval?: string | undefined
  /** The prompt it was given, its needs' outputs filled in. */
  prompt?: string
  /** Its agent's last message (done). */
  output?: string
  /** Why it did not succeed. */
  reason?: string
}

/** What a pipeline run tells its view. */
export interface PipelineObserver {
  readonly changed: (status: StepStatus) => void
  readonly event: (step: string, event: ThreadEvent) => void
  readonly approval: (step: string, line: ApprovalLine) => void
  readonly warning: (message: string) => void
}

/** Whether a step has ended. */
const ended = (state: StepState) =>
  state === "done" || state === "failed" || state === "timed_out" || state === "cancelled"

/** Steps sorted so each comes after what it needs (the file was checked for cycles). */
const topological = (steps: ReadonlyArray<Step>): ReadonlyArray<Step> => {
  const byName = new Map(steps.map((s) => [s.name, s]))
  const out: Array<Step> = []
  const seen = new Set<string>()
  const visit = (step: Step) => {
    if (seen.has(step.name)) return
    seen.add(step.name)
    for (const need of step.needs) visit(byName.get(need) as Step)
    out.push(step)
  }
  for (const step of steps) visit(step)
  return out
}

/** Runs `pipeline`; resolves to each step's final status, in file order. */
export const runPipeline = async (
  pipeline: Pipeline,
  options: {
    readonly observer: PipelineObserver
    readonly signal: AbortSignal
    readonly ask: Ask | undefined
  }
): Promise<ReadonlyArray<StepStatus>> => {
  const { observer, signal } = options
  const statuses = new Map<string, StepStatus>(
    pipeline.steps.map((s) => [s.name, { name: s.name, state: "waiting" as StepState, optional: s.optional }])
  )
  const update = (name: string, change: Partial<StepStatus>) => {
    const status = statuses.get(name) as StepStatus
    Object.assign(status, change)
    observer.changed(status)
  }
  const outputs = new Map<string, string>()

  // A counting semaphore for the concurrency limit.
  let free = pipeline.concurrency
  const queue: Array<() => void> = []
  const acquire = () => (free > 0 ? Promise.resolve(void free--) : new Promise<void>((resolve) => queue.push(resolve)))
  const release = () => {
    const next = queue.shift()
    if (next === undefined) free++
    else next()
  }

  const runStep = async (step: Step): Promise<void> => {
    const stepSignal = new AbortController()
    let why: string | undefined
    const cancel = (reason: string) => {
      why ??= reason
      stepSignal.abort(reason)
    }
    const onPipelineAbort = () => cancel("interrupted")
    signal.addEventListener("abort", onPipelineAbort, { once: true })
    const timer = step.timeoutMs === undefined ? undefined : setTimeout(() => cancel("timeout"), step.timeoutMs)
    const deputy = new Deputy({
      ...approver({
        policy: step.policy,
        ...(options.ask === undefined ? {} : { ask: options.ask }),
        onSettled: (line) => observer.approval(step.name, line),
        onWaiting: (_, request) =>
          update(step.name, { approval: request === undefined ? undefined : describe(request) })
      }),
      onWarning: (message) => observer.warning(`${step.name}: ${message.replace(/^deputy: /, "")}`)
    })
    const prompt = substitute(step.prompt, outputs)
    update(step.name, { state: "running", startedAt: Date.now(), prompt })
    try {
      const thread = await deputy.startThread({
        backend: makeBackend({
          backend: step.backend,
          script: step.script,
          ...(step.cwd === undefined ? {} : { cwd: step.cwd })
        }),
        name: step.name,
        ...(step.cwd === undefined ? {} : { cwd: step.cwd })
      })
      const output = await runTurn(
        thread,
        prompt,
        { event: (event) => observer.event(step.name, event), approval: () => undefined },
        { signal: stepSignal.signal, reason: () => why },
        step.timeout
      )
      outputs.set(step.name, output ?? "")
      update(step.name, { state: "done", endedAt: Date.now(), output: output ?? "" })
    } catch (error) {
      const code = error instanceof CliError ? error.code : ExitCode.failed
      const state: StepState =
        code === ExitCode.timeout ? "timed_out" : code === ExitCode.cancelled ? "cancelled" : "failed"
      const reason =
        state === "timed_out"
          ? `timed out after ${step.timeout}`
          : state === "cancelled"
            ? "cancelled (Ctrl-C)"
            : oneLine(error)
      update(step.name, { state, endedAt: Date.now(), reason, approval: undefined })
    } finally {
      if (timer !== undefined) clearTimeout(timer)
      signal.removeEventListener("abort", onPipelineAbort)
      await deputy.close().catch(() => undefined)
    }
  }

  const finished = new Map<string, Promise<void>>()
  for (const step of topological(pipeline.steps)) {
    const needs = step.needs.map((n) => finished.get(n) as Promise<void>)
    finished.set(
      step.name,
      (async () => {
        await Promise.all(needs)
        const failedNeed = step.needs.find((n) => statuses.get(n)?.state !== "done")
        if (failedNeed !== undefined) {
          update(step.name, { state: "cancelled", reason: `${failedNeed} did not succeed` })
          return
        }
        if (signal.aborted) {
          update(step.name, { state: "cancelled", reason: "cancelled (Ctrl-C)" })
          return
        }
        await acquire()
        try {
          if (signal.aborted) update(step.name, { state: "cancelled", reason: "cancelled (Ctrl-C)" })
          else await runStep(step)
        } finally {
          release()
        }
      })()
    )
  }
  await Promise.all(finished.values())
  return pipeline.steps.map((s) => statuses.get(s.name) as StepStatus).filter((s) => ended(s.state))
}

/** Whether the pipeline succeeded: every step done, optional ones aside. */
export const pipelineSucceeded = (steps: ReadonlyArray<StepStatus>): boolean =>
  steps.every((s) => s.state === "done" || s.optional === true)
