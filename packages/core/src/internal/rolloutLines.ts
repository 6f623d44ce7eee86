/**
 * The rollout's `event` lines, built by hand for the hot event types (issue 12): `JSON.stringify` of
 * the whole line was the largest part of the rollout's cost. A builder applies only to an event whose
 * objects have exactly the known keys, in the known order, with string values; anything else falls
 * back to `JSON.stringify`, so the line is always byte-for-byte what `JSON.stringify` would write
 * (a property test holds the builders to that). Strings are escaped by `JSON.stringify` itself.
 */
import type { Event, EventMsg } from "@deputy/protocol"

/** Streaming deltas: not persisted (§2, as in Codex's rollout policy); the completed item is. */
export const NOT_PERSISTED: ReadonlySet<EventMsg["type"]> = new Set(["agent_message_delta", "agent_reasoning_delta"])

/** A hot event type's keys in order, and how many of them are required (the rest optional strings). */
interface Shape {
  readonly keys: ReadonlyArray<string>
  readonly required: number
}

const SHAPES: ReadonlyMap<string, Shape> = new Map([
  ["agent_message", { keys: ["type", "message"], required: 2 }],
  ["agent_reasoning", { keys: ["type", "text"], required: 2 }],
  ["turn_started", { keys: ["type", "turnId"], required: 2 }],
  ["turn_complete", { keys: ["type", "turnId", "lastAgentMessage"], required: 2 }]
])
const EVENT_SHAPE: Shape = { keys: ["id", "msg"], required: 2 }

// What JSON.stringify escapes in a string: quote, backslash, control characters and (well-formed
// JSON.stringify) any surrogate, paired or lone; a string without them is written as is.
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are exactly the characters JSON.stringify escapes
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/
const quote = (text: string): string => (NEEDS_ESCAPE.test(text) ? JSON.stringify(text) : `"${text}"`)

const isPlain = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && Object.getPrototypeOf(value) === Object.prototype

/** `"k":"v",…` of an object of string values with exactly `shape`'s keys in order; undefined otherwise. */
const stringMembers = (value: Record<string, unknown>, shape: Shape): string | undefined => {
  let out = ""
  let i = 0
  for (const key in value) {
    if (key !== shape.keys[i]) return undefined
    const member = value[key]
    if (typeof member !== "string") return undefined
    out += `${i === 0 ? "" : ","}"${key}":${quote(member)}`
    i++
  }
  return i >= shape.required ? out : undefined
}

/** The hand-built `{"id":…,"msg":{…}}` of a hot event, or undefined. */
const hotEvent = (event: Event): string | undefined => {
  if (!isPlain(event) || !isPlain(event.msg)) return undefined
  const shape = SHAPES.get(event.msg.type)
  if (shape === undefined) return undefined
  let keys = 0
  for (const key in event) if (key !== EVENT_SHAPE.keys[keys++]) return undefined
  if (keys !== 2 || typeof event.id !== "string") return undefined
  const msg = stringMembers(event.msg, shape)
  return msg === undefined ? undefined : `{"id":${quote(event.id)},"msg":{${msg}}}`
}

/** The line (newline included) recording `event` at `at` (an ISO timestamp). */
export const eventLine = (at: string, event: Event): string =>
  `{"type":"event","at":"${at}","event":${hotEvent(event) ?? JSON.stringify(event)}}\n`
