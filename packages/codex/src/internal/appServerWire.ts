/**
 * The parts of Codex 0.169's app-server protocol (v2) deputy reads, as zod schemas. Only the fields
 * used are listed; unknown fields pass (Codex adds fields freely). Shapes from
 * `codex app-server generate-ts --experimental` (reference §2–§3).
 */
import { z } from "zod"

const threadId = z.string().min(1)
const nullableString = z.string().nullish()

/** `thread/start` and `thread/resume` results. */
export const ThreadResponse = z.object({
  thread: z.object({ id: z.string() }),
  model: z.string().optional(),
  cwd: z.string().optional()
})

/** `turn/start` result. */
export const TurnStartResponse = z.object({ turn: z.object({ id: z.string().min(1) }) })

/** `turn/started`. */
export const TurnStarted = z.object({ threadId, turn: z.object({ id: z.string().min(1) }) })

/** `turn/completed`. */
export const TurnCompleted = z.object({
  threadId,
  turn: z.object({
    id: z.string().min(1),
    status: z.string(),
    error: z.object({ message: z.string() }).nullish()
  })
})

const FileUpdateChange = z.object({
  path: z.string().min(1),
  kind: z.object({ type: z.string(), move_path: nullableString }),
  diff: z.string().default("")
})

/** The items deputy turns into events; any other item type is ignored. */
export const ThreadItem = z.discriminatedUnion("type", [
  z.object({ type: z.literal("agentMessage"), id: z.string(), text: z.string() }),
  z.object({
    type: z.literal("reasoning"),
    id: z.string(),
    summary: z.array(z.string()).default([]),
    content: z.array(z.string()).default([])
  }),
  z.object({
    type: z.literal("commandExecution"),
    id: z.string().min(1),
    command: z.string(),
    cwd: z.string().default(""),
    status: z.string(),
    aggregatedOutput: nullableString,
    exitCode: z.number().int().nullish()
  }),
  z.object({
    type: z.literal("fileChange"),
    id: z.string().min(1),
    changes: z.array(FileUpdateChange).default([]),
    status: z.string()
  })
])
/** An item deputy turns into events. */
export type ThreadItem = z.output<typeof ThreadItem>
/** The item types `ThreadItem` decodes; others (userMessage, plan, …) have no deputy event. */
export const THREAD_ITEM_TYPES: ReadonlySet<string> = new Set(
  ThreadItem.options.map((option) => option.shape.type.value)
)
/** One file of a fileChange item. */
export type FileUpdateChange = z.output<typeof FileUpdateChange>

/** `item/started` / `item/completed` (the item itself is decoded separately, only when its type matters). */
export const ItemNotification = z.object({
  threadId,
  turnId: z.string().min(1),
  item: z.object({ type: z.string() }).passthrough()
})

/** `item/agentMessage/delta`, `item/reasoning/summaryTextDelta`, `item/reasoning/textDelta`. */
export const Delta = z.object({ threadId, turnId: z.string().min(1), delta: z.string() })

const Usage = z.object({
  totalTokens: z.number().int().nonnegative(),
  inputTokens: z.number().int().nonnegative(),
  outputTokens: z.number().int().nonnegative()
})
/** `thread/tokenUsage/updated`. */
export const TokenUsageUpdated = z.object({
  threadId,
  turnId: z.string().min(1),
  tokenUsage: z.object({ total: Usage, last: Usage })
})

/** `error`. */
export const ErrorNotification = z.object({
  threadId,
  turnId: z.string().min(1),
  willRetry: z.boolean(),
  error: z.object({ message: z.string() })
})

/** `warning`. */
export const WarningNotification = z.object({ threadId: z.string().nullish(), message: z.string() })

/** `configWarning`. */
export const ConfigWarningNotification = z.object({ summary: z.string(), details: nullableString })

/** `serverRequest/resolved`. */
export const ServerRequestResolved = z.object({ threadId, requestId: z.union([z.number(), z.string()]) })

/** `item/commandExecution/requestApproval`. */
export const CommandApprovalParams = z.object({
  threadId,
  turnId: z.string().min(1),
  itemId: z.string().min(1),
  approvalId: nullableString,
  reason: nullableString,
  command: nullableString,
  cwd: nullableString
})

/** `item/fileChange/requestApproval`. */
export const FileChangeApprovalParams = z.object({
  threadId,
  turnId: z.string().min(1),
  itemId: z.string().min(1),
  reason: nullableString,
  grantRoot: nullableString
})

/** `item/tool/requestUserInput`. */
export const RequestUserInputParams = z.object({
  threadId,
  turnId: z.string().min(1),
  itemId: z.string().min(1),
  questions: z.array(
    z.object({
      id: z.string().min(1),
      header: nullableString,
      question: z.string(),
      isOther: z.boolean().nullish(),
      isSecret: z.boolean().nullish(),
      options: z.array(z.object({ label: z.string().min(1), description: nullableString })).nullish()
    })
  )
})

/** Any params with a thread id: used to route a message to its thread. */
export const ThreadScoped = z.object({ threadId })
/** One question of `item/tool/requestUserInput`. */
export type RequestUserInputQuestion = z.output<typeof RequestUserInputParams>["questions"][number]
