import { execFile } from "node:child_process"
import { existsSync } from "node:fs"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { afterEach, assert, beforeEach, describe, it } from "vitest"
import { type ApprovalRequest, Deputy, DeputyError, RunAborted, scripted, type ThreadEvent } from "../src/index.js"

const run = promisify(execFile)

const reviewScript = `
turns:
  - steps:
      - { type: exec, command: [echo, hello from the sub-agent] }
      - { type: exec, command: [curl, example.com] }
      - { type: message, text: done }
`

let home: string
beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), "deputy-sdk-"))
})
afterEach(async () => {
  await rm(home, { recursive: true, force: true })
})

const commandsRun = (events: ReadonlyArray<ThreadEvent>) =>
  events.flatMap((e) => (e.type === "exec_command_begin" ? [e.command.join(" ")] : []))

describe("Deputy (Promise API)", () => {
  it("one-shot run: the policy approves echo, curl is denied, the final message comes back", async () => {
    await using deputy = new Deputy({ home, policy: { exec: [{ prefix: ["echo"], decision: "approved" }] } })
    const thread = await deputy.startThread({ backend: scripted(reviewScript) })
    const result = await thread.run("review")
    assert.strictEqual(result.finalResponse, "done")
    assert.strictEqual(result.status, "completed")
    assert.deepStrictEqual(commandsRun(result.events), ["echo hello from the sub-agent"])
    assert.deepStrictEqual(
      result.approvals.map((a) => [a.by, a.decision]),
      [
        ["policy", "approved"],
        ["policy", "denied"]
      ]
    )
  })

  it("usage comes from token_count; a closed thread resumes from its rollout and forks from a snapshot", async () => {
    const twoTurns = scripted({
      turns: [
        {
          steps: [
            { type: "token_count", input: 5, output: 7 },
            { type: "message", text: "first" }
          ]
        },
        { steps: [{ type: "message", text: "second" }] }
      ]
    })
    await using deputy = new Deputy({ home, backend: twoTurns })
    const thread = await deputy.startThread()
    const first = await thread.run("one")
    assert.deepStrictEqual(first.usage, { inputTokens: 5, outputTokens: 7, totalTokens: 12 })
    await thread.close()
    assert.deepStrictEqual(await deputy.listThreads(), [])
    const resumed = await deputy.resumeThread(thread.id.toUpperCase()) // any UUID spelling
    assert.strictEqual(resumed.id, thread.id)
    assert.strictEqual((await resumed.run("two")).finalResponse, "second")
    const fork = await deputy.forkThread(thread.id, { type: "truncate_before_nth_user_message", n: 1 })
    assert.notStrictEqual(fork.id, thread.id)
    assert.strictEqual((await fork.run("two again")).finalResponse, "second")
    assert.deepStrictEqual(await deputy.listThreads(), [fork.id, resumed.id].sort())
  })

  it("a callback answering 'APPROVED' is denied, with a warning naming the value", async () => {
    const warnings: Array<string> = []
    await using deputy = new Deputy({
      home,
      // A JavaScript caller (or a cast) can hand back anything; TypeScript alone would refuse this.
      onApproval: () => "APPROVED" as unknown as "approved",
      onWarning: (message) => warnings.push(message)
    })
    const thread = await deputy.startThread({ backend: scripted(reviewScript) })
    const result = await thread.run("review")
    assert.deepStrictEqual(commandsRun(result.events), [])
    assert.lengthOf(warnings, 2)
    assert.include(warnings[0], '"APPROVED"')
    assert.isTrue(result.events.some((e) => e.type === "warning" && e.message.includes('"APPROVED"')))
  })

  it("aborting a streamed run while an approval is pending aborts the callback's signal; the command never runs", async () => {
    const marker = join(home, "ran")
    let askedWith: (signal: AbortSignal) => void = () => {}
    const asked = new Promise<AbortSignal>((resolve) => {
      askedWith = resolve
    })
    await using deputy = new Deputy({
      home,
      onApproval: (_request: ApprovalRequest, { signal }) => {
        askedWith(signal)
        return new Promise<undefined>(() => {}) // a person who never answers
      }
    })
    const thread = await deputy.startThread({
      backend: scripted({ turns: [{ steps: [{ type: "exec", command: ["touch", marker] }] }] })
    })
    const controller = new AbortController()
    const seen: Array<string> = []
    const consume = (async () => {
      for await (const event of thread.runStreamed("go", { signal: controller.signal })) seen.push(event.type)
    })()
    const signal = await asked
    assert.isFalse(signal.aborted)
    controller.abort()
    const error = await consume.then(
      () => undefined,
      (e: unknown) => e
    )
    assert.instanceOf(error, RunAborted)
    assert.isTrue(signal.aborted)
    assert.isFalse(existsSync(marker))
    assert.lengthOf((error as RunAborted).report.withdrawn, 1)
    assert.deepStrictEqual(await deputy.listThreads(), [])
  })

  it("a request nobody decides is pending, listed, and answerable by id", async () => {
    await using deputy = new Deputy({ home, policy: { default: "ask" } })
    const thread = await deputy.startThread({
      backend: scripted({
        turns: [
          {
            steps: [
              { type: "exec", command: ["echo", "ok"] },
              { type: "message", text: "ok" }
            ]
          }
        ]
      })
    })
    const running = thread.run("go")
    let pending = await deputy.pendingApprovals()
    while (pending.length === 0) {
      await new Promise((resolve) => setImmediate(resolve))
      pending = await deputy.pendingApprovals()
    }
    assert.strictEqual(pending[0]?.kind, "exec")
    await deputy.answerApproval(pending[0]!.requestId, "approved")
    const result = await running
    assert.deepStrictEqual(commandsRun(result.events), ["echo ok"])
    assert.deepStrictEqual(
      result.approvals.map((a) => a.by),
      ["answer"]
    )
  })

  it("errors are DeputyErrors with a tag, a one-line message and the cause, never a FiberFailure", async () => {
    assert.throws(() => scripted({ turns: [{ steps: [{ type: "sleep", ms: -1 }] }] }), /turns\.0\.steps\.0\.ms/)
    await using deputy = new Deputy({ home, backend: scripted(reviewScript) })
    const error = await deputy.resumeThread("not-a-uuid").then(
      () => undefined,
      (e: unknown) => e
    )
    assert.instanceOf(error, DeputyError)
    assert.strictEqual((error as DeputyError)._tag, "InvalidInput")
    assert.notInclude((error as DeputyError).message, "\n")
    assert.notInclude(String(error), "FiberFailure")
    assert.isDefined((error as DeputyError).cause)
  })

  it("close() mid-command returns the shutdown report and leaves no handle, timer or child process", async () => {
    const fixture = new URL("./fixtures/close.ts", import.meta.url).pathname
    const { stdout } = await run(process.execPath, ["--conditions=@deputy/source", "--import", "tsx", fixture, home], {
      timeout: 50_000
    })
    const seen = JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}")
    assert.lengthOf(seen.report.completed, 1)
    assert.strictEqual(seen.runError, "DeputyClosed")
    assert.deepStrictEqual(seen.left, [])
    assert.isFalse(seen.alive)
  }, 60_000)

  it("a run waiting for an answer nobody can give fails with RunStalled instead of Node exiting 0", async () => {
    const fixture = new URL("./fixtures/stall.ts", import.meta.url).pathname
    const { stdout } = await run(process.execPath, ["--conditions=@deputy/source", "--import", "tsx", fixture, home], {
      timeout: 50_000
    })
    assert.include(stdout, "RunStalled")
    assert.include(stdout, "curl example.com")
    assert.include(stdout, "exit handled")
  }, 60_000)
})
