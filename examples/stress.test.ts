import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { stress, stressLayer } from "./stress.js"

describe("stress (pnpm stress)", () => {
  it.live("trees run and are cancelled under a cap, and nothing is left behind", () =>
    Effect.gen(function* () {
      const result = yield* stress({ trees: 12, fanout: 2, depth: 2, cancel: 0.5, cap: 3 })
      assert.strictEqual(result.threads, 12 * 7)
      assert.strictEqual(result.completedTrees + result.failedTrees + result.cancelledTrees, 12)
      for (const report of result.cancelReports) {
        assert.isAbove(report.threads.length, 0)
        assert.notInclude(
          report.threads.map((t) => t.outcome),
          "submit_failed"
        )
      }
      assert.deepStrictEqual([result.leftThreads, result.leftPending, result.leftProcesses], [0, 0, 0])
    }).pipe(Effect.provide(stressLayer(3)))
  )

  it.live("§35 under a tree cap of 1 every grandchild fails with CapDeadlock: every tree counts as failed", () =>
    Effect.gen(function* () {
      const result = yield* stress({ trees: 3, fanout: 2, depth: 2, cancel: 0, cap: 1 })
      assert.deepStrictEqual([result.completedTrees, result.failedTrees, result.cancelledTrees], [0, 3, 0])
      assert.deepStrictEqual([result.leftThreads, result.leftPending, result.leftProcesses], [0, 0, 0])
    }).pipe(Effect.provide(stressLayer(1)))
  )
})
