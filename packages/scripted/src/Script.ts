/**
 * Reading scripts (§24): JSON or YAML text, validated once by the zod `Script` schema of
 * @deputy/protocol. Nothing here holds state; a parsed script is a plain value.
 */
import { decode, InvalidInput } from "@deputy/core"
import { Script } from "@deputy/protocol"
import { FileSystem } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { Effect } from "effect"
import { LineCounter, parseDocument } from "yaml"

const isJson = (source: string) => source.toLowerCase().endsWith(".json")

const syntaxError = (source: string, issue: string) => new InvalidInput({ source, issues: [`(syntax) ${issue}`] })

const parseText = (text: string, source: string): Effect.Effect<unknown, InvalidInput> =>
  Effect.suspend(() => {
    if (isJson(source)) {
      try {
        return Effect.succeed(JSON.parse(text) as unknown)
      } catch (error) {
        return Effect.fail(syntaxError(source, error instanceof Error ? error.message : String(error)))
      }
    }
    const lineCounter = new LineCounter()
    const document = parseDocument(text, { lineCounter, prettyErrors: false })
    const first = document.errors[0]
    if (first !== undefined) {
      const at = lineCounter.linePos(first.pos[0])
      return Effect.fail(syntaxError(source, `line ${at.line}, column ${at.col}: ${first.message}`))
    }
    return Effect.succeed(document.toJS() as unknown)
  })

/**
 * Parses a script from `text`: JSON when `source` ends in `.json`, else YAML (`.yaml`, `.yml`, or
 * anything else; YAML also reads JSON). Fails with InvalidInput naming `source` and each bad field
 * (`turns.0.steps.2.ms: Too big: …`), or the line of a syntax error.
 */
export const parseScript = (text: string, source: string): Effect.Effect<Script, InvalidInput> =>
  Effect.flatMap(parseText(text, source), decode(Script, source))

/** Reads and parses the script file at `path` (format by extension, as `parseScript`). Fails with InvalidInput on bad content, PlatformError when the file cannot be read. */
export const loadScript = (path: string): Effect.Effect<Script, InvalidInput | PlatformError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    return yield* parseScript(yield* fs.readFileString(path), path)
  })
