/** @deputy/protocol: the zod schemas deputy speaks, and their types (each schema and its type share a name). */
export {
  emptyUserInputResponse,
  FileChange,
  FileChanges,
  Question,
  QuestionOption,
  ReviewDecision,
  UserInputResponse
} from "./approvals.js"
export {
  AgentMessage,
  AgentMessageDelta,
  AgentReasoning,
  AgentReasoningDelta,
  ApplyPatchApprovalRequest,
  ErrorEvent,
  Event,
  EventMsg,
  type EventMsgOf,
  type EventType,
  ExecApprovalRequest,
  ExecCommandBegin,
  ExecCommandEnd,
  isTurnEnd,
  PatchApplyBegin,
  PatchApplyEnd,
  RequestUserInput,
  SessionConfigured,
  ShutdownComplete,
  SubAgentEnded,
  SubAgentStarted,
  SubAgentStatus,
  ThreadNameUpdated,
  TokenCount,
  TurnAborted,
  TurnAbortReason,
  TurnComplete,
  TurnStarted,
  Warning
} from "./events.js"
export {
  canonicalUuid,
  newThreadId,
  newTurnId,
  ThreadId,
  TurnId
} from "./ids.js"
export {
  jsonSchemas,
  jsonSchemaText
} from "./jsonSchemas.js"
export {
  ExecApprovalOp,
  InterruptOp,
  Op,
  type OpType,
  PatchApprovalOp,
  ShutdownOp,
  Submission,
  UserInputAnswerOp,
  UserInputItem,
  UserInputOp,
  userText
} from "./ops.js"
export {
  INTERRUPTED_TURN_MARKER,
  isInterruptedTurnMarker,
  RolloutEvent,
  RolloutItem,
  RolloutLine,
  RolloutMeta,
  RolloutSubmission,
  RolloutTerminal,
  SessionSource,
  TerminalState
} from "./rollout.js"
export {
  AskStep,
  ExecStep,
  FailStep,
  MessageStep,
  PatchStep,
  ReasoningStep,
  SCRIPT_LIMITS,
  Script,
  type ScriptInput,
  ScriptStep,
  type ScriptStepInput,
  ScriptTurn,
  SleepStep,
  SpawnAgent,
  SpawnStep,
  STEP_TYPES,
  scriptErrorMessage,
  TokenCountStep
} from "./script.js"
export { AgentStatus } from "./status.js"
