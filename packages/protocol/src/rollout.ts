/**
 * Rollout lines: the JSONL record of one thread (§20). The first line is the thread's metadata,
 * every later line a submission that went into the agent, an event that came out of it, or a
 * terminal record saying how the thread ended.
 */
import { z } from "zod"
import { Event } from "./events.js"
import { ThreadId } from "./ids.js"
import { Submission } from "./ops.js"

const at = z.iso.datetime({ offset: true })

/** Who started a thread: a person or program at the top, or another thread (a sub-agent, `depth` ≥ 1). */
export const SessionSource = z.discriminatedUnion("type", [
  z.object({ type: z.literal("top_level") }),
  z.object({
    type: z.literal("sub_agent"),
    parentThreadId: ThreadId,
    depth: z.number().int().positive()
  })
])
/** Who started a thread. */
export type SessionSource = z.output<typeof SessionSource>

/** First line of every rollout: the thread's metadata. */
export const RolloutMeta = z.object({
  type: z.literal("meta"),
  threadId: ThreadId,
  /** When the thread was created (ISO 8601). */
  createdAt: at,
  /** The backend's name (`scripted`, `codex`, …). */
  backend: z.string().min(1),
  cwd: z.string(),
  source: SessionSource,
  /** The thread this one was forked from. */
  forkedFromId: ThreadId.optional(),
  /** The backend's own id for this thread (e.g. Codex's thread id), kept beside deputy's. */
  backendThreadId: z.string().min(1).optional(),
  name: z.string().optional()
})
/** First line of every rollout: the thread's metadata. */
export type RolloutMeta = z.output<typeof RolloutMeta>

/** A submission that went into the agent, and when. */
export const RolloutSubmission = z.object({ type: z.literal("submission"), at, submission: Submission })
/** A submission that went into the agent, and when. */
export type RolloutSubmission = z.output<typeof RolloutSubmission>

/** An event that came out of the agent (filtered ones included), and when. */
export const RolloutEvent = z.object({ type: z.literal("event"), at, event: Event })
/** An event that came out of the agent, and when. */
export type RolloutEvent = z.output<typeof RolloutEvent>

/**
 * How a thread ended: `completed` / `aborted` (its last turn ended so and the thread closed),
 * `shutdown` (closed by its owner), `failed` (it could not go on: a bad first event, a backend that
 * died), `crashed` (the deputy process running it died; written at the next start).
 */
export const TerminalState = z.enum(["completed", "aborted", "shutdown", "crashed", "failed"])
/** How a thread ended. */
export type TerminalState = z.output<typeof TerminalState>

/**
 * The last line a thread's writer writes when the thread ends. A resumed thread appends after it,
 * so the thread's current state is its rollout's last terminal line, if that is the last line.
 */
export const RolloutTerminal = z.object({
  type: z.literal("terminal"),
  at,
  state: TerminalState,
  reason: z.string().optional()
})
/** The line that records how a thread ended. */
export type RolloutTerminal = z.output<typeof RolloutTerminal>

/** A line after the metadata: the thread's history is a list of these. */
export const RolloutItem = z.discriminatedUnion("type", [RolloutSubmission, RolloutEvent, RolloutTerminal])
/** A line after the metadata. */
export type RolloutItem = z.output<typeof RolloutItem>

/** Any rollout line. */
export const RolloutLine = z.discriminatedUnion("type", [RolloutMeta, RolloutSubmission, RolloutEvent, RolloutTerminal])
/** Any rollout line. */
export type RolloutLine = z.output<typeof RolloutLine>

/**
 * The interrupted-turn marker (§18): the text of the `warning` event a fork snapshot appends, just
 * before the synthetic `turn_aborted`, when its source was interrupted mid-turn. It mirrors the
 * `<turn_aborted>` marker Codex writes on a real interrupt, so a model reading the history learns
 * the last turn's work may be partial.
 */
export const INTERRUPTED_TURN_MARKER =
  "<turn_aborted>The previous turn was interrupted; any work it started may be partial.</turn_aborted>"

/** True for the interrupted-turn marker line (§18). */
export const isInterruptedTurnMarker = (item: RolloutItem): boolean =>
  item.type === "event" && item.event.msg.type === "warning" && item.event.msg.message === INTERRUPTED_TURN_MARKER
