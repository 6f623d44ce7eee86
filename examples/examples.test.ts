import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { review } from "./codex-review.js"
import { demo, parentLayer } from "./delegate.js"

describe("README examples", () => {
  it.live("demo (pnpm demo): approvals go through the policy and the cancelled sub-agent's process is gone", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const workdir = yield* fs.makeTempDirectoryScoped({ prefix: "deputy-demo-test-" })
      const lines: Array<string> = []
      const result = yield* demo(workdir, (line) => lines.push(line))
      assert.deepStrictEqual(result.decisions, ["approved", "denied", "approved"])
      assert.include(result.notes, "All 12 tests pass")
      assert.isFalse(result.sleepAlive)
      assert.strictEqual(result.events.at(-1), "turn_complete")
      assert.notInclude(result.events, "exec_approval_request")
    }).pipe(Effect.scoped, Effect.provide(Layer.merge(parentLayer, NodeContext.layer)))
  )

  it.live("codex review (pnpm review): the real Codex reads the file, the push is denied, the review comes back", () =>
    Effect.gen(function* () {
      const result = yield* review(() => {})
      assert.include(result.review, "it should return a + b")
      assert.deepStrictEqual(
        result.decisions.map((d) => d.outcome),
        ["approved", "denied"]
      )
      assert.match(result.decisions[1]?.command ?? "", /git push/)
    })
  )
})
