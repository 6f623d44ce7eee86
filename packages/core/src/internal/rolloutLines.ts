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
import type { Event, EventMsg } from "@deputy/protocol"

/** Streaming deltas: not persisted (§2, as in Codex's rollout policy); the completed item is. */
export const NOT_PERSISTED: ReadonlySet<EventMsg["type"]> = new Set(["agent_message_delta", "agent_reasoning_delta"])

/** True when an event of this type is written to the rollout (§2: not a streaming delta). */
export const isPersisted = (type: string): boolean => type !== "agent_message_delta" && type !== "agent_reasoning_delta"

// What JSON.stringify escapes in a string: quote, backslash, control characters and (well-formed
// JSON.stringify) any surrogate, paired or lone; a string without them is written as is.
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are exactly the characters JSON.stringify escapes
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/
const quote = (text: string): string => (NEEDS_ESCAPE.test(text) ? JSON.stringify(text) : `"${text}"`)

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

/** `{"type":"<type>","<key>":"<value>"}` of a message with exactly these two string members, or undefined. */
const twoMembers = (msg: Record<string, unknown>, type: string, key: string, value: unknown): string | undefined =>
  typeof value === "string" && keysInOrder(msg, "type", key) === 2
    ? `{"type":"${type}","${key}":${quote(value)}}`
    : undefined

/** The hand-built `{"type":…,…}` of a hot event's `msg`, or undefined. */
const hotMsg = (msg: Record<string, unknown>): string | undefined => {
  switch (msg.type) {
    case "agent_message":
      return twoMembers(msg, "agent_message", "message", msg.message)
    case "agent_reasoning":
      return twoMembers(msg, "agent_reasoning", "text", msg.text)
    case "turn_started":
      return twoMembers(msg, "turn_started", "turnId", msg.turnId)
    case "turn_complete": {
      const { turnId, lastAgentMessage } = msg
      if (typeof turnId !== "string") return undefined
      const keys = keysInOrder(msg, "type", "turnId", "lastAgentMessage")
      if (keys === 2) return `{"type":"turn_complete","turnId":${quote(turnId)}}`
      if (keys !== 3 || typeof lastAgentMessage !== "string") return undefined
      return `{"type":"turn_complete","turnId":${quote(turnId)},"lastAgentMessage":${quote(lastAgentMessage)}}`
    }
    default:
      return undefined
  }
}

/** The hand-built `{"id":…,"msg":{…}}` of a hot event, or undefined. */
const hotEvent = (event: Event): string | undefined => {
  const { id, msg } = event
  if (typeof id !== "string" || !isPlain(event) || !isPlain(msg) || keysInOrder(event, "id", "msg") !== 2) {
    return undefined
  }
  const body = hotMsg(msg)
  return body === undefined ? undefined : `{"id":${quote(id)},"msg":${body}}`
}

/** The JSON of `event`, as `JSON.stringify` writes it. */
export const eventJson = (event: Event): string => hotEvent(event) ?? JSON.stringify(event)

/** What every event line recorded at `at` (an ISO timestamp) starts with; the event's JSON and `}\n` follow. */
export const eventLinePrefix = (at: string): string => `{"type":"event","at":"${at}","event":`

/** The line (newline included) recording `event` at `at` (an ISO timestamp). */
export const eventLine = (at: string, event: Event): string => `${eventLinePrefix(at)}${eventJson(event)}}\n`
