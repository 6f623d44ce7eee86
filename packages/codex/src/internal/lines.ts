/**
 * Splits text arriving in chunks into lines, each at most a bounded length (§36): a peer that never
 * sends a newline cannot grow this process without limit.
 */
import { Data, Stream } from "effect"

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
 * A stateful splitter: `push` returns the lines a chunk completed, or LineTooLong once a line is
 * longer than the bound (lines the same chunk completed before it come first; the error then comes on
 * the next `push`, or from `failure`); after that it returns the same error. `end` returns an
 * unterminated last line.
 */
export interface LineSplitter {
  readonly push: (chunk: string) => ReadonlyArray<string> | LineTooLong
  readonly end: () => string | undefined
  /** The LineTooLong met so far, if any. */
  readonly failure: () => LineTooLong | undefined
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
  const tooLong = (lines: ReadonlyArray<string>) => {
    failed = new LineTooLong({ source: options.source ?? "a child's output", limit: maxLength })
    pieces = [] // what was gathered is dropped: memory stays bounded
    gathered = 0
    return lines.length > 0 ? lines : failed
  }
  const strip = (line: string) => (line.endsWith("\r") ? line.slice(0, -1) : line)
  return {
    push: (chunk) => {
      if (failed !== undefined) return failed
      const lines: Array<string> = []
      let start = 0
      let newline = chunk.indexOf("\n", start)
      while (newline !== -1) {
        if (gathered + (newline - start) > maxLength + 1) return tooLong(lines) // +1: a trailing \r
        pieces.push(chunk.slice(start, newline))
        lines.push(strip(pieces.length === 1 ? pieces[0]! : pieces.join("")))
        pieces = []
        gathered = 0
        start = newline + 1
        newline = chunk.indexOf("\n", start)
      }
      if (start < chunk.length) {
        gathered += chunk.length - start
        if (gathered > maxLength + 1) return tooLong(lines)
        pieces.push(chunk.slice(start))
      }
      return lines
    },
    failure: () => failed,
    end: () => {
      const rest = pieces.join("")
      pieces = []
      gathered = 0
      return rest.length === 0 ? undefined : strip(rest)
    }
  }
}

/**
 * A stream of text chunks as a stream of lines, each at most `maxLength` characters (default 64 MiB):
 * a longer one fails the stream with LineTooLong, holding no more than the bound in memory. Lines
 * end at `\n`; a trailing `\r` is dropped; an unterminated last line is emitted at the end.
 */
export const splitLinesBounded =
  (options: { readonly maxLength?: number; readonly source?: string } = {}) =>
  <E, R>(self: Stream.Stream<string, E, R>): Stream.Stream<string, E | LineTooLong, R> =>
    Stream.suspend(() => {
      const splitter = lineSplitter(options)
      return self.pipe(
        Stream.flatMap((chunk) => {
          const lines = splitter.push(chunk)
          if (lines instanceof LineTooLong) return Stream.fail(lines)
          // Lines the chunk completed before the one past the bound come first; then the stream fails at once.
          const failure = splitter.failure()
          const completed = Stream.fromIterable(lines)
          return failure === undefined ? completed : Stream.concat(completed, Stream.fail(failure))
        }),
        Stream.concat(
          Stream.suspend(() => {
            const failure = splitter.failure()
            if (failure !== undefined) return Stream.fail(failure)
            const last = splitter.end()
            return last === undefined ? Stream.empty : Stream.make(last)
          })
        )
      )
    })
