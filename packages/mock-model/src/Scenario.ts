/**
 * The scenario: what the mock model answers. zod owns the file format (JSON or YAML); every other module trusts the
 * decoded `Scenario`. Wire `type` values are snake_case, every other field camelCase.
 */
import { z } from "zod"

const callId = z.string().min(1)

/** An assistant message, streamed as `deltas` `response.output_text.delta` events, `deltaDelayMs` apart. */
export const MessageStep = z.strictObject({
  type: z.literal("message"),
  text: z.string(),
  deltas: z.number().int().min(1).max(10_000).default(1),
  deltaDelayMs: z.number().int().nonnegative().max(600_000).default(0),
  id: z.string().min(1).optional()
})

/** A reasoning item: a summary (streamed as summary deltas) and/or raw reasoning text. */
export const ReasoningStep = z
  .strictObject({
    type: z.literal("reasoning"),
    summary: z.string().optional(),
    text: z.string().optional(),
    id: z.string().min(1).optional()
  })
  .refine((step) => step.summary !== undefined || step.text !== undefined, {
    message: "reasoning needs a summary or a text",
    path: ["summary"]
  })

/** Any function call. `arguments` is sent as a JSON string; `namespace` is needed for e.g. `multi_agent_v1` tools. */
export const FunctionCallStep = z.strictObject({
  type: z.literal("function_call"),
  name: z.string().min(1),
  arguments: z.union([z.string(), z.record(z.string(), z.unknown())]).default({}),
  callId: callId.optional(),
  namespace: z.string().min(1).optional()
})

/** Codex 0.169's `exec_command` tool (unified exec). `sandboxPermissions: "require_escalated"` asks for approval. */
export const ExecCommandStep = z.strictObject({
  type: z.literal("exec_command"),
  cmd: z.string().min(1),
  callId: callId.optional(),
  workdir: z.string().min(1).optional(),
  sandboxPermissions: z.enum(["use_default", "require_escalated"]).optional(),
  justification: z.string().optional(),
  yieldTimeMs: z.number().int().nonnegative().optional()
})

/**
 * An apply_patch call. `form: "custom"` is the freeform custom tool call (Codex offers it only for models whose
 * catalog entry says `apply_patch_tool_type: "freeform"`, see `writeCodexConfig({ applyPatchTool: true })`);
 * `form: "exec"` sends `apply_patch <<'EOF' … EOF` through exec_command, which Codex intercepts with no config at all.
 */
export const ApplyPatchStep = z.strictObject({
  type: z.literal("apply_patch"),
  patch: z.string().startsWith("*** Begin Patch"),
  form: z.enum(["custom", "exec"]).default("custom"),
  callId: callId.optional()
})

/** One option of a request_user_input question. */
export const UserInputOption = z.strictObject({ label: z.string().min(1), description: z.string().default("") })

/** One request_user_input question. */
export const UserInputQuestion = z.strictObject({
  id: z.string().min(1),
  header: z.string().default(""),
  question: z.string().min(1),
  options: z.array(UserInputOption).optional()
})

/** Codex's `request_user_input` tool (needs plan mode or `[features] default_mode_request_user_input=true`). */
export const RequestUserInputStep = z.strictObject({
  type: z.literal("request_user_input"),
  questions: z.array(UserInputQuestion).min(1),
  callId: callId.optional()
})

/** Waits before the next step; with nothing streamed yet, before the HTTP headers too. */
export const DelayStep = z.strictObject({ type: z.literal("delay"), ms: z.number().int().nonnegative().max(600_000) })

/** Ends the stream with `response.failed` (Codex: `stream disconnected before completion: <message>`). */
export const FailStep = z.strictObject({
  type: z.literal("fail"),
  code: z.string().min(1).default("server_error"),
  message: z.string().default("mock failure")
})

/** Ends the stream with `response.incomplete` (Codex: `Incomplete response returned, reason: <reason>`). */
export const IncompleteStep = z.strictObject({ type: z.literal("incomplete"), reason: z.string().min(1) })

/** Closes the stream without `response.completed`. */
export const DisconnectStep = z.strictObject({ type: z.literal("disconnect") })

/** Answers with an HTTP error status instead of a stream. Only delays may come before it. */
export const HttpErrorStep = z.strictObject({
  type: z.literal("http_error"),
  status: z.number().int().min(400).max(599),
  body: z.string().optional()
})

/** One thing a response does. */
export const Step = z.discriminatedUnion("type", [
  MessageStep,
  ReasoningStep,
  FunctionCallStep,
  ExecCommandStep,
  ApplyPatchStep,
  RequestUserInputStep,
  DelayStep,
  FailStep,
  IncompleteStep,
  DisconnectStep,
  HttpErrorStep
])
/** One thing a response does. */
export type Step = z.output<typeof Step>

/** Token usage reported in `response.completed`. */
export const Usage = z.strictObject({
  inputTokens: z.number().int().nonnegative(),
  cachedInputTokens: z.number().int().nonnegative().default(0),
  outputTokens: z.number().int().nonnegative(),
  reasoningOutputTokens: z.number().int().nonnegative().default(0)
})
/** Token usage reported in `response.completed`. */
export type Usage = z.output<typeof Usage>

/** What a request must contain for a response to answer it; every given condition must hold. */
export const Match = z
  .strictObject({
    /** The text of the last `role: "user"` message in `input` contains this. */
    lastUserMessageContains: z.string().min(1).optional(),
    /** `input` has a `function_call_output` or `custom_tool_call_output` for this call id. */
    callOutput: callId.optional(),
    /** …whose output text contains this (needs `callOutput`). */
    callOutputContains: z.string().min(1).optional(),
    /** The request body, as JSON text, contains this. */
    bodyContains: z.string().min(1).optional()
  })
  .refine((m) => Object.values(m).some((v) => v !== undefined), { message: "match needs at least one condition" })
  .refine((m) => m.callOutputContains === undefined || m.callOutput !== undefined, {
    message: "callOutputContains needs callOutput",
    path: ["callOutputContains"]
  })
/** What a request must contain for a response to answer it. */
export type Match = z.output<typeof Match>

const terminal = new Set(["fail", "incomplete", "disconnect", "http_error"])

/** One scripted model response. */
export const MockResponse = z
  .strictObject({
    /** Shown in the request log and in errors; defaults to `responses.<index>`. */
    name: z.string().min(1).optional(),
    /** Without `match` the response answers the next request in order; with it, the first request that matches. */
    match: Match.optional(),
    /** How many requests this response answers before it is used up. */
    times: z.number().int().min(1).default(1),
    /** `null` sends no usage (Codex then sends no token-usage notification). */
    usage: Usage.nullable().default({
      inputTokens: 100,
      cachedInputTokens: 0,
      outputTokens: 10,
      reasoningOutputTokens: 0
    }),
    steps: z.array(Step).min(1)
  })
  .superRefine((response, ctx) => {
    response.steps.forEach((step, i) => {
      if (terminal.has(step.type) && i !== response.steps.length - 1) {
        ctx.addIssue({ code: "custom", message: `${step.type} must be the last step`, path: ["steps", i, "type"] })
      }
      if (step.type === "http_error" && response.steps.slice(0, i).some((s) => s.type !== "delay")) {
        ctx.addIssue({ code: "custom", message: "only delays may come before http_error", path: ["steps", i, "type"] })
      }
    })
  })
/** One scripted model response. */
export type MockResponse = z.output<typeof MockResponse>

/** The whole script of a mock model. */
export const Scenario = z.strictObject({
  responses: z.array(MockResponse),
  /** HTTP status for a request that no response matches (the body names the request). */
  unmatchedStatus: z.number().int().min(400).max(599).default(400)
})
/** The whole script of a mock model, decoded. */
export type Scenario = z.output<typeof Scenario>
/** The whole script of a mock model, as written (defaults may be left out). */
export type ScenarioInput = z.input<typeof Scenario>
