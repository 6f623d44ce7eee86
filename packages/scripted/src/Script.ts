/**
 * Reading scripts (§24): JSON or YAML text, validated once by the zod `Script` schema of
 * @deputy/protocol. Nothing here holds state; a parsed script is a plain value.
 *
 * Every input is bounded (§36): bytes that are not UTF-8 are refused with their offset, YAML aliases
 * are capped (an alias bomb is refused, not expanded), objects and arrays may nest `SCRIPT_LIMITS.nesting`
 * deep and spawn steps `SCRIPT_LIMITS.spawnDepth` deep, and the schema caps counts (`repeat`,
 * `deltas`, …). A script given as an object (`Scripted.spawn`) goes through the same checks as a file.
 */
import { InvalidInput } from "@deputy/core"
import { SCRIPT_LIMITS, Script, scriptErrorMessage } from "@deputy/protocol"
import { FileSystem } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { Effect } from "effect"
import { LineCounter, parseDocument } from "yaml"

const isJson = (source: string) => source.toLowerCase().endsWith(".json")

const syntaxError = (source: string, issue: string) => new InvalidInput({ source, issues: [`(syntax) ${issue}`] })

/** At most this many alias expansions in one YAML document (the `yaml` package's own guard). */
const MAX_YAML_ALIASES = 100

const parseText = (text: string, source: string): Effect.Effect<unknown, InvalidInput> =>
  Effect.suspend(() => {
    if (isJson(source)) {
      try {
        return Effect.succeed(JSON.parse(text) as unknown)
      } catch (error) {
        return Effect.fail(syntaxError(source, error instanceof Error ? error.message : String(error)))
      }
    }
    // The yaml package recurses and throws on an alias bomb: both are bad input, never a defect.
    try {
      const lineCounter = new LineCounter()
      const document = parseDocument(text, { lineCounter, prettyErrors: false })
      const first = document.errors[0]
      if (first !== undefined) {
        const at = lineCounter.linePos(first.pos[0])
        return Effect.fail(syntaxError(source, `line ${at.line}, column ${at.col}: ${first.message}`))
      }
      return Effect.succeed(document.toJS({ maxAliasCount: MAX_YAML_ALIASES }) as unknown)
    } catch (error) {
      const reason =
        error instanceof RangeError
          ? `nested too deep (at most ${SCRIPT_LIMITS.nesting} levels)`
          : error instanceof Error
            ? `${error.message} (at most ${MAX_YAML_ALIASES} aliases)`
            : String(error)
      return Effect.fail(syntaxError(source, reason))
    }
  })

const invalid = (source: string, issue: string) => Effect.fail(new InvalidInput({ source, issues: [issue] }))

/** A path short enough for a message: its start and end. */
const shortPath = (path: string) => (path.length <= 120 ? path : `${path.slice(0, 40)}…${path.slice(-60)}`)

/** The path of the first object or array nested deeper than `SCRIPT_LIMITS.nesting`; walked without recursion. */
const tooDeep = (value: unknown): string | undefined => {
  const stack: Array<{
    readonly value: unknown
    readonly path: ReadonlyArray<string | number>
    readonly depth: number
  }> = [{ value, path: [], depth: 0 }]
  while (stack.length > 0) {
    const top = stack.pop()!
    if (typeof top.value !== "object" || top.value === null) continue
    if (top.depth >= SCRIPT_LIMITS.nesting) return shortPath(top.path.join("."))
    for (const [key, child] of Object.entries(top.value)) {
      stack.push({
        value: child,
        path: [...top.path, Array.isArray(top.value) ? Number(key) : key],
        depth: top.depth + 1
      })
    }
  }
  return undefined
}

/** The path of the first `spawn` step nested deeper than `SCRIPT_LIMITS.spawnDepth`; walked without recursion. */
const spawnTooDeep = (script: Script): string | undefined => {
  const stack: Array<{ readonly script: Script; readonly path: string; readonly depth: number }> = [
    { script, path: "", depth: 0 }
  ]
  while (stack.length > 0) {
    const top = stack.pop()!
    for (const [t, turn] of top.script.turns.entries()) {
      for (const [s, step] of turn.steps.entries()) {
        if (step.type !== "spawn") continue
        const at = `${top.path}turns.${t}.steps.${s}`
        if (top.depth + 1 > SCRIPT_LIMITS.spawnDepth) return shortPath(at)
        for (const [a, agent] of step.agents.entries()) {
          stack.push({ script: agent.script, path: `${at}.agents.${a}.script.`, depth: top.depth + 1 })
        }
      }
    }
  }
  return undefined
}

/**
 * Validates a script given as a value (parsed JSON or YAML, or an object built in code) as strictly
 * as a file: nesting, the schema with messages naming the bad value and the allowed ones
 * (`turns.0.steps.2.type: "exek" is not one of message, reasoning, exec, …`), then spawn depth.
 * Fails with InvalidInput naming `source`.
 */
export const validateScript = (value: unknown, source: string): Effect.Effect<Script, InvalidInput> =>
  Effect.gen(function* () {
    const deep = tooDeep(value)
    if (deep !== undefined) return yield* invalid(source, `${deep}: nested deeper than ${SCRIPT_LIMITS.nesting} levels`)
    const result = Script.safeParse(value, { error: scriptErrorMessage })
    if (!result.success) {
      const issues = result.error.issues.map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`)
      return yield* Effect.fail(new InvalidInput({ source, issues }))
    }
    const script = result.data
    const deepSpawn = spawnTooDeep(script)
    if (deepSpawn !== undefined) {
      return yield* invalid(source, `${deepSpawn}: spawn steps nested deeper than ${SCRIPT_LIMITS.spawnDepth} levels`)
    }
    return script
  })

/**
 * Parses a script from `text`: JSON when `source` ends in `.json`, else YAML (`.yaml`, `.yml`, or
 * anything else; YAML also reads JSON). Fails with InvalidInput naming `source` and each bad field
 * (`turns.0.steps.2.ms: 700000 is too big: at most 600000`), or the line of a syntax error.
 */
export const parseScript = (text: string, source: string): Effect.Effect<Script, InvalidInput> =>
  Effect.flatMap(parseText(text, source), (value) => validateScript(value, source))

/** How many bytes the UTF-8 sequence led by `byte` has (0: not a lead byte). */
const sequenceLength = (byte: number) => (byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 0)

/**
 * Where the first invalid UTF-8 sequence starts: the platform's fatal decoder finds the byte that
 * breaks the text (bisecting prefixes decoded in stream mode); a multi-byte sequence it cuts short is
 * reported at its lead byte. Undefined when the bytes are all UTF-8.
 */
const firstInvalidByte = (bytes: Uint8Array): number | undefined => {
  const decodes = (length: number, stream: boolean) => {
    try {
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, length), { stream })
      return true
    } catch {
      return false
    }
  }
  let breaking: number
  if (decodes(bytes.length, true)) {
    if (decodes(bytes.length, false)) return undefined
    breaking = bytes.length // a sequence cut short by the end of the bytes
  } else {
    let good = 0 // decodes(good) holds
    let bad = bytes.length // decodes(bad) fails
    while (bad - good > 1) {
      const middle = Math.floor((good + bad) / 2)
      if (decodes(middle, true)) good = middle
      else bad = middle
    }
    breaking = bad - 1
  }
  for (let lead = breaking - 1; lead >= Math.max(0, breaking - 3); lead--) {
    const byte = bytes[lead]!
    if ((byte & 0xc0) === 0x80) continue // a continuation byte: its lead is further back
    return sequenceLength(byte) > breaking - lead ? lead : breaking
  }
  return breaking
}

/**
 * Parses a script from raw bytes as `parseScript` does, first refusing bytes that are not UTF-8
 * with InvalidInput naming the byte offset (never a silently mangled script).
 */
export const parseScriptBytes = (bytes: Uint8Array, source: string): Effect.Effect<Script, InvalidInput> =>
  Effect.suspend(() => {
    const bad = firstInvalidByte(bytes)
    if (bad !== undefined) {
      return invalid(source, `(encoding) byte ${bad}: not valid UTF-8 (0x${bytes[bad]!.toString(16).padStart(2, "0")})`)
    }
    return parseScript(new TextDecoder("utf-8").decode(bytes), source)
  })

/** Reads and parses the script file at `path` (format by extension, as `parseScript`). Fails with InvalidInput on bad content, PlatformError when the file cannot be read. */
export const loadScript = (path: string): Effect.Effect<Script, InvalidInput | PlatformError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    return yield* parseScriptBytes(yield* fs.readFile(path), path)
  })
