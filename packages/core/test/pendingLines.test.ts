// A rollout writer's buffered lines as UTF-8 bytes (internal/pendingLines.ts).
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { PendingLines } from "../src/internal/pendingLines.js"

const bytesOf = (chunks: ReadonlyArray<Uint8Array>) => Buffer.concat(chunks)

describe("PendingLines", () => {
  it.prop(
    "take gives back every pushed text, in order, as its UTF-8 bytes",
    [fc.array(fc.oneof(fc.string(), fc.fullUnicodeString(), fc.string({ minLength: 2000, maxLength: 9000 })))],
    ([texts]) => {
      const pending = new PendingLines()
      for (const text of texts) pending.push(text)
      const expected = Buffer.from(texts.join(""), "utf8")
      expect(pending.bytes).toBe(expected.byteLength)
      expect(bytesOf(pending.take()).equals(expected)).toBe(true)
      expect(pending.isEmpty).toBe(true)
      expect(pending.take()).toEqual([])
    },
    { fastCheck: { numRuns: 300 } }
  )

  it("multi-byte text takes its UTF-8 bytes, and the next push goes after them", () => {
    const pending = new PendingLines()
    const lines = ["€".repeat(1365), "😀".repeat(700), "a\n", "é".repeat(5000)]
    for (const line of lines) pending.push(line)
    expect(bytesOf(pending.take()).toString("utf8")).toBe(lines.join(""))
  })

  it("restore puts a failed write's chunks back before what was pushed since", () => {
    const pending = new PendingLines()
    pending.push("one\n")
    pending.push("two\n")
    const failed = pending.take()
    pending.push("three\n")
    pending.restore(failed)
    expect(pending.bytes).toBe(14)
    expect(bytesOf(pending.take()).toString("utf8")).toBe("one\ntwo\nthree\n")
  })
})
