/** Ops: what goes into an agent. A submission pairs an op with the id its events will carry. */
import { z } from "zod"
import { ReviewDecision, UserInputResponse } from "./approvals.js"

/** One item of user input. */
export const UserInputItem = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text"), text: z.string() }),
  z.object({ type: z.literal("image"), url: z.string().min(1) }),
  z.object({ type: z.literal("local_image"), path: z.string().min(1) })
])
/** One item of user input. */
export type UserInputItem = z.output<typeof UserInputItem>

/** Starts a turn (or, with a turn already running, adds to it). */
export const UserInputOp = z.object({ type: z.literal("user_input"), items: z.array(UserInputItem).min(1) })
/** Answers an exec approval request: `id` is the effective approval id (`approvalId`, else `callId`). */
export const ExecApprovalOp = z.object({
  type: z.literal("exec_approval"),
  id: z.string().min(1),
  turnId: z.string().optional(),
  decision: ReviewDecision
})
/** Answers a patch approval request: `id` is its `callId`. */
export const PatchApprovalOp = z.object({
  type: z.literal("patch_approval"),
  id: z.string().min(1),
  decision: ReviewDecision
})
/** Answers a user-input request: `id` is the id of the event that asked. */
export const UserInputAnswerOp = z.object({
  type: z.literal("user_input_answer"),
  id: z.string().min(1),
  response: UserInputResponse
})
/** Aborts the running turn, if any; the turn ends with `turn_aborted` (reason `interrupted`). */
export const InterruptOp = z.object({ type: z.literal("interrupt") })
/** Ends the agent: its event stream ends with `shutdown_complete`. */
export const ShutdownOp = z.object({ type: z.literal("shutdown") })

/** Everything that can go into an agent. */
export const Op = z.discriminatedUnion("type", [
  UserInputOp,
  ExecApprovalOp,
  PatchApprovalOp,
  UserInputAnswerOp,
  InterruptOp,
  ShutdownOp
])
/** Everything that can go into an agent. */
export type Op = z.output<typeof Op>
/** The `type` tag of an op. */
export type OpType = Op["type"]

/** An op with the id that the events it causes will carry. For `user_input` the id is the turn id. */
export const Submission = z.object({ id: z.string().min(1), op: Op })
/** An op with the id that the events it causes will carry. */
export type Submission = z.output<typeof Submission>

/** A `user_input` op: starts a turn. */
export type UserInputOp = z.output<typeof UserInputOp>

/** A `user_input` op of one text item. */
export const userText = (text: string): UserInputOp => ({ type: "user_input", items: [{ type: "text", text }] })
