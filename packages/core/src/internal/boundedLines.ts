/**
 * Lines of a byte stream with a bound on each (§36), for the supervisor's pipe: a line's bound may
 * depend on its first bytes (its verb), a longer line is dropped whole and reading goes on after it.
 * supervisor.mjs keeps its own copy: it must run with no imports of ours.
 */

/**
 * A `data` listener splitting a stream into lines (newline bytes) of at most `boundFor(first bytes)`
 * bytes; a longer line is dropped (`overLong` is told) and reading goes on after its newline.
 */
export const splitBoundedLines = (
  boundFor: (prefix: string) => number,
  onLine: (line: string) => void,
  overLong: (prefix: string, bound: number) => void
) => {
  let parts: Array<Buffer> = []
  let size = 0
  let bound = 0 // set from the first bytes of each line before it is used
  let skipping = false
  const prefixOf = (more: Buffer) => Buffer.concat([...parts, more.subarray(0, 64)]).toString("latin1", 0, 64)
  return (chunk: Buffer) => {
    let from = 0
    for (let newline = chunk.indexOf(10); newline !== -1; newline = chunk.indexOf(10, from)) {
      const piece = chunk.subarray(from, newline)
      from = newline + 1
      if (skipping) {
        skipping = false
        continue
      }
      if (parts.length === 0) {
        bound = boundFor(piece.toString("latin1", 0, 64))
        if (piece.length > bound) overLong(piece.toString("latin1", 0, 64), bound)
        else onLine(piece.toString("utf8"))
        continue
      }
      if (size + piece.length > bound) overLong(prefixOf(piece), bound)
      else onLine(Buffer.concat([...parts, piece]).toString("utf8"))
      parts = []
      size = 0
    }
    if (from === chunk.length || skipping) return
    const rest = chunk.subarray(from)
    if (parts.length === 0) bound = boundFor(rest.toString("latin1", 0, 64))
    else if (size < 64) bound = boundFor(prefixOf(rest))
    if (size + rest.length > bound) {
      overLong(prefixOf(rest), bound)
      parts = []
      size = 0
      skipping = true
    } else {
      parts.push(rest)
      size += rest.length
    }
  }
}
