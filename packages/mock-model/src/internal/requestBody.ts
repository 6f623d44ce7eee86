/** Reads what matching needs out of a Responses request body, which arrives as untrusted JSON. */

/** A tool result the client sent back: a `function_call_output` or `custom_tool_call_output` input item. */
export interface CallOutput {
  readonly callId: string
  readonly output: string
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const inputItems = (body: unknown): ReadonlyArray<Record<string, unknown>> =>
  isRecord(body) && Array.isArray(body.input) ? body.input.filter(isRecord) : []

// Content is either a string or a list of parts carrying `text` (input_text, output_text, …).
const textOf = (content: unknown): string => {
  if (typeof content === "string") return content
  if (!Array.isArray(content)) return ""
  return content
    .filter(isRecord)
    .map((part) => (typeof part.text === "string" ? part.text : ""))
    .join("")
}

/** The text of the last `role: "user"` message in `input`, if any. */
export const lastUserMessage = (body: unknown): string | undefined => {
  const users = inputItems(body).filter((item) => item.role === "user" && (item.type ?? "message") === "message")
  const last = users[users.length - 1]
  return last === undefined ? undefined : textOf(last.content)
}

/** Every tool result in `input`, in order. */
export const callOutputs = (body: unknown): ReadonlyArray<CallOutput> =>
  inputItems(body).flatMap((item) =>
    (item.type === "function_call_output" || item.type === "custom_tool_call_output") &&
    typeof item.call_id === "string"
      ? [{ callId: item.call_id, output: textOf(item.output) }]
      : []
  )
