/**
 * A rollout writer's lines not yet on disk, as UTF-8 bytes (issue 12). Kept as strings until the
 * flush, a turn's lines outlived the young generation and the garbage collector copied and promoted
 * them (a third of the rollout's time); as bytes they sit outside the JavaScript heap and the strings
 * die at once. Each push (a batch of lines) is encoded at once into a chunk of its own size: encoding
 * into shared slabs measured no faster in the rollout bench (slabs past 128 KiB are fresh pages to
 * fault in), and a chunk per push lets go of everything the moment it is written.
 */
import { encodeUtf8 } from "./rolloutFile.js"

/** Lines waiting for the disk, oldest first, as UTF-8 bytes. */
export class PendingLines {
  private chunks: Array<Uint8Array> = []
  /** How many bytes are buffered. */
  bytes = 0

  /** True when nothing is buffered. */
  get isEmpty(): boolean {
    return this.bytes === 0
  }

  /** Buffers `text` (whole lines, newlines included) after what is buffered. */
  push(text: string): void {
    const chunk = encodeUtf8(text)
    this.chunks.push(chunk)
    this.bytes += chunk.byteLength
  }

  /** Everything buffered, oldest first, as chunks of whole lines; the buffer is empty after. */
  take(): Array<Uint8Array> {
    const chunks = this.chunks
    this.chunks = []
    this.bytes = 0
    return chunks
  }

  /** Puts back what `take` returned (a write failed), before anything buffered since. */
  restore(chunks: ReadonlyArray<Uint8Array>): void {
    for (const chunk of chunks) this.bytes += chunk.byteLength
    this.chunks = [...chunks, ...this.chunks]
  }
}
