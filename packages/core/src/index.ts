/** @deputy/core: the Agent port, the Parent, and the Delegate. */
export {
  type Agent,
  AgentClosed,
  type Backend,
  type ChildOutcome,
  type ChildRequest,
  type SpawnChild,
  SpawnFailed,
  type SpawnOptions
} from "./Agent.js"
export {
  AnswerMismatch,
  ApprovalRegistry,
  type ApprovalRegistryService,
  type PendingRequest,
  RequestNotPending
} from "./ApprovalRegistry.js"
export { ALLOWED_VARIABLES, childEnvironment } from "./ChildEnvironment.js"
export { ThreadLiveElsewhere } from "./Crashes.js"
export * as Delegate from "./Delegate.js"
export { CallerCannotAnswer } from "./Delegate.js"
export { InvalidInput } from "./errors.js"
/** The scheduler that keeps timers and I/O running while events stream (§37). */
export * as FairScheduler from "./FairScheduler.js"
export {
  applyForkSnapshot,
  type ForkSnapshot,
  interrupted,
  type TurnState,
  truncateBeforeNthUserMessage,
  turnState,
  userMessagePositions
} from "./ForkSnapshot.js"
export { decode, formatIssues } from "./internal/decode.js"
export { deputyHome } from "./internal/home.js"
/** Mailbox operations no yield can split (nothing hangs, issues 12/13). */
export * as Mailboxes from "./Mailboxes.js"
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
  POINTERS_DIR,
  PointerFailed,
  readLastThread,
  readPointer,
  workspacePointerPath,
  writeLastThread,
  writePointer
} from "./Pointer.js"
export {
  decodePolicy,
  describeExecRule,
  ExecRule,
  type ExecVerdict,
  judgeExec,
  PatchRule,
  Policy,
  type PolicyInput,
  policy,
  policyExecDecision,
  policyExecVerdict,
  policyPatchDecision,
  policyUserInputAnswers,
  RuleDecision
} from "./Policy.js"
export * as ProcessSupervisor from "./ProcessSupervisor.js"
export { type ResumeOutcome, resumeWithFallback } from "./Resume.js"
export {
  ARCHIVED_SESSIONS_DIR,
  type RolloutContents,
  type RolloutError,
  RolloutIoFailed,
  type RolloutLocation,
  RolloutNotFound,
  type RolloutPage,
  RolloutStore,
  type RolloutStoreOptions,
  type RolloutStoreService,
  type RolloutSummary,
  RolloutUnreadable,
  type RolloutWarning,
  type RolloutWriter,
  SESSIONS_DIR,
  type WriterOptions
} from "./Rollout.js"
export {
  analyzeCommand,
  type CommandAnalysis,
  type ShellParser,
  ShellParserUnavailable,
  shellParser,
  type Word
} from "./ShellScript.js"
/** An agent's status: the value now and its changes, without a lock (issue 12). */
export * as StatusCell from "./StatusCell.js"
export {
  type CancelReport,
  CapDeadlock,
  DuplicateThreadId,
  DuplicateTurnId,
  type ForkOptions,
  type OpLogEntry,
  type ResumeOptions,
  RolloutPathMismatch,
  SessionConfiguredNotFirst,
  type ShutdownReport,
  SpawnQueueFull,
  type StartOptions,
  type Thread,
  type ThreadLimits,
  ThreadManager,
  type ThreadManagerOptions,
  type ThreadManagerService,
  ThreadNotFound,
  type ThreadStartError,
  TreeCancelled
} from "./ThreadManager.js"
/** One turn at a time for a backend's driver: queued inputs, late-TurnDone checks, status-then-last-event order. */
export * as TurnRunner from "./TurnRunner.js"
export {
  type ConfinedPatch,
  type ConfinedPath,
  confinePatch,
  confinePath,
  OutsideWorkspace,
  realRoots,
  type Workspace
} from "./Workspace.js"
