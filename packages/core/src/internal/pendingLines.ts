/**
 * A rollout writer's lines not yet on disk, as UTF-8 bytes (issue 12). Kept as strings until the
 * flush, a turn's lines outlived the young generation and the garbage collector copied and promoted
 * them (a third of the rollout's time); as bytes they sit outside the JavaScript heap and the strings
 * die at once.
 *
 * A small push (a line or a few) is encoded into a chunk of its own size. A large one (a streaming
 * batch) is encoded into a slab taken from a small process-wide pool, and the slab goes back to the
 * pool once the write that took it is done (`recycle`): a fresh array per batch cost as much as the
 * encoding, and its memory, outside the heap, brought on a full collection about every 64 MB. Only a
 * writer that pushed a large batch since its last write holds a slab; `take` lets go of it.
 */
import { encodeUtf8 } from "./rolloutFile.js"

/** A slab's size. */
const SLAB = 256 * 1024
/** Text at least this long (UTF-16 units) is encoded into a slab; shorter text gets a chunk of its own. */
const LARGE = 4 * 1024
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

/** Lines waiting for the disk, oldest first, as UTF-8 bytes. */
export class PendingLines {
  private chunks: Array<Uint8Array> = []
  /** The slab large pushes go into, until `take`. */
  private slab: Buffer | undefined = undefined
  private used = 0
  /** Where the slab's last chunk starts, when that chunk is the last one buffered (so a push extends it); else -1. */
  private open = -1
  /** How many bytes are buffered. */
  bytes = 0

  /** True when nothing is buffered. */
  get isEmpty(): boolean {
    return this.bytes === 0
  }

  /** Buffers `text` (whole lines, newlines included) after what is buffered. */
  push(text: string): void {
    if (text.length < LARGE) {
      const chunk = encodeUtf8(text)
      this.chunks.push(chunk)
      this.bytes += chunk.byteLength
      this.open = -1
      return
    }
    let rest = text
    for (;;) {
      if (this.slab === undefined || this.used === SLAB) {
        this.slab = newSlab()
        this.used = 0
        this.open = -1
      }
      const { read, written } = encoder.encodeInto(rest, this.slab.subarray(this.used))
      if (written > 0) {
        // One chunk per run of pushes into the slab: fewer pieces for writev.
        if (this.open === -1) this.open = this.used
        else this.chunks.pop()
        this.used += written
        this.bytes += written
        this.chunks.push(this.slab.subarray(this.open, this.used))
      }
      if (read === rest.length) return
      rest = rest.slice(read)
      this.used = SLAB // the rest did not fit (not even one more character): the next slab
    }
  }

  /** Everything buffered, oldest first, as chunks of whole lines; the buffer is empty after. */
  take(): Array<Uint8Array> {
    const chunks = this.chunks
    this.chunks = []
    this.slab = undefined
    this.used = 0
    this.open = -1
    this.bytes = 0
    return chunks
  }

  /** Puts back what `take` returned (a write failed), before anything buffered since. */
  restore(chunks: ReadonlyArray<Uint8Array>): void {
    for (const chunk of chunks) this.bytes += chunk.byteLength
    this.chunks = [...chunks, ...this.chunks] // the open chunk, if any, is still the last
  }
}
