import {
  type EventMsg,
  INTERRUPTED_TURN_MARKER,
  isInterruptedTurnMarker,
  RolloutItem,
  type RolloutItem as RolloutItemType,
  userText
} from "@deputy/protocol"
import { assert, describe, it } from "@effect/vitest"
import {
  applyForkSnapshot,
  interrupted,
  truncateBeforeNthUserMessage,
  turnState,
  userMessagePositions
} from "../src/ForkSnapshot.js"

const at = "2026-11-22T01:14:33.000Z"
const user = (id: string, text = id): RolloutItemType => ({
  type: "submission",
  at,
  submission: { id, op: userText(text) }
})
const event = (id: string, msg: EventMsg): RolloutItemType => ({ type: "event", at, event: { id, msg } })
const started = (turnId: string) => event(turnId, { type: "turn_started", turnId })
const said = (turnId: string, message: string) => event(turnId, { type: "agent_message", message })
const completed = (turnId: string) => event(turnId, { type: "turn_complete", turnId })
const aborted = (turnId: string) => event(turnId, { type: "turn_aborted", turnId, reason: "interrupted" })

/** Two finished turns, then a third in progress. */
const finished = [
  user("t1"),
  started("t1"),
  said("t1", "one"),
  completed("t1"),
  user("t2"),
  started("t2"),
  aborted("t2")
]
const midTurn = [...finished, user("t3"), started("t3"), said("t3", "half")]

describe("ForkSnapshot", () => {
  it("§17 truncation cuts before the n-th (0-based) user message", () => {
    assert.deepStrictEqual(userMessagePositions(finished), [0, 4])
    assert.deepStrictEqual(truncateBeforeNthUserMessage(finished, 0), [])
    assert.deepStrictEqual(truncateBeforeNthUserMessage(finished, 1), finished.slice(0, 4))
    assert.deepStrictEqual(truncateBeforeNthUserMessage(midTurn, 2), finished)
  })

  it("§17 truncation past the end keeps a history that ends at a turn boundary whole", () => {
    assert.deepStrictEqual(truncateBeforeNthUserMessage(finished, 2), finished)
    assert.deepStrictEqual(truncateBeforeNthUserMessage(finished, 99), finished)
    assert.deepStrictEqual(truncateBeforeNthUserMessage([], 0), [])
  })

  it("§17 truncation past the end of a mid-turn source cuts before the active turn's start", () => {
    assert.deepStrictEqual(truncateBeforeNthUserMessage(midTurn, 3), finished)
    assert.deepStrictEqual(truncateBeforeNthUserMessage(midTurn, 99), finished)
    // The turn's start is its turn_started event when its user message is not in the history.
    const startedOnly = [...finished, said("x", "noise"), started("t3"), said("t3", "half")]
    assert.deepStrictEqual(truncateBeforeNthUserMessage(startedOnly, 2), [...finished, said("x", "noise")])
  })

  it("§17 truncation refuses a negative or fractional n", () => {
    assert.throws(() => truncateBeforeNthUserMessage(finished, -1), RangeError)
    assert.throws(() => truncateBeforeNthUserMessage(finished, 1.5), RangeError)
  })

  it("§18 interrupting a mid-turn snapshot appends the marker and turn_aborted (interrupted) for that turn", () => {
    const snapshot = interrupted(midTurn)
    assert.deepStrictEqual(snapshot.slice(0, midTurn.length), midTurn)
    const [marker, abort] = snapshot.slice(midTurn.length)
    assert.deepStrictEqual(marker, event("t3", { type: "warning", message: INTERRUPTED_TURN_MARKER }))
    assert.deepStrictEqual(abort, event("t3", { type: "turn_aborted", turnId: "t3", reason: "interrupted" }))
    assert.isTrue(isInterruptedTurnMarker(marker!))
    assert.isFalse(turnState(snapshot).midTurn)
    // The appended lines are valid rollout lines.
    for (const line of snapshot) assert.isTrue(RolloutItem.safeParse(JSON.parse(JSON.stringify(line))).success)
  })

  it("§18 interrupting a snapshot at a turn boundary leaves it unchanged", () => {
    assert.strictEqual(interrupted(finished), finished)
    assert.deepStrictEqual(interrupted([]), [])
    assert.deepStrictEqual(applyForkSnapshot(finished, { type: "interrupted" }), finished)
  })

  it("§19 a history without turn events is mid-turn when its last user message has no turn end after it", () => {
    const bare = [user("a"), said("a", "reply"), completed("a"), user("b"), said("b", "thinking")]
    assert.deepStrictEqual(turnState(bare), { midTurn: true, activeTurnId: "b", activeTurnStart: 3 })
    assert.deepStrictEqual(truncateBeforeNthUserMessage(bare, 5), bare.slice(0, 3))
    const snapshot = interrupted(bare, { at: "2026-11-22T02:00:00.000Z" })
    assert.deepStrictEqual(snapshot.slice(-1), [
      {
        type: "event",
        at: "2026-11-22T02:00:00.000Z",
        event: { id: "b", msg: { type: "turn_aborted", turnId: "b", reason: "interrupted" } }
      }
    ])
    const done = bare.slice(0, 3)
    assert.isFalse(turnState(done).midTurn)
    assert.strictEqual(interrupted(done), done)
  })

  it("§19 an explicit active turn is mid-turn even after a user message that steered it", () => {
    const steered = [user("t1"), started("t1"), user("steer"), said("t1", "ok")]
    assert.deepStrictEqual(turnState(steered), { midTurn: true, activeTurnId: "t1", activeTurnStart: 0 })
    assert.deepStrictEqual(applyForkSnapshot(steered, { type: "truncate_before_nth_user_message", n: 2 }), [])
    assert.deepStrictEqual(applyForkSnapshot(steered, { type: "truncate_before_nth_user_message", n: 1 }), [
      user("t1"),
      started("t1")
    ])
    // A turn end for an older turn does not end the newer one.
    const stale = [user("t1"), started("t1"), user("t2"), started("t2"), completed("t1")]
    assert.deepStrictEqual(turnState(stale), { midTurn: true, activeTurnId: "t2", activeTurnStart: 2 })
  })
})
