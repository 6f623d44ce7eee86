import type { Submission, ThreadId } from "@deputy/protocol"
import { assert, describe, it } from "@effect/vitest"
import * as OpLog from "../src/internal/OpLog.js"

const A = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa" as ThreadId
const B = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb" as ThreadId
const op = (id: string): Submission => ({ id, op: { type: "interrupt" } })

describe("OpLog", () => {
  it("keeps ops in submission order across threads", () => {
    const log = OpLog.make()
    log.append(A, op("1"))
    log.append(B, op("2"))
    log.append(A, op("3"))
    assert.deepStrictEqual(
      log.entries().map((e) => [e.threadId, e.submission.id]),
      [
        [A, "1"],
        [B, "2"],
        [A, "3"]
      ]
    )
  })

  it("a thread's ops leave with it, and nothing of it is left behind", () => {
    const log = OpLog.make()
    for (let i = 0; i < 100; i++) log.append(i % 2 === 0 ? A : B, op(String(i)))
    log.forget(A)
    assert.deepStrictEqual(log.size(), { entries: 50, threads: 1 })
    assert.isTrue(log.entries().every((e) => e.threadId === B))
    log.forget(B)
    assert.deepStrictEqual(log.size(), { entries: 0, threads: 0 })
  })

  it("one long-lived thread's ops stay within the limit, the oldest dropped first", () => {
    const log = OpLog.make(3)
    for (let i = 0; i < 60_000; i++) log.append(A, op(String(i)))
    assert.deepStrictEqual(
      log.entries().map((e) => e.submission.id),
      ["59997", "59998", "59999"]
    )
    log.forget(A)
    assert.deepStrictEqual(log.size(), { entries: 0, threads: 0 })
  })
})
