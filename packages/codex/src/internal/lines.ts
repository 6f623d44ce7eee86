/**
 * Splits text arriving in chunks into lines, each at most a bounded length (§36): a peer that never
 * sends a newline cannot grow this process without limit.
 */
import { Data } from "effect"

/** The default bound on one line of a child's output: 64 MiB (in UTF-16 code units, as JavaScript counts). */
export const DEFAULT_MAX_LINE_LENGTH = 64 * 1024 * 1024

/** A line of a child's output grew past the bound before its newline came. */
export class LineTooLong extends Data.TaggedError("LineTooLong")<{
  /** Whose output: `codex app-server stdout`. */
  readonly source: string
  /** The bound, in characters. */
  readonly limit: number
}> {
  override get message() {
    return `a line of ${this.source} is longer than ${this.limit} characters (the bound on one line); stopped reading it`
  }
}

/**
 * A stateful splitter: `push` returns the lines a chunk completed, or LineTooLong once the line being
 * gathered (or a completed one) is longer than the bound; after that it returns the same error. `end`
 * returns an unterminated last line.
 */
export interface LineSplitter {
  readonly push: (chunk: string) => ReadonlyArray<string> | LineTooLong
  readonly end: () => string | undefined
}

/**
 * A new splitter. Lines end at `\n`; a trailing `\r` is dropped. Each chunk is scanned once (no
 * quadratic rescans). `maxLength` bounds one line (default 64 MiB); `source` names the output in the error.
 */
export const lineSplitter = (options: { readonly maxLength?: number; readonly source?: string } = {}): LineSplitter => {
  const maxLength = options.maxLength ?? DEFAULT_MAX_LINE_LENGTH
  let pieces: Array<string> = []
  let gathered = 0 // characters in `pieces`
  let failed: LineTooLong | undefined
  const tooLong = () => {
    failed = new LineTooLong({ source: options.source ?? "a child's output", limit: maxLength })
    pieces = [] // what was gathered is dropped: memory stays bounded
    gathered = 0
    return failed
  }
  const strip = (line: string) => (line.endsWith("\r") ? line.slice(0, -1) : line)
  return {
    push: (chunk) => {
      if (failed !== undefined) return failed
      const lines: Array<string> = []
      let start = 0
      let newline = chunk.indexOf("\n", start)
      while (newline !== -1) {
        if (gathered + (newline - start) > maxLength + 1) return tooLong() // +1: a trailing \r
        pieces.push(chunk.slice(start, newline))
        lines.push(strip(pieces.length === 1 ? pieces[0]! : pieces.join("")))
        pieces = []
        gathered = 0
        start = newline + 1
        newline = chunk.indexOf("\n", start)
      }
      if (start < chunk.length) {
        gathered += chunk.length - start
        if (gathered > maxLength + 1) return tooLong()
        pieces.push(chunk.slice(start))
      }
      return lines
    },
    end: () => {
      const rest = pieces.join("")
      pieces = []
      gathered = 0
      return rest.length === 0 ? undefined : strip(rest)
    }
  }
}
