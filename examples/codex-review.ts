/**
 * A code-review sub-agent on the real Codex CLI, offline: `@deputy/mock-model` plays the model on
 * 127.0.0.1, Codex runs as an app-server, and deputy's policy parent approves the reads the reviewer
 * asks for (`policy.readOnly`) and nothing else.
 *
 *   pnpm review
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { CodexAppServer } from "@deputy/codex"
import { Delegate, Parent, ParentLog, policy } from "@deputy/core"
import { type ScenarioInput, startMockModel } from "@deputy/mock-model"
import { Effect, Layer, Logger, LogLevel, Stream } from "effect"

/** What the mock model does: read the file (an exec the parent must approve), try to push, then review. */
export const reviewScenario: ScenarioInput = {
  responses: [
    { name: "read", steps: [{ type: "exec_command", callId: "call-read", cmd: "cat src/add.ts" }] },
    {
      name: "push",
      match: { callOutput: "call-read" },
      steps: [{ type: "exec_command", callId: "call-push", cmd: "git push origin main" }]
    },
    {
      name: "review",
      match: { callOutput: "call-push" },
      steps: [
        {
          type: "message",
          text: "src/add.ts: `add` returns a - b; it should return a + b. I did not push: that was declined.",
          deltas: 5
        }
      ]
    }
  ]
}

/**
 * The reviewer may read, nothing else: the built-in read-only preset. Codex runs each command as
 * `/bin/bash -lc "…"`; the policy judges the script's simple commands (§27), so `cat a && git diff` is
 * approved and `cat a; echo x > f` or `git push` is not.
 */
export const reviewerPolicy = policy.readOnly

/** Runs one review in a fresh workspace; returns the review and the parent's decisions. */
export const review = (log: (line: string) => void) =>
  Effect.gen(function* () {
    const model = yield* Effect.acquireRelease(
      Effect.promise(() => startMockModel(reviewScenario)),
      (m) => Effect.promise(() => m.close())
    )
    const dirs = yield* Effect.acquireRelease(
      Effect.promise(async () => ({
        home: await mkdtemp(join(tmpdir(), "deputy-review-home-")),
        cwd: await mkdtemp(join(tmpdir(), "deputy-review-cwd-"))
      })),
      ({ home, cwd }) =>
        Effect.promise(() =>
          Promise.all(
            [home, cwd].map((dir) => rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }))
          )
        )
    )
    yield* Effect.promise(async () => {
      await mkdir(join(dirs.cwd, "src"))
      await writeFile(join(dirs.cwd, "src/add.ts"), "export const add = (a: number, b: number) => a - b\n")
      await model.writeCodexConfig(dirs.home, { envKey: "DEPUTY_MOCK_MODEL_KEY" })
    })
    const backend = CodexAppServer.backend({
      cwd: dirs.cwd,
      env: { HOME: dirs.home, CODEX_HOME: dirs.home, DEPUTY_MOCK_MODEL_KEY: "offline" },
      approvalPolicy: "untrusted",
      sandbox: "read-only"
    })
    const reviewer = yield* Delegate.oneShot(backend.spawn({ cwd: dirs.cwd }), {
      type: "user_input",
      items: [{ type: "text", text: "Review src/add.ts." }]
    })
    let text = ""
    yield* Stream.runForEach(reviewer.events, (event) =>
      Effect.sync(() => {
        const msg = event.msg
        if (msg.type === "exec_command_end") {
          log(
            msg.exitCode === null ? "   not run" : `   ran (exit ${msg.exitCode}): ${JSON.stringify(msg.stdout.trim())}`
          )
        }
        if (msg.type === "agent_message") text = msg.message
        if (msg.type === "turn_complete" || msg.type === "turn_aborted") log(`   ${msg.type}`)
      })
    )
    const decisions = (yield* (yield* ParentLog).entries).map((entry) => ({
      command: entry.request.kind === "exec" ? entry.request.command.join(" ") : entry.request.kind,
      outcome: entry.outcome.type === "decided" ? entry.outcome.decision : entry.outcome.type
    }))
    for (const d of decisions) log(`   parent: ${d.command} -> ${d.outcome}`)
    log(`   review: ${text}`)
    return { review: text, decisions }
  }).pipe(
    Effect.scoped,
    Effect.provide(Parent.layerRecording.pipe(Layer.provide(Parent.layerPolicy(reviewerPolicy)))),
    // Codex warns about its sandbox helper on this machine; the demo shows errors only.
    Logger.withMinimumLogLevel(LogLevel.Error)
  )

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log("A code-review sub-agent on the real Codex CLI, against a mock model on 127.0.0.1:\n")
  Effect.runPromise(review((line) => console.log(line))).catch((error: unknown) => {
    console.error(error)
    process.exitCode = 1
  })
}
