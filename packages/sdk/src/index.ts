/**
 * @deputy/sdk: what most users install. The Promise / AsyncIterable API (`Deputy`, `scripted`,
 * `codex`, `codexExec`) is here; the Effect API is re-exported under `@deputy/sdk/core`,
 * `@deputy/sdk/protocol`, `@deputy/sdk/scripted` and `@deputy/sdk/codex`.
 */

export type {
  CancelReport,
  ExecApprovalRequest,
  ForkSnapshot,
  ParentRequest,
  PatchApprovalRequest,
  PendingRequest,
  PolicyInput,
  ShutdownReport,
  ThreadLimits,
  UserInputRequest
} from "@deputy/core"
export type { ScriptInput, UserInputOp, UserInputResponse } from "@deputy/protocol"
export {
  type CodexExecOptions,
  type CodexOptions,
  codex,
  codexExec,
  type DeputyBackend,
  type ScriptedOptions,
  scripted
} from "./backends.js"
export {
  type ApprovalCallback,
  type ApprovalCallbacks,
  type ApprovalContext,
  type ApprovalRecord,
  type ApprovalRequest,
  type ContinueThreadOptions,
  type Decision,
  Deputy,
  type DeputyOptions,
  DeputyThread,
  type RunInput,
  type RunOptions,
  type RunResult,
  type StartThreadOptions,
  type ThreadEvent,
  type Usage,
  type UserInputCallback
} from "./Deputy.js"
export { DeputyError, RunAborted, RunStalled } from "./errors.js"
export {
  formatStressReport,
  type Percentiles,
  STRESS_BACKENDS,
  type StressBackend,
  type StressInvariant,
  type StressOptions,
  type StressReport,
  type StressViolation,
  stress
} from "./stress.js"
