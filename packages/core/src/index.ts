/** @deputy/core: the Agent port, the Parent, and the Delegate. */
export { type Agent, AgentClosed, type Backend, SpawnFailed, type SpawnOptions } from "./Agent.js"
export * as Delegate from "./Delegate.js"
export { InvalidInput } from "./errors.js"
export { decode, formatIssues } from "./internal/decode.js"
export {
  type ExecApprovalRequest,
  NoAnswer,
  Parent,
  type ParentCallbacks,
  type ParentError,
  ParentFailed,
  ParentLog,
  type ParentLogEntry,
  type ParentRequest,
  type ParentService,
  type PatchApprovalRequest,
  type UserInputRequest
} from "./Parent.js"
export {
  decodePolicy,
  ExecRule,
  PatchRule,
  Policy,
  type PolicyInput,
  policy,
  policyExecDecision,
  policyPatchDecision,
  policyUserInputAnswers
} from "./Policy.js"
