/**
 * The JSONL that `codex exec --json` prints on stdout (Codex CLI 0.169), decoded with zod one line
 * at a time. Known shapes are checked strictly enough to trust their fields and loosely enough
 * (extra fields, unknown statuses) that a newer Codex still decodes; unknown types are reported as
 * such so the caller can log and skip them.
 */
import { formatIssues } from "@deputy/core"
import { z } from "zod"

const Text = z.string()

/** An item inside `item.started|updated|completed`; the known kinds. */
export const ExecItem = z.discriminatedUnion("type", [
  z.looseObject({ id: z.string().min(1), type: z.literal("agent_message"), text: Text }),
  z.looseObject({ id: z.string().min(1), type: z.literal("reasoning"), text: Text }),
  z.looseObject({
    id: z.string().min(1),
    type: z.literal("command_execution"),
    command: z.string(),
    aggregated_output: z.string().default(""),
    exit_code: z.number().int().nullable().optional(),
    status: z.string()
  }),
  z.looseObject({
    id: z.string().min(1),
    type: z.literal("file_change"),
    changes: z.array(z.looseObject({ path: z.string().min(1), kind: z.string() })),
    status: z.string()
  }),
  z.looseObject({ id: z.string().min(1), type: z.literal("error"), message: Text })
])
/** A known exec item. */
export type ExecItem = z.output<typeof ExecItem>

const Usage = z.looseObject({
  input_tokens: z.number().int().nonnegative(),
  cached_input_tokens: z.number().int().nonnegative().optional(),
  output_tokens: z.number().int().nonnegative(),
  reasoning_output_tokens: z.number().int().nonnegative().optional()
})

/** One line of `codex exec --json`, of a known type. */
export const ExecLine = z.discriminatedUnion("type", [
  z.looseObject({ type: z.literal("thread.started"), thread_id: z.string().min(1) }),
  z.looseObject({ type: z.literal("turn.started") }),
  z.looseObject({ type: z.literal("turn.completed"), usage: Usage.optional() }),
  z.looseObject({ type: z.literal("turn.failed"), error: z.looseObject({ message: Text }) }),
  z.looseObject({ type: z.literal("error"), message: Text }),
  z.looseObject({
    type: z.enum(["item.started", "item.updated", "item.completed"]),
    item: z.looseObject({ id: z.string().min(1), type: z.string().min(1) })
  })
])
/** One known line of `codex exec --json`. */
export type ExecLine = z.output<typeof ExecLine>

const Envelope = z.looseObject({ type: z.string().min(1) })
const KNOWN_TYPES: ReadonlySet<string> = new Set([
  "thread.started",
  "turn.started",
  "turn.completed",
  "turn.failed",
  "error",
  "item.started",
  "item.updated",
  "item.completed"
])
const KNOWN_ITEMS: ReadonlySet<string> = new Set(ExecItem.options.map((option) => option.shape.type.value))

/** What one stdout line turned out to be. */
export type Decoded =
  | { readonly _tag: "Line"; readonly line: ExecLine; readonly item?: ExecItem }
  /** Valid JSON of a type (or item type) this module does not know. */
  | { readonly _tag: "Unknown"; readonly type: string }
  /** Not JSON, not an object with a `type`, or a known type with bad fields. */
  | { readonly _tag: "Invalid"; readonly issues: ReadonlyArray<string> }

/** Decodes one stdout line (already split, without its newline). Never throws. */
export const decodeExecLine = (text: string): Decoded => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    return { _tag: "Invalid", issues: [`not JSON: ${error instanceof Error ? error.message : String(error)}`] }
  }
  const envelope = Envelope.safeParse(json)
  if (!envelope.success) return { _tag: "Invalid", issues: formatIssues(envelope.error) }
  if (!KNOWN_TYPES.has(envelope.data.type)) return { _tag: "Unknown", type: envelope.data.type }
  const line = ExecLine.safeParse(json)
  if (!line.success) return { _tag: "Invalid", issues: formatIssues(line.error) }
  const data = line.data
  if (data.type !== "item.started" && data.type !== "item.updated" && data.type !== "item.completed") {
    return { _tag: "Line", line: data }
  }
  if (!KNOWN_ITEMS.has(data.item.type)) return { _tag: "Unknown", type: `${data.type}:${data.item.type}` }
  const item = ExecItem.safeParse(data.item)
  if (!item.success) return { _tag: "Invalid", issues: formatIssues(item.error).map((issue) => `item.${issue}`) }
  return { _tag: "Line", line: data, item: item.data }
}
