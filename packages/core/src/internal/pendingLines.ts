/**
 * A rollout writer's lines not yet on disk, as UTF-8 bytes (issue 12). Kept as strings until the
 * flush, a turn's lines outlived the young generation and the garbage collector copied and promoted
 * them (a third of the rollout's time); as bytes they sit outside the JavaScript heap and the strings
 * die at once.
 *
 * A small push (a line or a few) is encoded into a chunk of its own size. A large one (a streaming
 * batch) is encoded into a slab taken from a small process-wide pool, and so is everything after it
 * until the write; the slab goes back to the pool once the write that took it is done (`recycle`):
 * a fresh array per batch cost as much as the encoding, and its memory, outside the heap, brought on
 * a full collection about every 64 MB. A writer holds a slab only while it has KEEP bytes or more
 * in it (`settle` copies fewer out), and `take` lets go of it.
 */
import { encodeUtf8 } from "./rolloutFile.js"

/** A slab's size. */
const SLAB = 256 * 1024
/** Text at least this long (UTF-16 units) is encoded into a slab; shorter text gets a chunk of its own. */
const LARGE = 4 * 1024
/** A slab holding fewer bytes than this after a batch is let go of (`settle`). */
const KEEP = 64 * 1024
/** Free slabs kept for reuse, at most (a process holds at most POOL_MAX × SLAB bytes idle). */
const POOL_MAX = 16

const encoder = new TextEncoder()
/** Free slabs. */
const pool: Array<Buffer> = []
/** The memory of every slab this module made, to know a slab's chunk from any other. */
const slabs = new WeakSet<ArrayBufferLike>()

const newSlab = (): Buffer => {
  const slab = pool.pop()
  if (slab !== undefined) return slab
  // Not zeroed: only the bytes written are ever read (every chunk handed out is a written range).
  const fresh = Buffer.allocUnsafeSlow(SLAB)
  slabs.add(fresh.buffer)
  return fresh
}

/**
 * Gives the slabs of chunks written to disk back to the pool. Call it once the write is done, with
 * the chunks `take` returned (never with chunks still buffered, nor twice).
 */
export const recycle = (chunks: ReadonlyArray<Uint8Array>): void => {
  for (const chunk of chunks) {
    const memory = chunk.buffer
    if (pool.length >= POOL_MAX) return
    if (!slabs.has(memory) || pool.some((slab) => slab.buffer === memory)) continue
    pool.push(Buffer.from(memory, 0, SLAB))
  }
}

/** What ends every hand-built line after its value: `"}}}` and the newline. */
const LINE_END = [0x22, 0x7d, 0x7d, 0x7d, 0x0a] as const

/** Lines waiting for the disk, oldest first, as UTF-8 bytes. */
export class PendingLines {
  /** Buffered chunks, oldest first; the slab's bytes from `start` to `used` come after them. */
  private chunks: Array<Uint8Array> = []
  /** The slab large pushes go into, until `take`. */
  private slab: Buffer | undefined = undefined
  /** Where the slab's bytes not yet in `chunks` start. */
  private start = 0
  /** Bytes of `slab` in use. */
  private used = 0
  /** How many bytes are buffered. */
  bytes = 0

  /** True when nothing is buffered. */
  get isEmpty(): boolean {
    return this.bytes === 0
  }

  /** Buffers `text` (whole lines, newlines included) after what is buffered. */
  push(text: string): void {
    if (text.length < LARGE && this.slab === undefined) {
      const chunk = encodeUtf8(text)
      this.chunks.push(chunk)
      this.bytes += chunk.byteLength
      return
    }
    let rest = text
    let slab = this.slab !== undefined && this.used < SLAB ? this.slab : this.nextSlab()
    for (;;) {
      const { read, written } = encoder.encodeInto(rest, slab.subarray(this.used))
      this.used += written
      this.bytes += written
      if (read === rest.length) return
      rest = rest.slice(read) // the rest did not fit (not even one more character): the next slab
      slab = this.nextSlab()
    }
  }

  /**
   * Buffers the line `head`, `value`, `"}}}` and a newline when `value` is ASCII, copying bytes rather
   * than building and encoding a string (a streaming batch's hand-built lines: rolloutLines.ts). False,
   * with nothing buffered, when `value` is not ASCII or the line is longer than a slab.
   */
  pushLine(head: Uint8Array, value: string): boolean {
    const size = head.byteLength + value.length + LINE_END.length
    if (size > SLAB) return false
    const slab = this.slab !== undefined && SLAB - this.used >= size ? this.slab : this.nextSlab()
    let at = this.used
    slab.set(head, at)
    at += head.byteLength
    for (let i = 0; i < value.length; i++) {
      const code = value.charCodeAt(i)
      if (code > 0x7f) return false // nothing counted: what was copied past `used` is written over later
      slab[at++] = code
    }
    for (const byte of LINE_END) slab[at++] = byte
    this.used = at
    this.bytes += size
    return true
  }

  /**
   * Lets go of the slab when it holds less than KEEP bytes, copying them out (call it after a batch):
   * a thread that pushed one batch and then waits (an approval, a long command) holds a chunk of
   * its lines' size, not a slab.
   */
  settle(): void {
    const slab = this.slab
    if (slab === undefined || this.used >= KEEP) return
    // Everything in a slab since it was taken is its one open range (text goes in while it is held).
    if (this.used > 0) this.chunks.push(Uint8Array.prototype.slice.call(slab, 0, this.used))
    this.slab = undefined
    this.start = 0
    this.used = 0
    recycle([slab])
  }

  /** Everything buffered, oldest first, as chunks of whole lines; the buffer is empty after. */
  take(): Array<Uint8Array> {
    this.seal()
    const chunks = this.chunks
    this.chunks = []
    this.slab = undefined
    this.start = 0
    this.used = 0
    this.bytes = 0
    return chunks
  }

  /** Puts back what `take` returned (a write failed), before anything buffered since. */
  restore(chunks: ReadonlyArray<Uint8Array>): void {
    for (const chunk of chunks) this.bytes += chunk.byteLength
    this.chunks = [...chunks, ...this.chunks]
  }

  /** Moves the slab's bytes not yet in `chunks` there, as one chunk. */
  private seal(): void {
    if (this.slab !== undefined && this.used > this.start) {
      this.chunks.push(this.slab.subarray(this.start, this.used))
      this.start = this.used
    }
  }

  private nextSlab(): Buffer {
    this.seal()
    const slab = newSlab()
    this.slab = slab
    this.start = 0
    this.used = 0
    return slab
  }
}
