/**
 * Fork snapshots (§17–§19): pure functions from a thread's history (its rollout lines after the
 * metadata) to the history a fork starts with. Nothing here does IO or keeps state.
 *
 * A user message is a `user_input` submission. A turn starts at its `user_input` submission (whose
 * id is the turn id) or, failing that, at its `turn_started` event, and ends with `turn_complete` or
 * `turn_aborted`.
 */
import { INTERRUPTED_TURN_MARKER, type RolloutEvent, type RolloutItem } from "@deputy/protocol"

/** How to cut a fork from its source's history. */
export type ForkSnapshot =
  | { readonly type: "truncate_before_nth_user_message"; readonly n: number }
  | { readonly type: "interrupted" }

/** Where a history stands with respect to turns (§19). */
export interface TurnState {
  /** The history ends inside a turn. */
  readonly midTurn: boolean
  /** The unfinished turn's id, when known (from `turn_started`, or the last user message's submission id). */
  readonly activeTurnId: string | undefined
  /** Index of the unfinished turn's first line: its `user_input` submission, else its `turn_started` event. */
  readonly activeTurnStart: number | undefined
}

const isUserMessage = (item: RolloutItem): boolean =>
  item.type === "submission" && item.submission.op.type === "user_input"

/** Index of the last item before `end` that satisfies `test`, or -1. */
const lastIndex = (history: ReadonlyArray<RolloutItem>, end: number, test: (item: RolloutItem) => boolean): number => {
  for (let index = end - 1; index >= 0; index--) if (test(history[index]!)) return index
  return -1
}

const isTurnEndItem = (item: RolloutItem): boolean =>
  item.type === "event" && (item.event.msg.type === "turn_complete" || item.event.msg.type === "turn_aborted")

/** Indexes of the user messages in `history`, in order. */
export const userMessagePositions = (history: ReadonlyArray<RolloutItem>): ReadonlyArray<number> =>
  history.flatMap((item, index) => (isUserMessage(item) ? [index] : []))

/**
 * Whether `history` ends mid-turn (§19): an explicit `turn_started` with no `turn_complete` /
 * `turn_aborted` for it after; or else (histories without turn events, or a last user message whose
 * turn has not started yet) a last user message with no turn end after it.
 */
export const turnState = (history: ReadonlyArray<RolloutItem>): TurnState => {
  let active: { readonly turnId: string; readonly index: number } | undefined
  for (let index = 0; index < history.length; index++) {
    const item = history[index]!
    if (item.type !== "event") continue
    const msg = item.event.msg
    if (msg.type === "turn_started") active = { turnId: msg.turnId, index }
    // A turn end names its turn; an end for an older turn (or one without an id) does not close a newer turn.
    else if (msg.type === "turn_complete" && active?.turnId === msg.turnId) active = undefined
    else if (msg.type === "turn_aborted" && (msg.turnId === undefined || msg.turnId === active?.turnId))
      active = undefined
  }
  if (active !== undefined) {
    const turnId = active.turnId
    const opener = lastIndex(
      history,
      active.index,
      (item) => item.type === "submission" && item.submission.op.type === "user_input" && item.submission.id === turnId
    )
    return { midTurn: true, activeTurnId: turnId, activeTurnStart: opener === -1 ? active.index : opener }
  }
  const lastUser = lastIndex(history, history.length, isUserMessage)
  if (lastUser === -1) return { midTurn: false, activeTurnId: undefined, activeTurnStart: undefined }
  const ended = history.slice(lastUser + 1).some(isTurnEndItem)
  if (ended) return { midTurn: false, activeTurnId: undefined, activeTurnStart: undefined }
  const opener = history[lastUser]!
  return {
    midTurn: true,
    activeTurnId: opener.type === "submission" ? opener.submission.id : undefined,
    activeTurnStart: lastUser
  }
}

/**
 * The history cut before the n-th (0-based) user message (§17). With `n` past the last user message:
 * a source in mid-turn is cut before its unfinished turn (the fork drops it), any other source is
 * kept whole. An empty result means a new thread with no history. `n` must be a non-negative integer.
 */
export const truncateBeforeNthUserMessage = (
  history: ReadonlyArray<RolloutItem>,
  n: number
): ReadonlyArray<RolloutItem> => {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`n must be a non-negative integer, got ${n}`)
  const positions = userMessagePositions(history)
  const cut = positions[n]
  if (cut !== undefined) return history.slice(0, cut)
  const state = turnState(history)
  if (state.midTurn && state.activeTurnStart !== undefined) return history.slice(0, state.activeTurnStart)
  return history
}

/**
 * The history as if its source were interrupted now (§18): when it ends mid-turn, the interrupted-turn
 * marker (a `warning` event whose message is INTERRUPTED_TURN_MARKER) and a `turn_aborted` event
 * (reason `interrupted`), both carrying the turn's id as event id, are appended; otherwise the history
 * is returned unchanged. The appended lines take `at` (default: the last line's time, so the result
 * depends on the history alone).
 */
export const interrupted = (
  history: ReadonlyArray<RolloutItem>,
  options: { readonly at?: string } = {}
): ReadonlyArray<RolloutItem> => {
  const state = turnState(history)
  if (!state.midTurn) return history
  const at = options.at ?? history[history.length - 1]?.at ?? new Date(0).toISOString()
  const id = state.activeTurnId ?? ""
  const marker: RolloutEvent = {
    type: "event",
    at,
    event: { id, msg: { type: "warning", message: INTERRUPTED_TURN_MARKER } }
  }
  const aborted: RolloutEvent = {
    type: "event",
    at,
    event: {
      id,
      msg: {
        type: "turn_aborted",
        reason: "interrupted",
        ...(state.activeTurnId === undefined ? {} : { turnId: state.activeTurnId })
      }
    }
  }
  return [...history, marker, aborted]
}

/** Applies a fork snapshot to a source history. */
export const applyForkSnapshot = (
  history: ReadonlyArray<RolloutItem>,
  snapshot: ForkSnapshot
): ReadonlyArray<RolloutItem> =>
  snapshot.type === "interrupted" ? interrupted(history) : truncateBeforeNthUserMessage(history, snapshot.n)
