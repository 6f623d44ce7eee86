/** Events: what comes out of an agent. `{ id, msg }`, where `id` is the submission that caused it. */
import { z } from "zod"
import { FileChanges, Question, ReviewDecision } from "./approvals.js"

const turnId = z.string().min(1)

/** First event of every agent: the thread is ready. */
export const SessionConfigured = z.object({
  type: z.literal("session_configured"),
  threadId: z.string().min(1),
  backend: z.string().min(1),
  model: z.string().optional(),
  cwd: z.string().optional(),
  /** Ids the backend itself uses for this thread (e.g. Codex's own thread id). */
  backendThreadId: z.string().optional()
})
/** A turn began. */
export const TurnStarted = z.object({ type: z.literal("turn_started"), turnId })
/** A complete assistant message. */
export const AgentMessage = z.object({ type: z.literal("agent_message"), message: z.string() })
/** A streamed piece of an assistant message (filtered out by default). */
export const AgentMessageDelta = z.object({ type: z.literal("agent_message_delta"), delta: z.string() })
/** A complete reasoning text. */
export const AgentReasoning = z.object({ type: z.literal("agent_reasoning"), text: z.string() })
/** A streamed piece of reasoning (filtered out by default). */
export const AgentReasoningDelta = z.object({ type: z.literal("agent_reasoning_delta"), delta: z.string() })
/** Token usage after a model response. */
export const TokenCount = z.object({
  type: z.literal("token_count"),
  inputTokens: z.number().int().nonnegative(),
  outputTokens: z.number().int().nonnegative(),
  totalTokens: z.number().int().nonnegative()
})
/** The agent wants to run a command and waits for a decision. */
export const ExecApprovalRequest = z.object({
  type: z.literal("exec_approval_request"),
  callId: z.string().min(1),
  /** Set when one call asks more than once; the answer then names this id instead of `callId`. */
  approvalId: z.string().min(1).optional(),
  turnId,
  command: z.array(z.string()).min(1),
  cwd: z.string(),
  reason: z.string().optional(),
  /** Decisions this agent can act on, when it offers a choice; absent means all four. */
  availableDecisions: z.array(ReviewDecision).optional()
})
/** The agent wants to change files and waits for a decision. */
export const ApplyPatchApprovalRequest = z.object({
  type: z.literal("apply_patch_approval_request"),
  callId: z.string().min(1),
  turnId,
  changes: FileChanges,
  reason: z.string().optional(),
  grantRoot: z.string().optional()
})
/** The agent asks questions and waits for answers. */
export const RequestUserInput = z.object({
  type: z.literal("request_user_input"),
  callId: z.string().min(1),
  turnId,
  questions: z.array(Question).min(1)
})
/** A command started. */
export const ExecCommandBegin = z.object({
  type: z.literal("exec_command_begin"),
  callId: z.string().min(1),
  turnId,
  command: z.array(z.string()).min(1),
  cwd: z.string()
})
/** A command ended (or was killed: `exitCode` null). */
export const ExecCommandEnd = z.object({
  type: z.literal("exec_command_end"),
  callId: z.string().min(1),
  turnId,
  exitCode: z.number().int().nullable(),
  stdout: z.string(),
  stderr: z.string()
})
/** A patch started applying. */
export const PatchApplyBegin = z.object({
  type: z.literal("patch_apply_begin"),
  callId: z.string().min(1),
  turnId,
  autoApproved: z.boolean(),
  changes: FileChanges
})
/** A patch finished applying. */
export const PatchApplyEnd = z.object({
  type: z.literal("patch_apply_end"),
  callId: z.string().min(1),
  turnId,
  success: z.boolean(),
  stdout: z.string(),
  stderr: z.string()
})
/** A turn ended normally. */
export const TurnComplete = z.object({
  type: z.literal("turn_complete"),
  turnId,
  lastAgentMessage: z.string().optional()
})
/** Why a turn was aborted. */
export const TurnAbortReason = z.enum(["interrupted", "replaced", "review_ended", "backend_exited"])
/** Why a turn was aborted. */
export type TurnAbortReason = z.output<typeof TurnAbortReason>
/** A turn ended early. */
export const TurnAborted = z.object({
  type: z.literal("turn_aborted"),
  turnId: turnId.optional(),
  reason: TurnAbortReason
})
/** Something went wrong; the turn may or may not go on. */
export const ErrorEvent = z.object({ type: z.literal("error"), message: z.string() })
/** Something worth knowing went wrong, without stopping anything. */
export const Warning = z.object({ type: z.literal("warning"), message: z.string() })
/** The thread got a (new) name. */
export const ThreadNameUpdated = z.object({
  type: z.literal("thread_name_updated"),
  threadId: z.string(),
  name: z.string()
})
/** Last event of an agent that was shut down. */
export const ShutdownComplete = z.object({ type: z.literal("shutdown_complete") })
/** A nested sub-agent of this thread started (its own thread records its own events). */
export const SubAgentStarted = z.object({
  type: z.literal("sub_agent_started"),
  threadId: z.string().min(1),
  name: z.string().optional(),
  depth: z.number().int().positive()
})
/** How a nested sub-agent's work ended. */
export const SubAgentStatus = z.enum(["completed", "aborted", "failed"])
/** How a nested sub-agent's work ended. */
export type SubAgentStatus = z.output<typeof SubAgentStatus>
/** A nested sub-agent of this thread ended. */
export const SubAgentEnded = z.object({
  type: z.literal("sub_agent_ended"),
  threadId: z.string().min(1),
  name: z.string().optional(),
  status: SubAgentStatus,
  lastAgentMessage: z.string().optional()
})

/** Every event message. */
export const EventMsg = z.discriminatedUnion("type", [
  SessionConfigured,
  TurnStarted,
  AgentMessage,
  AgentMessageDelta,
  AgentReasoning,
  AgentReasoningDelta,
  TokenCount,
  ExecApprovalRequest,
  ApplyPatchApprovalRequest,
  RequestUserInput,
  ExecCommandBegin,
  ExecCommandEnd,
  PatchApplyBegin,
  PatchApplyEnd,
  TurnComplete,
  TurnAborted,
  ErrorEvent,
  Warning,
  ThreadNameUpdated,
  ShutdownComplete,
  SubAgentStarted,
  SubAgentEnded
])
/** Every event message. */
export type EventMsg = z.output<typeof EventMsg>
/** The `type` tag of an event message. */
export type EventType = EventMsg["type"]
/** The event message of one type. */
export type EventMsgOf<T extends EventType> = Extract<EventMsg, { type: T }>

/** What comes out of an agent: the id of the submission that caused it, and the message. */
export const Event = z.object({ id: z.string(), msg: EventMsg })
/** What comes out of an agent. */
export type Event = z.output<typeof Event>

/** True for the events that end a turn. */
export const isTurnEnd = (msg: EventMsg): msg is EventMsgOf<"turn_complete" | "turn_aborted"> =>
  msg.type === "turn_complete" || msg.type === "turn_aborted"
