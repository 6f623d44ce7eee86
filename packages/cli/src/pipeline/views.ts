/**
 * How a pipeline run is shown: plain lines (stdout is not a terminal), JSON lines (`--json`), or a
 * live view on a terminal: one line per step (state, elapsed time, the approval it waits for),
 * redrawn in place with ANSI cursor moves, then a summary.
 */
import type { Ask } from "../approvals.js"
import { decidedBy } from "../output.js"
import { type PipelineObserver, pipelineSucceeded, type StepState, type StepStatus } from "./runPipeline.js"

/** A view: what it observes, what it prints at the end, and how it lets a question through. */
export interface PipelineView extends PipelineObserver {
  readonly start: (steps: ReadonlyArray<StepStatus>) => void
  readonly finish: (steps: ReadonlyArray<StepStatus>) => void
  /** Wraps a terminal question so the view steps aside while it is asked. */
  readonly wrapAsk: (ask: Ask) => Ask
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`
const elapsed = (s: StepStatus, now: number) =>
  s.startedAt === undefined ? "" : seconds((s.endedAt ?? now) - s.startedAt)
const firstLine = (text: string, max = 100) => {
  const line = text.split("\n").find((l) => l.trim() !== "") ?? ""
  return line.length > max ? `${line.slice(0, max - 1)}…` : line
}

const WORDS: Record<StepState, string> = {
  waiting: "waiting",
  running: "running",
  done: "done",
  failed: "failed",
  timed_out: "timed out",
  cancelled: "cancelled"
}

/** How a step that did not succeed ended, in words. */
const ending = (s: StepStatus) =>
  s.reason === undefined
    ? WORDS[s.state]
    : s.state === "failed"
      ? `failed: ${s.reason}`
      : s.state === "cancelled" && !s.reason.startsWith("cancelled")
        ? `cancelled: ${s.reason}`
        : s.reason

/** The last line: how many succeeded, and why the others did not. */
export const summary = (steps: ReadonlyArray<StepStatus>): string => {
  const ok = steps.filter((s) => s.state === "done").length
  const others = steps
    .filter((s) => s.state !== "done")
    .map((s) => `${s.name} ${ending(s)}${s.optional === true ? " (optional)" : ""}`)
  return `${ok} of ${steps.length} steps succeeded${others.length === 0 ? "" : `; ${others.join("; ")}`}`
}

/** Plain lines on stdout. */
export const plainView = (): PipelineView => {
  const say = (line: string) => process.stdout.write(`${line}\n`)
  return {
    start: () => undefined,
    changed: (s) => {
      const now = Date.now()
      if (s.state === "running") say(`${s.name}: started`)
      else if (s.state === "done") say(`${s.name}: done in ${elapsed(s, now)}: ${firstLine(s.output ?? "")}`)
      else if (s.state !== "waiting") say(`${s.name}: ${ending(s)}`)
    },
    event: () => undefined,
    approval: (step, line) => {
      const what =
        line.kind === "exec" ? `$ ${(line.command ?? []).join(" ")}` : `${line.kind} ${(line.paths ?? []).join(", ")}`
      say(`${step}: ${what}: ${decidedBy(line)}`)
    },
    warning: (message) => process.stderr.write(`deputy: warning: ${message}\n`),
    finish: (steps) => say(summary(steps)),
    wrapAsk: (ask) => ask
  }
}

/** JSON lines on stdout: step changes, events and approvals, each with its step; a summary last. */
export const jsonView = (): PipelineView => {
  const emit = (value: object) => process.stdout.write(`${JSON.stringify(value)}\n`)
  return {
    start: () => undefined,
    changed: (s) =>
      emit({
        type: "step",
        step: s.name,
        state: s.state,
        ...(s.startedAt === undefined ? {} : { elapsedMs: (s.endedAt ?? Date.now()) - s.startedAt }),
        ...(s.reason === undefined ? {} : { reason: s.reason }),
        ...(s.state === "running" && s.prompt !== undefined ? { prompt: s.prompt } : {}),
        ...(s.output === undefined ? {} : { output: s.output }),
        ...(s.approval === undefined ? {} : { waitingFor: s.approval })
      }),
    event: (step, event) => emit({ ...event, step }),
    approval: (step, line) => emit({ ...line, step }),
    warning: (message) => process.stderr.write(`deputy: warning: ${message}\n`),
    finish: (steps) =>
      emit({
        type: "pipeline",
        ok: pipelineSucceeded(steps),
        steps: Object.fromEntries(steps.map((s) => [s.name, s.state]))
      }),
    wrapAsk: (ask) => ask
  }
}

const ESC = "\u001b["
const SPINNER = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"]
const MARK: Record<StepState, string> = {
  waiting: "·",
  running: "",
  done: "✓",
  failed: "✗",
  timed_out: "⏱",
  cancelled: "⊘"
}

/** The live view: the step lines redrawn in place every 100 ms and on each change. */
export const liveView = (): PipelineView => {
  let steps: ReadonlyArray<StepStatus> = []
  let drawn = 0
  let frame = 0
  let paused = false
  let timer: NodeJS.Timeout | undefined
  let questions: Promise<unknown> = Promise.resolve()
  const width = () => Math.max(40, (process.stdout.columns ?? 100) - 1)
  const nameWidth = () => Math.max(4, ...steps.map((s) => s.name.length))

  const line = (s: StepStatus, now: number) => {
    const mark = s.state === "running" ? (SPINNER[frame % SPINNER.length] ?? "*") : MARK[s.state]
    const state =
      s.approval !== undefined ? `waiting for approval: ${s.approval}` : s.state === "waiting" ? "waiting" : ending(s)
    const text = `${mark} ${s.name.padEnd(nameWidth())}  ${elapsed(s, now).padStart(6)}  ${state}`
    // A line longer than the terminal wraps and breaks the cursor arithmetic: cut it.
    return text.length > width() ? `${text.slice(0, width() - 1)}…` : text
  }
  const erase = () => {
    if (drawn > 0) process.stdout.write(`${ESC}${drawn}A\r${ESC}J`)
    drawn = 0
  }
  const draw = () => {
    if (paused) return
    const now = Date.now()
    frame++
    const up = drawn > 0 ? `${ESC}${drawn}A\r` : ""
    process.stdout.write(up + steps.map((s) => `${ESC}2K${line(s, now)}\n`).join(""))
    drawn = steps.length
  }
  return {
    start: (initial) => {
      steps = initial
      process.stdout.write(`${ESC}?25l`) // hide the cursor while drawing
      draw()
      timer = setInterval(draw, 100)
    },
    changed: (status) => {
      steps = steps.map((s) => (s.name === status.name ? { ...status } : s))
      draw()
    },
    event: () => undefined,
    approval: () => undefined,
    warning: () => undefined,
    finish: (final) => {
      if (timer !== undefined) clearInterval(timer)
      paused = false
      steps = final
      draw()
      process.stdout.write(`${ESC}?25h${summary(final)}\n`)
    },
    wrapAsk: (ask) => (question, signal) => {
      // One question at a time, asked under the view (drawn once, showing what waits), which holds
      // still until the answer; then the question line is erased with the view and the view redrawn.
      const asked = questions.then(async () => {
        paused = false
        draw()
        paused = true
        let answer = ""
        try {
          answer = await ask(question, signal)
          return answer
        } finally {
          drawn += Math.max(1, Math.ceil((question.length + answer.length) / (width() + 1)))
          paused = false
          erase()
          draw()
        }
      })
      questions = asked.catch(() => undefined)
      return asked
    }
  }
}
