/**
 * Writing a cancellation test with deputy (docs/cancellation-tests.md): scripted sub-agents stand in
 * for real ones, cancellation happens at an event (never after a sleep), and each test checks what a
 * user would: the report, the withdrawn approval, the command that never ran, the process that is gone.
 *
 *   npx vitest run examples/cancellation-test
 */
import { existsSync } from "node:fs"
import { mkdtemp, readFile, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type ApprovalRequest, Deputy, RunAborted, scripted } from "@deputy/sdk"
import { afterEach, assert, beforeEach, describe, it } from "vitest"

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "deputy-cancel-"))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** Resolves with the first value `next` gives: a promise a test can await instead of sleeping. */
const latch = <A>() => {
  let next: (value: A) => void = () => {}
  const promise = new Promise<A>((resolve) => {
    next = resolve
  })
  return { next, promise }
}

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe("cancellation", () => {
  it("cancelled while an approval is pending: the prompt's signal aborts and the command never runs", async () => {
    const asked = latch<AbortSignal>()
    await using deputy = new Deputy({
      home: dir,
      // A person who never answers: the test decides when to cancel, not a timer.
      onApproval: (_request: ApprovalRequest, { signal }) => {
        asked.next(signal)
        return new Promise<undefined>(() => {})
      }
    })
    const thread = await deputy.startThread({
      cwd: dir,
      backend: scripted({ turns: [{ steps: [{ type: "exec", command: ["touch", "deployed"] }] }] })
    })
    const stop = new AbortController()
    const run = thread.run("deploy", { signal: stop.signal })
    const signal = await asked.promise
    stop.abort()
    const error = await run.catch((e: unknown) => e)
    assert.instanceOf(error, RunAborted)
    assert.isTrue(signal.aborted) // a UI showing the prompt can close it
    assert.lengthOf((error as RunAborted).report.withdrawn, 1)
    assert.isFalse(existsSync(join(dir, "deployed")))
  })

  it("cancelled in the middle of a command: the command's process is gone afterwards", async () => {
    await using deputy = new Deputy({ home: dir })
    const thread = await deputy.startThread({
      cwd: dir,
      backend: scripted({
        turns: [
          { steps: [{ type: "exec", command: ["sh", "-c", "echo $$ > pid; exec sleep 60"], needsApproval: false }] }
        ]
      })
    })
    let pid = 0
    for await (const event of thread.runStreamed("build")) {
      if (event.type !== "exec_command_begin") continue
      // The command has begun; wait for it to say who it is (a file it writes), then leave the loop.
      while (pid === 0) pid = Number((await readFile(join(dir, "pid"), "utf8").catch(() => "")).trim() || 0)
      break // leaving the loop cancels the thread
    }
    const report = await thread.close() // the same report the cancel made
    assert.deepStrictEqual(
      report.threads.map((t) => t.outcome),
      ["aborted"]
    )
    assert.isFalse(isAlive(pid))
  })

  it("cancelling a parent cancels its sub-agents, and the report names every thread", async () => {
    const started = latch<void>()
    await using deputy = new Deputy({
      home: dir,
      onApproval: () => {
        started.next()
        return new Promise<undefined>(() => {})
      }
    })
    const child = { turns: [{ steps: [{ type: "exec" as const, command: ["echo", "child"] }] }] }
    const parent = await deputy.startThread({
      cwd: dir,
      backend: scripted({
        turns: [
          {
            steps: [
              {
                type: "spawn",
                agents: [
                  { name: "a", script: child, input: "go" },
                  { name: "b", script: child, input: "go" }
                ]
              }
            ]
          }
        ]
      })
    })
    const run = parent.run("fan out").catch((e: unknown) => e)
    await started.promise
    const report = await parent.close()
    assert.lengthOf(report.threads, 3) // both children, then the parent
    assert.strictEqual(report.threads.at(-1)?.threadId, parent.id)
    assert.isAtLeast(report.withdrawn.length, 1)
    assert.deepStrictEqual(await deputy.listThreads(), [])
    await run
  })
})
