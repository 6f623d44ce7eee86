import { assert, describe, it } from "vitest"
import { reviewWorkspace } from "./review.js"

describe("examples/code-review (docs/code-review.md)", () => {
  it("the real Codex reads the file (approved), its push is denied, the review comes back", async () => {
    const lines: Array<string> = []
    const result = await reviewWorkspace((line) => lines.push(line))
    assert.include(result.review, "it should return a + b")
    assert.deepStrictEqual(result.decisions, ["approved", "denied"])
    assert.match(lines.find((l) => l.startsWith("denied:")) ?? "", /git push/)
  }, 90_000)
})
