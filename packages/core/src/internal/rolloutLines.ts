/**
 * The rollout's `event` lines, built by hand for the hot event types (issue 12): `JSON.stringify` of
 * the whole line was the largest part of the rollout's cost. A builder applies only to an event whose
 * objects are plain, have exactly the known keys, in the known order, with string values; anything else
 * falls back to `JSON.stringify`, so the line is always byte-for-byte what `JSON.stringify` would write
 * (a property test holds the builders to that). Strings are escaped by `JSON.stringify` itself.
 *
 * Each builder reads its fields by name: a generic builder reading `value[key]` over a table of shapes
 * cost twice as much (a keyed load per field), and its line was most of the rollout's time.
 */
import type { Event } from "@deputy/protocol"
import type { PendingLines } from "./pendingLines.js"
import { encodeUtf8 } from "./rolloutFile.js"

/**
 * True when an event of this type is written to the rollout: streaming deltas are not (§2, as in
 * Codex's rollout policy); the completed item is.
 */
export const isPersisted = (type: string): boolean => type !== "agent_message_delta" && type !== "agent_reasoning_delta"

// What JSON.stringify escapes in a string: quote, backslash, control characters and (well-formed
// JSON.stringify) any surrogate, paired or lone; a string without them is written as is.
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are exactly the characters JSON.stringify escapes
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/
/** Up to this length a loop over the characters beats the regular expression (a turn's short messages, ids). */
const SHORT = 24
/** True when JSON.stringify writes `text` as `"<text>"`, unchanged. */
const isVerbatim = (text: string): boolean => {
  if (text.length > SHORT) return !NEEDS_ESCAPE.test(text)
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code < 0x20 || code === 0x22 || code === 0x5c || (code >= 0xd800 && code <= 0xdfff)) return false
  }
  return true
}

const isPlain = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && Object.getPrototypeOf(value) === Object.prototype

/**
 * How many enumerable keys `value` has (own or inherited, as `for…in` sees them) when its first ones
 * are `first`, `second` and (if given) `third`, in that order; -1 as soon as one differs.
 */
const keysInOrder = (value: object, first: string, second: string, third?: string): number => {
  let count = 0
  for (const key in value) {
    const expected = count === 0 ? first : count === 1 ? second : count === 2 ? third : undefined
    if (key !== expected) return -1
    count++
  }
  return count
}

// Each line is one template: a line nested from smaller templates is a deeper tree of string pieces,
// and flattening that tree to encode the batch cost three times the encoding itself.

/** The line of an event whose `msg` is `{ type, <key>: value }` exactly, or undefined. */
const twoMemberLine = (
  prefix: string,
  id: string,
  msg: Record<string, unknown>,
  type: string,
  key: string,
  value: unknown
): string | undefined => {
  if (typeof value !== "string" || keysInOrder(msg, "type", key) !== 2) return undefined
  return isVerbatim(id) && isVerbatim(value)
    ? `${prefix}{"id":"${id}","msg":{"type":"${type}","${key}":"${value}"}}}\n`
    : `${prefix}{"id":${JSON.stringify(id)},"msg":{"type":"${type}","${key}":${JSON.stringify(value)}}}}\n`
}

/** The line of a `turn_complete` event (`lastAgentMessage` optional), or undefined. */
const turnCompleteLine = (prefix: string, id: string, msg: Record<string, unknown>): string | undefined => {
  const { turnId, lastAgentMessage } = msg
  if (typeof turnId !== "string") return undefined
  const keys = keysInOrder(msg, "type", "turnId", "lastAgentMessage")
  const head = `${prefix}{"id":${JSON.stringify(id)},"msg":{"type":"turn_complete","turnId":${JSON.stringify(turnId)}`
  if (keys === 2) return `${head}}}}\n`
  if (keys !== 3 || typeof lastAgentMessage !== "string") return undefined
  return `${head},"lastAgentMessage":${JSON.stringify(lastAgentMessage)}}}}\n`
}

/** The hand-built line of a hot event, or undefined. */
const hotLine = (prefix: string, event: Event): string | undefined => {
  const { id, msg } = event
  if (typeof id !== "string" || !isPlain(event) || !isPlain(msg) || keysInOrder(event, "id", "msg") !== 2) {
    return undefined
  }
  switch (msg.type) {
    case "agent_message":
      return twoMemberLine(prefix, id, msg, "agent_message", "message", msg.message)
    case "agent_reasoning":
      return twoMemberLine(prefix, id, msg, "agent_reasoning", "text", msg.text)
    case "turn_started":
      return twoMemberLine(prefix, id, msg, "turn_started", "turnId", msg.turnId)
    case "turn_complete":
      return turnCompleteLine(prefix, id, msg)
    default:
      return undefined
  }
}

/** What every event line recorded at `at` (an ISO timestamp) starts with; the event's JSON and `}\n` follow. */
export const eventLinePrefix = (at: string): string => `{"type":"event","at":"${at}","event":`

/** The line (newline included) recording `event` after `prefix` (from `eventLinePrefix`). */
export const eventLineAfter = (prefix: string, event: Event): string =>
  hotLine(prefix, event) ?? `${prefix}${JSON.stringify(event)}}\n`

/** The line (newline included) recording `event` at `at` (an ISO timestamp). */
export const eventLine = (at: string, event: Event): string => eventLineAfter(eventLinePrefix(at), event)

/** The key of a two-member hot event's value, by type; undefined for any other type. */
const valueKey = (type: unknown): string | undefined => {
  switch (type) {
    case "agent_message":
      return "message"
    case "agent_reasoning":
      return "text"
    case "turn_started":
      return "turnId"
    default:
      return undefined
  }
}

/**
 * True when `value`'s enumerable keys (own or inherited, as `for…in` sees them) are exactly `first`
 * then `second`: `keysInOrder` for the batch builder's two-key objects, with nothing to compute per key.
 */
const twoKeys = (value: object, first: string, second: string): boolean => {
  let count = 0
  for (const key in value) {
    // A third key differs from `second` (keys are unique), so it ends the loop here too.
    if (key !== (count === 0 ? first : second)) return false
    count++
  }
  return count === 2
}

/** The value of a two-member hot event's `msg`, read by name. */
const memberValue = (msg: Record<string, unknown>, key: string): unknown =>
  key === "message" ? msg.message : key === "text" ? msg.text : msg.turnId

/**
 * The lines of one batch recorded at `at`: the same lines as `eventLine`, but a run of hot events of
 * one id and type (a turn's messages) shares its lines' head, `…"event":{"id":…,"msg":{"type":…,
 * "<key>":"`, built once. Built from a dozen pieces, a batch's lines cost more to build and again to
 * flatten when encoded (issue 12); with a shared head a line is three pieces, or, copied as bytes
 * (`appendEventLines`), no string at all.
 */
class BatchLines {
  private readonly prefix: string
  private lastId: string | undefined = undefined
  private lastType: unknown = undefined
  /** The head of the current run, flat (join builds one string; a template would be a tree to walk again). */
  private head = ""
  private bytes: Uint8Array | undefined = undefined

  constructor(at: string) {
    this.prefix = eventLinePrefix(at)
  }

  /** The value of a hot event that needs no escaping (the run's head is then its line's head); else undefined. */
  hotValue(event: Event): string | undefined {
    const { id, msg } = event
    if (typeof id !== "string" || !twoKeys(event, "id", "msg") || !isPlain(event) || !isPlain(msg)) return undefined
    const type = msg.type
    const key = valueKey(type)
    if (key === undefined) return undefined
    const value = memberValue(msg, key)
    if (typeof value !== "string" || !twoKeys(msg, "type", key) || !isVerbatim(value)) return undefined
    if (id !== this.lastId || type !== this.lastType) {
      this.head = [this.prefix, '{"id":', JSON.stringify(id), ',"msg":{"type":"', type, '","', key, '":"'].join("")
      this.bytes = undefined
      this.lastId = id
      this.lastType = type
    }
    return value
  }

  /** The run's head as UTF-8, after `hotValue` accepted an event. */
  headBytes(): Uint8Array {
    this.bytes ??= encodeUtf8(this.head)
    return this.bytes
  }

  /** The line (newline included) recording `event`. */
  line(event: Event): string {
    const value = this.hotValue(event)
    return value === undefined ? eventLineAfter(this.prefix, event) : `${this.head}${value}"}}}\n`
  }
}

/** The line builder of one batch recorded at `at` (see BatchLines): the same lines as `eventLine`. */
export const lineBuilder = (at: string): ((event: Event) => string) => {
  const lines = new BatchLines(at)
  return (event) => lines.line(event)
}

/** A batch at least this long has its hot lines copied as bytes into a slab (pendingLines.ts); a shorter one is one string. */
const COPIED_BATCH = 64

/** True when an event of this type ends a turn (or the thread): the rollout flushes at it. */
export const isTurnBoundary = (type: string): boolean =>
  type === "turn_complete" || type === "turn_aborted" || type === "shutdown_complete"

/**
 * Buffers the lines of `events` (recorded at `at`) in `pending`, in order, skipping what is not
 * persisted (§2). Returns true when one of them ends a turn. A short batch is one string, encoded at
 * once. A long one (a streaming backend's) has its hot ASCII lines copied into a slab as bytes, and
 * any other line goes in as text, in between.
 */
export const appendEventLines = (pending: PendingLines, at: string, events: ReadonlyArray<Event>): boolean => {
  const lines = new BatchLines(at)
  const copied = events.length >= COPIED_BATCH
  let text = ""
  let boundary = false
  for (const event of events) {
    const type = event.msg.type
    if (!isPersisted(type)) continue
    if (isTurnBoundary(type)) boundary = true
    if (copied) {
      const value = lines.hotValue(event)
      if (value !== undefined) {
        if (text !== "") {
          pending.push(text) // the lines before it, in order
          text = ""
        }
        if (pending.pushLine(lines.headBytes(), value)) continue
      }
    }
    text += lines.line(event)
  }
  if (text !== "") pending.push(text)
  pending.settle()
  return boundary
}
