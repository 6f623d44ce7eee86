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

const deltas = z.number().int().min(1).optional()

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
  command: z.array(z.string()).min(1),
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
export const AskStep = z.strictObject({ type: z.literal("ask"), questions: z.array(Question).min(1) })
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
export const SpawnStep = z.strictObject({ type: z.literal("spawn"), agents: z.array(SpawnAgent).min(1) })
/** Starts nested sub-agents and waits for them. */
export type SpawnStep = z.output<typeof SpawnStep>

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
  repeat: z.number().int().min(1).default(1),
  steps: z.array(ScriptStep)
})
/** One turn of a script. */
export type ScriptTurn = z.output<typeof ScriptTurn>

/** A scripted agent: the n-th `user_input` runs the n-th turn. `name` becomes the thread's name. */
export const Script = z.strictObject({
  name: z.string().min(1).optional(),
  model: z.string().min(1).optional(),
  turns: z.array(ScriptTurn)
})
/** A scripted agent. */
export type Script = z.output<typeof Script>
/** A script as written: defaults (`repeat`, `needsApproval`, `fatal`) may be left out. */
export type ScriptInput = z.input<typeof Script>
/** A step as written: defaults may be left out. */
export type ScriptStepInput = z.input<typeof ScriptStep>
