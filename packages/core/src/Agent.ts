/**
 * The Agent port: what every backend implements. An agent lives in the Scope it was spawned in;
 * closing that scope releases whatever it holds (a fiber, a child process).
 */
import type { AgentStatus, Event, RolloutItem, SubAgentStatus, Submission, ThreadId } from "@deputy/protocol"
import { Data, type Effect, type Mailbox, type Scope, type Subscribable } from "effect"
import type { Workspace } from "./Workspace.js"

/** The agent took no more ops: it was shut down, or its backend ended. */
export class AgentClosed extends Data.TaggedError("AgentClosed")<{ readonly threadId: string }> {
  override get message() {
    return `agent ${this.threadId} takes no more ops`
  }
}

/** A backend could not start an agent. */
export class SpawnFailed extends Data.TaggedError("SpawnFailed")<{
  readonly backend: string
  readonly reason: string
  readonly cause?: unknown
  /** The thread id the agent would have had, when one was chosen (a nested sub-agent's, §35). */
  readonly threadId?: ThreadId
}> {
  override get message() {
    return `${this.backend} could not start an agent: ${this.reason}`
  }
}

/** One running sub-agent, as its backend exposes it. */
export interface Agent {
  /** The deputy thread this agent serves. */
  readonly threadId: ThreadId
  /** The backend's name (`scripted`, `codex`, …). */
  readonly backend: string
  /** Hands a submission to the agent; fails with AgentClosed once it takes no more. Never waits for the work. */
  readonly submit: (submission: Submission) => Effect.Effect<void, AgentClosed>
  /**
   * The agent's events, in order. Read with `take` / `takeAll`; it ends (done) after the agent's last
   * event (`shutdown_complete`, or the backend's end).
   */
  readonly events: Mailbox.ReadonlyMailbox<Event>
  /** The agent's status now, and its changes. */
  readonly status: Subscribable.Subscribable<AgentStatus>
  /** Where its patches may write (§28); the delegate denies a patch outside it. Default: `process.cwd()` alone. */
  readonly workspace?: Workspace
}

/** What a backend needs to start one agent. Backend-specific settings go in the backend's own constructor. */
export interface SpawnOptions {
  /** The thread id to use; a fresh one when absent. Already canonical. */
  readonly threadId?: ThreadId
  /** The working directory for the agent's commands and patches. */
  readonly cwd?: string
  /** Directories besides `cwd` the agent's patches may write to (§28). */
  readonly writableRoots?: ReadonlyArray<string>
  /** For a resumed or forked thread: its history so far (rollout lines after the metadata); the agent goes on after it. */
  readonly history?: ReadonlyArray<RolloutItem>
  /** For a resumed thread: the backend's own id for it (e.g. Codex's thread id), from the rollout metadata. */
  readonly backendThreadId?: string
  /**
   * Starts a nested sub-agent of this thread (given when the agent runs under a ThreadManager). The
   * child's approvals climb to the same Parent as this thread's; interrupting the wait cancels the
   * child's whole subtree.
   */
  readonly spawnChild?: SpawnChild
  /** How deep this thread is: 0 (the default) at the top, its parent's depth + 1 for a nested sub-agent. */
  readonly depth?: number
}

/** What an agent asks for when it spawns a nested sub-agent. */
export interface ChildRequest<R> {
  /** The backend the child runs on. */
  readonly backend: Backend<R>
  /** The child's first (and only) user input: it runs one turn. */
  readonly input: string
  /** The child's name, shown with its approval requests. */
  readonly name?: string
  /** Called once with the child's thread id as soon as the child exists, before its turn runs. */
  readonly onStarted?: (threadId: ThreadId) => Effect.Effect<void>
}

/** How a nested sub-agent's one turn ended. */
export interface ChildOutcome {
  readonly threadId: ThreadId
  readonly status: SubAgentStatus
  readonly lastAgentMessage?: string
}

/** Runs one nested sub-agent for one turn and waits for it; fails only when it cannot be started. */
export type SpawnChild = <R>(request: ChildRequest<R>) => Effect.Effect<ChildOutcome, SpawnFailed, R>

/** A way to make agents: `scripted`, `codex`, `codex-exec`, … */
export interface Backend<R = never> {
  /** The backend's name, recorded in rollouts and `session_configured`. */
  readonly name: string
  /** Starts one agent in the caller's scope. Its first event is `session_configured`. */
  readonly spawn: (options: SpawnOptions) => Effect.Effect<Agent, SpawnFailed, Scope.Scope | R>
}
