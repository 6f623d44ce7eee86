import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { CodexAppServer } from "../src/index.js"
import { groupMembers, startCrashDeputy, untilGroupGone } from "./crashDeputy.js"

/** A temp folder (cwd and CODEX_HOME), removed with the scope. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "deputy-codex-app-server-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

describe("CodexAppServer", () => {
  it.live("§25 a binary that cannot start fails the process with SpawnFailed naming it", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const codexPath = join(dir, "no-such-codex")
      const error = yield* Effect.flip(CodexAppServer.process({ codexPath, cwd: dir }))
      assert.strictEqual(error._tag, "SpawnFailed")
      assert.include(error.reason, `spawn ${codexPath} ENOENT`)
    }).pipe(Effect.scoped)
  )

  it.live.skipIf(process.platform !== "linux")(
    "no orphans: a SIGKILLed deputy process takes its codex app-server's whole group with it",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const deputy = yield* startCrashDeputy("app-server", dir)
        // The watchdog and the real codex app-server (and whatever it started).
        assert.isAtLeast(groupMembers(deputy.group).length, 2)
        yield* deputy.crash
        assert.deepStrictEqual(yield* untilGroupGone(deputy.group), [])
      }).pipe(Effect.scoped),
    30_000
  )
})
