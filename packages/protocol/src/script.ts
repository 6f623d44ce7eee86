/**
 * Scripts for the scripted backend (§24): a list of turns, each a list of steps, run one turn per
 * `user_input`. Every object is strict, so a misspelt field is an error rather than silently ignored.
 * Any string field of a step may hold `{{answer.<questionId>}}`, replaced when the step runs by the
 * first answer to that question given earlier in the thread (empty if none), and
 * `{{child.<name>}}`, the last message of the thread's sub-agent of that name (empty if none). The
 * nested scripts of a `spawn` step are left alone: each fills its own when it runs.
 */
import { z } from "zod"
import { FileChanges, Question } from "./approvals.js"

/**
 * The bounds on a script (§36): counts that would make one step or turn run for ever or fill memory
 * are refused when the script is read, not when it runs. `nesting` bounds how deep objects and
 * arrays may nest, `spawnDepth` how deep `spawn` steps may nest; both are checked before and after
 * the schema (the schema recurses, so an unbounded nesting would overflow the stack).
 */
export const SCRIPT_LIMITS = {
  turns: 10_000,
  steps: 10_000,
  repeat: 10_000,
  deltas: 10_000,
  agents: 100,
  questions: 100,
  commandArgs: 10_000,
  nesting: 200,
  spawnDepth: 16
} as const

const deltas = z.number().int().min(1).max(SCRIPT_LIMITS.deltas).optional()

/** Says `text`, optionally streamed first as `deltas` pieces (`agent_message_delta`), then whole (`agent_message`). */
export const MessageStep = z.strictObject({ type: z.literal("message"), text: z.string(), deltas })
/** Says `text`, optionally streamed first as `deltas` pieces. */
export type MessageStep = z.output<typeof MessageStep>

/** Thinks `text`: `agent_reasoning_delta` pieces, then `agent_reasoning`. */
export const ReasoningStep = z.strictObject({ type: z.literal("reasoning"), text: z.string(), deltas })
/** Thinks `text`. */
export type ReasoningStep = z.output<typeof ReasoningStep>

/** Runs a real command after asking for approval (unless `needsApproval` is false). */
export const ExecStep = z.strictObject({
  type: z.literal("exec"),
  /** The argv; the first item is the program, found on PATH. No shell unless you run one. */
  command: z.array(z.string()).min(1).max(SCRIPT_LIMITS.commandArgs),
  /** Relative to the agent's cwd, or absolute. */
  cwd: z.string().min(1).optional(),
  needsApproval: z.boolean().default(true),
  reason: z.string().optional()
})
/** Runs a real command after asking for approval. */
export type ExecStep = z.output<typeof ExecStep>

/** Changes real files (paths relative to the agent's cwd) after asking for approval. */
export const PatchStep = z.strictObject({
  type: z.literal("patch"),
  changes: FileChanges,
  reason: z.string().optional()
})
/** Changes real files after asking for approval. */
export type PatchStep = z.output<typeof PatchStep>

/** Asks the parent questions and waits for the answers. */
export const AskStep = z.strictObject({
  type: z.literal("ask"),
  questions: z.array(Question).min(1).max(SCRIPT_LIMITS.questions)
})
/** Asks the parent questions. */
export type AskStep = z.output<typeof AskStep>

/** Waits `ms` milliseconds (on the Effect clock, so a TestClock drives it in tests). */
export const SleepStep = z.strictObject({ type: z.literal("sleep"), ms: z.number().int().nonnegative().max(600_000) })
/** Waits `ms` milliseconds. */
export type SleepStep = z.output<typeof SleepStep>

/** Reports an error; the turn goes on to `turn_complete`, unless `fatal`, which kills the agent like a crashed backend. */
export const FailStep = z.strictObject({
  type: z.literal("fail"),
  message: z.string(),
  fatal: z.boolean().default(false)
})
/** Reports an error, or crashes the agent. */
export type FailStep = z.output<typeof FailStep>

/** Reports token usage. */
export const TokenCountStep = z.strictObject({
  type: z.literal("token_count"),
  input: z.number().int().nonnegative(),
  output: z.number().int().nonnegative()
})
/** Reports token usage. */
export type TokenCountStep = z.output<typeof TokenCountStep>

/** One nested sub-agent of a `spawn` step: a scripted agent playing `script`, given `input` as its one turn. */
export const SpawnAgent = z.strictObject({
  /** Names the child in its events, and its last message in `{{child.<name>}}`. */
  name: z.string().min(1).optional(),
  // A getter (zod's z.lazy for object fields): the schema is recursive, and the types follow.
  get script(): typeof Script {
    return Script
  },
  input: z.string()
})
/** One nested sub-agent of a `spawn` step. */
export type SpawnAgent = z.output<typeof SpawnAgent>

/**
 * Starts every listed child at once as a nested sub-agent (on the same cwd), waits for all of them,
 * and reports each as `sub_agent_started` / `sub_agent_ended`. Needs the agent to run under a ThreadManager.
 */
export const SpawnStep = z.strictObject({
  type: z.literal("spawn"),
  agents: z.array(SpawnAgent).min(1).max(SCRIPT_LIMITS.agents)
})
/** Starts nested sub-agents and waits for them. */
export type SpawnStep = z.output<typeof SpawnStep>

/** The `type` of every step, in the order error messages list them. */
export const STEP_TYPES = [
  "message",
  "reasoning",
  "exec",
  "patch",
  "ask",
  "sleep",
  "fail",
  "token_count",
  "spawn"
] as const

/** One step of a turn. */
export const ScriptStep = z.discriminatedUnion("type", [
  MessageStep,
  ReasoningStep,
  ExecStep,
  PatchStep,
  AskStep,
  SleepStep,
  FailStep,
  TokenCountStep,
  SpawnStep
])
/** One step of a turn. */
export type ScriptStep = z.output<typeof ScriptStep>

/** One turn: its steps, run `repeat` times in a row (default once). */
export const ScriptTurn = z.strictObject({
  repeat: z.number().int().min(1).max(SCRIPT_LIMITS.repeat).default(1),
  steps: z.array(ScriptStep).max(SCRIPT_LIMITS.steps)
})
/** One turn of a script. */
export type ScriptTurn = z.output<typeof ScriptTurn>

/** A scripted agent: the n-th `user_input` runs the n-th turn. `name` becomes the thread's name. */
export const Script = z.strictObject({
  name: z.string().min(1).optional(),
  model: z.string().min(1).optional(),
  turns: z.array(ScriptTurn).max(SCRIPT_LIMITS.turns)
})
/** A scripted agent. */
export type Script = z.output<typeof Script>

const show = (value: unknown): string => {
  if (typeof value === "string") return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
  if (value === null || typeof value !== "object") return String(value)
  return Array.isArray(value) ? "an array" : "an object"
}

/**
 * A zod error map for scripts: messages that name the bad value and what is allowed, as in
 * `"exek" is not one of message, reasoning, exec, …` or `1000000000000 is too big: at most 10000`.
 * Pass it as `Script.safeParse(value, { error: scriptErrorMessage })`; other issues keep zod's wording.
 */
export const scriptErrorMessage = (issue: z.core.$ZodRawIssue): string | undefined => {
  switch (issue.code) {
    case "invalid_union": {
      if (!("discriminator" in issue) || issue.discriminator !== "type") return undefined
      const input = issue.input
      const type = typeof input === "object" && input !== null && "type" in input ? input.type : undefined
      return `${type === undefined ? "a missing type" : show(type)} is not one of ${STEP_TYPES.join(", ")}`
    }
    case "invalid_type":
      return `expected ${issue.expected}, got ${issue.input === undefined ? "nothing" : show(issue.input)}`
    case "too_big":
      return Array.isArray(issue.input)
        ? `${issue.input.length} items is too many: at most ${issue.maximum}`
        : `${show(issue.input)} is too big: at most ${issue.maximum}`
    case "too_small":
      return Array.isArray(issue.input)
        ? `${issue.input.length} items is too few: at least ${issue.minimum}`
        : `${show(issue.input)} is too small: at least ${issue.minimum}`
    case "invalid_value":
      return `${show(issue.input)} is not one of ${issue.values.map((value) => JSON.stringify(value)).join(", ")}`
    default:
      return undefined
  }
}

/** A script as written: defaults (`repeat`, `needsApproval`, `fatal`) may be left out. */
export type ScriptInput = z.input<typeof Script>
/** A step as written: defaults may be left out. */
export type ScriptStepInput = z.input<typeof ScriptStep>
