/**
 * The built bin sizes libuv's thread pool before anything uses it: deputy's file work is many small
 * calls, and a pool larger than the cores beside the main thread makes each call wait on the pool's
 * lock (BENCHMARKS.md, 2026-12-01). A size the user set is kept. Observed as the threads of a running
 * `deputy mock-model` (Linux's /proc).
 */
import { readdir } from "node:fs/promises"
import { availableParallelism } from "node:os"
import { afterAll, assert, beforeAll, describe, it } from "vitest"
import { build, scratch, spawnDeputy, waitFor } from "./support.js"

let box: Awaited<ReturnType<typeof scratch>>
beforeAll(async () => {
  await build()
  box = await scratch({ "scenario.yaml": "responses:\n  - steps:\n      - { type: message, text: hi }\n" })
}, 180_000)
afterAll(() => box.remove())

/** How many threads a `deputy mock-model` started with `env` runs once it serves. */
const threadsOf = async (env: Record<string, string | undefined>) => {
  const mock = spawnDeputy(["mock-model", "scenario.yaml", "--codex-home", `${box.dir}/codex-home`], {
    cwd: box.dir,
    env: { ...box.env, ...env } as Record<string, string>
  })
  try {
    await waitFor(mock.child, mock.out, "Ctrl-C stops it")
    return (await readdir(`/proc/${mock.child.pid}/task`)).length
  } finally {
    mock.child.kill("SIGINT")
    await mock.done
  }
}

describe.runIf(process.platform === "linux")("the deputy bin", () => {
  it("runs libuv's pool on the cores beside the main thread (1 to 4), unless UV_THREADPOOL_SIZE is set", async () => {
    const expected = Math.max(1, Math.min(4, availableParallelism() - 1))
    const withFour = await threadsOf({ UV_THREADPOOL_SIZE: "4" })
    const withThree = await threadsOf({ UV_THREADPOOL_SIZE: "3" })
    // The user's size is kept: one pool thread fewer is one thread fewer.
    assert.strictEqual(withFour - withThree, 1)
    const unset = await threadsOf({ UV_THREADPOOL_SIZE: undefined })
    assert.strictEqual(withFour - unset, 4 - expected)
  }, 60_000)
})
