/** Splits text arriving in chunks into lines, with no limit on a line's length beyond memory. */

/** A stateful splitter: `push` returns the lines a chunk completed; `end` returns an unterminated last line. */
export interface LineSplitter {
  readonly push: (chunk: string) => ReadonlyArray<string>
  readonly end: () => string | undefined
}

/** A new splitter. Lines end at `\n`; a trailing `\r` is dropped. Each chunk is scanned once (no quadratic rescans). */
export const lineSplitter = (): LineSplitter => {
  let pieces: Array<string> = []
  const strip = (line: string) => (line.endsWith("\r") ? line.slice(0, -1) : line)
  return {
    push: (chunk) => {
      const lines: Array<string> = []
      let start = 0
      let newline = chunk.indexOf("\n", start)
      while (newline !== -1) {
        pieces.push(chunk.slice(start, newline))
        lines.push(strip(pieces.length === 1 ? pieces[0]! : pieces.join("")))
        pieces = []
        start = newline + 1
        newline = chunk.indexOf("\n", start)
      }
      if (start < chunk.length) pieces.push(chunk.slice(start))
      return lines
    },
    end: () => {
      const rest = pieces.join("")
      pieces = []
      return rest.length === 0 ? undefined : strip(rest)
    }
  }
}
