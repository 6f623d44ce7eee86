/**
 * deputy's main job on the embedded default: a parent delegates a review to a scripted sub-agent,
 * answers its exec and patch approvals through a policy, and cancels a second sub-agent mid-turn.
 *
 *   pnpm demo
 */
import { Delegate, Parent, ParentLog, policy } from "@deputy/core"
import type { Event, Script } from "@deputy/protocol"
import { Scripted } from "@deputy/scripted"
import { FileSystem } from "@effect/platform"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Clock, Effect, Layer, Stream } from "effect"

/** A reviewer that runs the tests, writes its notes, and tries one command the policy forbids. */
export const reviewer: Script = {
  name: "reviewer",
  turns: [
    {
      repeat: 1,
      steps: [
        { type: "reasoning", text: "Run the tests, then write the findings down.", deltas: 3 },
        { type: "exec", command: ["node", "-e", "console.log('12 tests passed')"], needsApproval: true },
        { type: "exec", command: ["rm", "-rf", "build"], needsApproval: true },
        {
          type: "patch",
          changes: { "REVIEW.md": { type: "add", content: "# Review\n\nAll 12 tests pass. Ship it.\n" } }
        },
        { type: "message", text: "Reviewed: tests pass, notes in REVIEW.md.", deltas: 4 }
      ]
    }
  ]
}

/** A sub-agent whose turn runs a long command: the parent cancels it halfway. */
export const longRunner: Script = {
  name: "long-runner",
  turns: [
    {
      repeat: 1,
      steps: [
        { type: "message", text: "Starting a long build." },
        // `exec` keeps the shell's pid, so the pid written is the sleep's.
        { type: "exec", command: ["sh", "-c", "echo $$ > long-runner.pid; exec sleep 30"], needsApproval: false }
      ]
    }
  ]
}

/** The parent's rules: run node, write markdown, nothing else (fail closed). */
export const reviewPolicy = policy({
  exec: [{ prefix: ["node"], decision: "approved" }],
  patch: [{ glob: "**/*.md", decision: "approved" }]
})

const describe = (event: Event): string => {
  const msg = event.msg
  switch (msg.type) {
    case "exec_command_begin":
      return `exec begin  ${msg.command.join(" ")}`
    case "exec_command_end":
      return `exec end    exit ${msg.exitCode} ${JSON.stringify(msg.stdout.trim())}`
    case "patch_apply_end":
      return `patch end   ${msg.success ? "applied" : `failed: ${msg.stderr}`}`
    case "agent_message":
      return `message     ${msg.message}`
    case "agent_reasoning":
      return `reasoning   ${msg.text}`
    default:
      return msg.type
  }
}

/** Runs the demo in `workdir`, printing with `log`; returns what happened, for the README's test. */
export const demo = (workdir: string, log: (line: string) => void) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const parentLog = yield* ParentLog

    log("1. one-shot review by a scripted sub-agent, approvals answered by the policy")
    const review = yield* Delegate.oneShot(Scripted.spawn(reviewer, { cwd: workdir }), {
      type: "user_input",
      items: [{ type: "text", text: "Review the change." }]
    })
    const events = yield* Stream.runCollect(review.events)
    for (const event of events) log(`   ${describe(event)}`)
    for (const { request, outcome } of yield* parentLog.entries) {
      const what =
        request.kind === "exec"
          ? request.command.join(" ")
          : request.kind === "patch"
            ? Object.keys(request.changes).join(", ")
            : "questions"
      log(`   parent: ${request.kind} ${what} -> ${outcome.type === "decided" ? outcome.decision : outcome.type}`)
    }
    const notes = yield* fs.readFileString(`${workdir}/REVIEW.md`)

    log("2. an interactive sub-agent cancelled in the middle of its turn")
    const runner = yield* Delegate.interactive(Scripted.spawn(longRunner, { cwd: workdir }))
    yield* runner.submit({ type: "user_input", items: [{ type: "text", text: "Build everything." }] })
    let pid: number | undefined
    while (pid === undefined) {
      const event = yield* runner.take
      log(`   ${describe(event)}`)
      if (event.msg.type === "exec_command_begin") pid = yield* readPid(`${workdir}/long-runner.pid`)
    }
    const before = yield* Clock.currentTimeMillis
    yield* runner.cancel
    const cancelMillis = (yield* Clock.currentTimeMillis) - before
    const sleepAlive = isAlive(pid)
    log(
      `   cancelled in ${cancelMillis} ms; the sleep process (pid ${pid}) is ${sleepAlive ? "STILL RUNNING" : "gone"}`
    )

    return {
      events: [...events].map((e) => e.msg.type),
      decisions: (yield* parentLog.entries).map((e) =>
        e.outcome.type === "decided" ? e.outcome.decision : e.outcome.type
      ),
      notes,
      cancelMillis,
      sleepAlive
    }
  }).pipe(Effect.scoped)

/** The pid the long runner writes as it starts (it may not have yet when its exec begins). */
const readPid = (path: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    for (let attempt = 0; attempt < 1000; attempt++) {
      const text = yield* fs.readFileString(path).pipe(Effect.orElseSucceed(() => ""))
      if (text.endsWith("\n")) return Number(text.trim())
      yield* Effect.sleep("10 millis")
    }
    return yield* Effect.dieMessage("the long runner never wrote its pid")
  })

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** The parent: the review policy, recorded so the demo can print every decision. */
export const parentLayer = Parent.layerRecording.pipe(Layer.provide(Parent.layerPolicy(reviewPolicy)))

if (import.meta.url === `file://${process.argv[1]}`) {
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const workdir = yield* fs.makeTempDirectoryScoped({ prefix: "deputy-demo-" })
    console.log(`deputy demo in ${workdir}\n`)
    const result = yield* demo(workdir, (line) => console.log(line))
    console.log(`\nREVIEW.md:\n${result.notes}`)
  }).pipe(Effect.scoped, Effect.provide(Layer.merge(parentLayer, NodeContext.layer)), NodeRuntime.runMain)
}
