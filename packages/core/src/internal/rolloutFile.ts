/**
 * Pure helpers for rollout files: file names, line encoding, and the one-pass parser that turns a
 * file's bytes into its metadata, its readable lines and a warning for every line it had to skip.
 */
import { RolloutItem, RolloutMeta } from "@deputy/protocol"
import { Either } from "effect"
import { formatIssues } from "./decode.js"

/** A line the reader skipped, and why. `line` is 1-based. */
export interface RolloutWarning {
  readonly path: string
  readonly line: number
  readonly kind: "torn_last_line" | "unterminated_last_line" | "invalid_json" | "invalid_line" | "invalid_utf8"
  /** `<path>:<line>: <what was wrong>` */
  readonly message: string
}

/** Why a rollout cannot be used at all (empty, or no readable metadata line). */
export interface ParseFailure {
  readonly line?: number
  readonly reason: string
  /** The lines that were still readable (line 1 too, when it is a submission or event): nothing saved is lost. */
  readonly readable: ReadonlyArray<RolloutItem>
}

/** What `parseRollout` returns on success. */
export interface ParsedRollout {
  readonly meta: RolloutMeta
  readonly lines: ReadonlyArray<RolloutItem>
  readonly warnings: ReadonlyArray<RolloutWarning>
}

const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
/** `rollout-2026-11-22T01-14-33-<threadId>.jsonl` */
export const ROLLOUT_FILE = new RegExp(`^rollout-(\\d{4}-\\d{2}-\\d{2}T\\d{2}-\\d{2}-\\d{2})-(${UUID})\\.jsonl$`)

/** The path of a thread's rollout relative to `sessions/`: `YYYY/MM/DD/rollout-<stamp>-<threadId>.jsonl` (UTC). */
export const relativeRolloutPath = (threadId: string, createdAt: Date): string => {
  const iso = createdAt.toISOString() // 2026-11-22T01:14:33.123Z
  const stamp = iso.slice(0, 19).replaceAll(":", "-")
  return `${iso.slice(0, 4)}/${iso.slice(5, 7)}/${iso.slice(8, 10)}/rollout-${stamp}-${threadId}.jsonl`
}

const fatal = new TextDecoder("utf-8", { fatal: true })
const encoder = new TextEncoder()

/** UTF-8 bytes of a string. */
export const encodeUtf8 = (text: string): Uint8Array => encoder.encode(text)

/** A value as one JSONL line, newline included. */
export const jsonLine = (value: unknown): string => `${JSON.stringify(value)}\n`

const decodeOrUndefined = (bytes: Uint8Array): string | undefined => {
  try {
    return fatal.decode(bytes)
  } catch {
    return undefined
  }
}

/**
 * The file's lines, `undefined` for a line that is not valid UTF-8. The last element is the text
 * after the final newline ("" when the file ends with one).
 */
const splitLines = (bytes: Uint8Array): Array<string | undefined> => {
  const whole = decodeOrUndefined(bytes)
  if (whole !== undefined) return whole.split("\n")
  // Not valid UTF-8 somewhere: decode line by line so every other line stays readable.
  const lines: Array<string | undefined> = []
  let start = 0
  for (;;) {
    const end = bytes.indexOf(10, start)
    if (end === -1) {
      lines.push(decodeOrUndefined(bytes.subarray(start)))
      return lines
    }
    lines.push(decodeOrUndefined(bytes.subarray(start, end)))
    start = end + 1
  }
}

const parseJson = (text: string): Either.Either<unknown, string> => {
  try {
    return Either.right(JSON.parse(text))
  } catch (error) {
    return Either.left(error instanceof Error ? error.message : String(error))
  }
}

const typeOf = (value: unknown): string | undefined =>
  typeof value === "object" && value !== null && "type" in value && typeof value.type === "string"
    ? value.type
    : undefined

/** Parses a metadata line (line 1 of a rollout). */
export const parseMetaLine = (text: string | undefined): Either.Either<RolloutMeta, Omit<ParseFailure, "readable">> => {
  if (text === undefined) return Either.left({ line: 1, reason: "the metadata line is not valid UTF-8" })
  if (text.trim() === "") return Either.left({ line: 1, reason: "the metadata line is empty" })
  const json = parseJson(text)
  if (Either.isLeft(json)) return Either.left({ line: 1, reason: `the metadata line is not valid JSON (${json.left})` })
  const type = typeOf(json.right)
  if (type !== "meta") {
    return Either.left({
      line: 1,
      reason: `expected the thread's metadata (type "meta") first, found ${type === undefined ? "no type" : `type "${type}"`}`
    })
  }
  const meta = RolloutMeta.safeParse(json.right)
  return meta.success
    ? Either.right(meta.data)
    : Either.left({ line: 1, reason: `invalid metadata: ${formatIssues(meta.error).join("; ")}` })
}

/**
 * Parses a whole rollout in one pass (§21). The metadata line must be readable; any later line
 * that is not is skipped with a warning naming file and line, and every readable line is kept. A
 * last line without its newline that does not parse as JSON is a torn write: skipped, with a
 * warning; one that parses is a complete line that lost only its newline.
 */
export const parseRollout = (path: string, bytes: Uint8Array): Either.Either<ParsedRollout, ParseFailure> => {
  if (bytes.every((byte) => byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09)) {
    return Either.left({ reason: "the file is empty (no metadata line)", readable: [] })
  }
  const raw = splitLines(bytes)
  const terminated = raw[raw.length - 1] === ""
  if (terminated) raw.pop()
  const meta = parseMetaLine(raw[0])
  const lines: Array<RolloutItem> = []
  const warnings: Array<RolloutWarning> = []
  const warn = (line: number, kind: RolloutWarning["kind"], what: string) =>
    warnings.push({ path, line, kind, message: `${path}:${line}: ${what}` })
  if (Either.isLeft(meta) && raw[0] !== undefined) {
    // Without a metadata line the file is unusable, but its readable lines go back with the error:
    // line 1 too, when it is a submission or an event.
    const first = parseJson(raw[0])
    const item = Either.isRight(first) ? RolloutItem.safeParse(first.right) : undefined
    if (item?.success) lines.push(item.data)
  }
  for (let index = 1; index < raw.length; index++) {
    const text = raw[index]
    const line = index + 1
    const torn = index === raw.length - 1 && !terminated
    if (text === undefined) {
      warn(line, torn ? "torn_last_line" : "invalid_utf8", "skipped a line that is not valid UTF-8")
      continue
    }
    if (text.trim() === "") continue
    const json = parseJson(text)
    if (Either.isLeft(json)) {
      if (torn) warn(line, "torn_last_line", "skipped a torn last line (the write was cut short)")
      else warn(line, "invalid_json", `skipped a line that is not valid JSON (${json.left})`)
      continue
    }
    const item = RolloutItem.safeParse(json.right)
    if (item.success) {
      lines.push(item.data)
      continue
    }
    // Valid JSON is a complete line, torn or not: only its type is unknown (a newer version's line).
    if (typeOf(json.right) === "meta") {
      warn(line, "invalid_line", "skipped a second metadata line")
    } else {
      warn(line, "invalid_line", `skipped a line that is not a rollout line: ${formatIssues(item.error).join("; ")}`)
    }
  }
  if (Either.isLeft(meta)) {
    const torn = raw.length === 1 && !terminated
    const reason = torn ? `${meta.left.reason} (torn write?)` : meta.left.reason
    return Either.left({ ...meta.left, reason, readable: lines })
  }
  return Either.right({ meta: meta.right, lines, warnings })
}

/** True when `bytes` (one line, no newline) are UTF-8 text that parses as JSON: a complete line, not a torn one. */
export const parsesAsJson = (bytes: Uint8Array): boolean => {
  const text = decodeOrUndefined(bytes)
  return text !== undefined && Either.isRight(parseJson(text))
}
