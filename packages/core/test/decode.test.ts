import { Op, Submission } from "@deputy/protocol"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import { decode } from "../src/internal/decode.js"

describe("decode", () => {
  it.effect("an unknown op is a typed InvalidInput naming the field, not a defect", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(decode(Op, "ops.jsonl line 3")({ type: "reboot", now: true }))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        assert.isFalse(Cause.isDie(exit.cause))
        const error = Cause.failureOption(exit.cause)
        assert.strictEqual(error._tag === "Some" && error.value._tag, "InvalidInput")
        assert.match(error._tag === "Some" ? error.value.message : "", /ops\.jsonl line 3: type: /)
      }
    })
  )

  it.effect("a malformed submission names every bad field", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        decode(Submission, "stdin")({ id: "", op: { type: "exec_approval", id: "c", decision: "yes" } })
      )
      assert.deepStrictEqual(
        error.issues.map((i) => i.split(":")[0]),
        ["id", "op.decision"]
      )
    })
  )
})
