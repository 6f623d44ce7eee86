/**
 * Turns scenario steps into Responses-API server-sent events, in the shapes Codex 0.169 accepts. Pure: the server
 * writes the frames and sleeps where told.
 */
import type { Step, Usage } from "../Scenario.js"

/** One thing the server does while streaming: send an event, or wait. */
export type Action = { readonly event: Record<string, unknown> } | { readonly sleepMs: number }

/** `event: T\ndata: {"type":"T",…}\n\n`; Codex dispatches on the JSON `type`. */
export const frame = (event: Record<string, unknown>): string =>
  `event: ${String(event.type)}\ndata: ${JSON.stringify(event)}\n\n`

/** Splits `text` into `n` nearly equal pieces (by code point), dropping empty ones. */
export const split = (text: string, n: number): ReadonlyArray<string> => {
  const chars = Array.from(text)
  const size = Math.ceil(chars.length / n)
  const pieces: Array<string> = []
  for (let i = 0; i < chars.length; i += size) pieces.push(chars.slice(i, i + size).join(""))
  return pieces
}

/** Ids are deterministic per request: `<prefix>_<request>_<step>`. */
export interface StepIds {
  readonly item: (prefix: string) => string
}

const outputItem = (outputIndex: number, item: Record<string, unknown>): ReadonlyArray<Action> => [
  { event: { type: "response.output_item.added", output_index: outputIndex, item } },
  { event: { type: "response.output_item.done", output_index: outputIndex, item } }
]

const toolCall = (outputIndex: number, item: Record<string, unknown>): ReadonlyArray<Action> => [
  // Codex acts on the finished item; `added` first mirrors the real API.
  ...outputItem(outputIndex, item)
]

const functionCall = (
  outputIndex: number,
  callId: string,
  name: string,
  args: unknown,
  namespace?: string
): ReadonlyArray<Action> =>
  toolCall(outputIndex, {
    type: "function_call",
    call_id: callId,
    name,
    ...(namespace === undefined ? {} : { namespace }),
    arguments: typeof args === "string" ? args : JSON.stringify(args)
  })

/** The events of one output step (not delay, not a terminal step). */
export const stepActions = (step: Step, outputIndex: number, ids: StepIds): ReadonlyArray<Action> => {
  switch (step.type) {
    case "message": {
      const id = step.id ?? ids.item("msg")
      const deltas = split(step.text, step.deltas).flatMap(
        (delta, i): ReadonlyArray<Action> => [
          ...(i > 0 && step.deltaDelayMs > 0 ? [{ sleepMs: step.deltaDelayMs }] : []),
          {
            event: {
              type: "response.output_text.delta",
              item_id: id,
              output_index: outputIndex,
              content_index: 0,
              delta
            }
          }
        ]
      )
      return [
        {
          event: {
            type: "response.output_item.added",
            output_index: outputIndex,
            item: { type: "message", role: "assistant", id, status: "in_progress", content: [] }
          }
        },
        ...deltas,
        {
          event: {
            type: "response.output_item.done",
            output_index: outputIndex,
            item: {
              type: "message",
              role: "assistant",
              id,
              status: "completed",
              content: [{ type: "output_text", text: step.text, annotations: [] }]
            }
          }
        }
      ]
    }
    case "reasoning": {
      const id = step.id ?? ids.item("rs")
      const base = { item_id: id, output_index: outputIndex }
      const summary = step.summary
      const text = step.text
      return [
        {
          event: {
            type: "response.output_item.added",
            output_index: outputIndex,
            item: { type: "reasoning", id, summary: [] }
          }
        },
        ...(summary === undefined
          ? []
          : [
              { event: { type: "response.reasoning_summary_part.added", ...base, summary_index: 0 } },
              { event: { type: "response.reasoning_summary_text.delta", ...base, summary_index: 0, delta: summary } }
            ]),
        ...(text === undefined
          ? []
          : [{ event: { type: "response.reasoning_text.delta", ...base, content_index: 0, delta: text } }]),
        {
          event: {
            type: "response.output_item.done",
            output_index: outputIndex,
            item: {
              type: "reasoning",
              id,
              summary: summary === undefined ? [] : [{ type: "summary_text", text: summary }],
              ...(text === undefined ? {} : { content: [{ type: "reasoning_text", text }] })
            }
          }
        }
      ]
    }
    case "function_call":
      return functionCall(outputIndex, step.callId ?? ids.item("call"), step.name, step.arguments, step.namespace)
    case "exec_command":
      return functionCall(outputIndex, step.callId ?? ids.item("call"), "exec_command", {
        cmd: step.cmd,
        ...(step.workdir === undefined ? {} : { workdir: step.workdir }),
        ...(step.sandboxPermissions === undefined ? {} : { sandbox_permissions: step.sandboxPermissions }),
        ...(step.justification === undefined ? {} : { justification: step.justification }),
        ...(step.yieldTimeMs === undefined ? {} : { yield_time_ms: step.yieldTimeMs })
      })
    case "apply_patch": {
      const id = step.callId ?? ids.item("call")
      const patch = step.patch.endsWith("\n") ? step.patch : `${step.patch}\n`
      return step.form === "custom"
        ? toolCall(outputIndex, { type: "custom_tool_call", call_id: id, name: "apply_patch", input: patch })
        : functionCall(outputIndex, id, "exec_command", { cmd: `apply_patch <<'EOF'\n${patch}EOF\n` })
    }
    case "request_user_input":
      return functionCall(outputIndex, step.callId ?? ids.item("call"), "request_user_input", {
        questions: step.questions
      })
    case "delay":
      return [{ sleepMs: step.ms }]
    case "fail":
    case "incomplete":
    case "disconnect":
    case "http_error":
      return []
  }
}

/** `response.completed`, with usage in the Responses-API shape unless `usage` is null. */
export const completed = (responseId: string, usage: Usage | null): Record<string, unknown> => ({
  type: "response.completed",
  response: {
    id: responseId,
    status: "completed",
    ...(usage === null
      ? {}
      : {
          usage: {
            input_tokens: usage.inputTokens,
            input_tokens_details: { cached_tokens: usage.cachedInputTokens },
            output_tokens: usage.outputTokens,
            output_tokens_details: { reasoning_tokens: usage.reasoningOutputTokens },
            total_tokens: usage.inputTokens + usage.outputTokens
          }
        })
  }
})
