/** What a sub-agent asks its parent for, and the answers: review decisions, file changes, user-input questions. */
import { z } from "zod"

/** A parent's answer to an exec or patch approval. Nothing is ever approved by default. */
export const ReviewDecision = z.enum(["approved", "approved_for_session", "denied", "abort"])
/** A parent's answer to an exec or patch approval. */
export type ReviewDecision = z.output<typeof ReviewDecision>

/** One file's change in a patch: added with its content, updated by a unified diff (optionally moved), or deleted. */
export const FileChange = z.discriminatedUnion("type", [
  z.object({ type: z.literal("add"), content: z.string() }),
  z.object({ type: z.literal("update"), unifiedDiff: z.string(), movePath: z.string().min(1).optional() }),
  z.object({ type: z.literal("delete"), content: z.string().optional() })
])
/** One file's change in a patch. */
export type FileChange = z.output<typeof FileChange>

/** A patch: file changes keyed by path (relative to the agent's cwd, or absolute). */
export const FileChanges = z.record(z.string().min(1), FileChange)
/** A patch: file changes keyed by path. */
export type FileChanges = z.output<typeof FileChanges>

/** One choice offered with a question. */
export const QuestionOption = z.object({ label: z.string().min(1), description: z.string().optional() })
/** One choice offered with a question. */
export type QuestionOption = z.output<typeof QuestionOption>

/** One question of a user-input request. */
export const Question = z.object({
  id: z.string().min(1),
  header: z.string().optional(),
  question: z.string(),
  options: z.array(QuestionOption).optional(),
  isOther: z.boolean().optional(),
  isSecret: z.boolean().optional()
})
/** One question of a user-input request. */
export type Question = z.output<typeof Question>

/** The answers to a user-input request, keyed by question id. An empty record means "no answer". */
export const UserInputResponse = z.object({
  answers: z.record(z.string(), z.object({ answers: z.array(z.string()) }))
})
/** The answers to a user-input request, keyed by question id. */
export type UserInputResponse = z.output<typeof UserInputResponse>

/** The answer set given when nobody answers or the request was cancelled (§4, §5). */
export const emptyUserInputResponse = (): UserInputResponse => ({ answers: {} })
