// A rollout writer's buffered lines as UTF-8 bytes (internal/pendingLines.ts).
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { PendingLines, recycle } from "../src/internal/pendingLines.js"

const bytesOf = (chunks: ReadonlyArray<Uint8Array>) => Buffer.concat(chunks)
/** Text of any length (past a slab's 256 KiB too), with multi-byte characters that may straddle a slab's end. */
const text = fc.oneof(
  fc.string(),
  fc.fullUnicodeString(),
  fc.string({ minLength: 4096, maxLength: 9000 }),
  fc
    .tuple(fc.constantFrom("a", "€", "😀", "é"), fc.integer({ min: 1024, max: 120_000 }))
    .map(([char, count]) => char.repeat(count))
)

describe("PendingLines", () => {
  it.prop(
    "take gives back every pushed text, in order, as its UTF-8 bytes, whatever slabs they went into",
    [fc.array(text, { maxLength: 12 })],
    ([texts]) => {
      const pending = new PendingLines()
      for (const text of texts) {
        pending.push(text)
        if (text.length % 3 === 0) pending.settle()
      }
      const expected = Buffer.from(texts.join(""), "utf8")
      expect(pending.bytes).toBe(expected.byteLength)
      const chunks = pending.take()
      expect(bytesOf(chunks).equals(expected)).toBe(true)
      expect(pending.isEmpty).toBe(true)
      expect(pending.take()).toEqual([])
      recycle(chunks)
    },
    { fastCheck: { numRuns: 150, endOnFailure: true } }
  )

  it("after a small batch the writer holds its lines' bytes, not a slab: settle copies them out", () => {
    const pending = new PendingLines()
    const batch = `${"b".repeat(5000)}\n`
    pending.push(batch) // a large push: into a slab
    pending.push("small\n") // and what follows it, while the slab is held
    pending.settle()
    const chunks = pending.take()
    expect(Buffer.concat(chunks).toString()).toBe(`${batch}small\n`)
    for (const chunk of chunks) expect(chunk.buffer.byteLength).toBe(chunk.byteLength)
    // Past KEEP bytes the slab stays: the next batch goes on filling it.
    pending.push("c".repeat(70_000))
    pending.settle()
    const [kept] = pending.take()
    expect(kept!.byteLength).toBe(70_000)
    expect(kept!.buffer.byteLength).toBeGreaterThan(70_000)
    recycle([kept!])
  })

  it("restore puts a failed write's chunks back before what was pushed since", () => {
    const pending = new PendingLines()
    const large = `${"l".repeat(5000)}\n`
    pending.push("one\n")
    pending.push(large)
    const failed = pending.take()
    pending.push("three\n")
    pending.push(large)
    pending.restore(failed)
    expect(pending.bytes).toBe(4 + 5001 + 6 + 5001)
    expect(bytesOf(pending.take()).toString("utf8")).toBe(`one\n${large}three\n${large}`)
  })

  it("a slab goes back to the pool only when recycled: chunks still buffered or being written keep their bytes", () => {
    const written = new PendingLines()
    const waiting = new PendingLines()
    written.push("w".repeat(5000))
    waiting.push("k".repeat(5000))
    const [onDisk] = written.take()
    const [kept] = waiting.take()
    waiting.restore([kept!]) // a failed write: buffered again, not recycled
    recycle([onDisk!])
    // Another writer takes the recycled slab and overwrites it; the chunk still buffered is untouched.
    const next = new PendingLines()
    next.push("n".repeat(300_000))
    expect(bytesOf(waiting.take()).toString()).toBe("k".repeat(5000))
    expect(bytesOf(next.take()).toString()).toBe("n".repeat(300_000))
  })
})
