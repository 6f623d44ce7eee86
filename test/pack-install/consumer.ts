// A user's program, outside the monorepo: installed from the packed tarballs with npm, type-checked
// with NodeNext + strict, run with plain node. Prints one JSON line of what it saw.
import { existsSync } from "node:fs"
import { join } from "node:path"
import { type ApprovalRequest, codex, Deputy, DeputyError, RunAborted, scripted } from "@deputy/sdk"
import { Delegate, Parent, policy } from "@deputy/sdk/core"
import { Scripted } from "@deputy/sdk/scripted"
import { NodeContext } from "@effect/platform-node"
import { Chunk, Effect, Layer, Stream } from "effect"

const home = process.argv[2] ?? "."
const LASTING = ["ProcessWrap", "PipeWrap", "Timeout", "TCPWrap", "TCPServerWrap", "Immediate"]

const review = scripted(`
turns:
  - steps:
      - { type: exec, command: [echo, approved command ran] }
      - { type: exec, command: [curl, example.com] }
      - { type: message, text: review done }
`)

// A misspelt decision does not compile.
// @ts-expect-error "aproved" is not a Decision
export const misspelt: ConstructorParameters<typeof Deputy>[0] = { onApproval: () => "aproved" }

const oneShot = async () => {
  await using deputy = new Deputy({ home, policy: { exec: [{ prefix: ["echo"], decision: "approved" }] } })
  const thread = await deputy.startThread({ backend: review })
  const result = await thread.run("review the diff")
  return {
    finalResponse: result.finalResponse,
    decisions: result.approvals.map((a) => `${a.decision} by ${a.by}`),
    ran: result.events.flatMap((e) => (e.type === "exec_command_end" ? [e.stdout.trim()] : []))
  }
}

const cancelWhilePending = async () => {
  const marker = join(home, "must-not-exist")
  let asked: (signal: AbortSignal) => void = () => {}
  const askedWith = new Promise<AbortSignal>((resolve) => {
    asked = resolve
  })
  await using deputy = new Deputy({
    home,
    onApproval: (_request: ApprovalRequest, { signal }) => {
      asked(signal)
      return new Promise<undefined>(() => {}) // a person who never answers
    }
  })
  const thread = await deputy.startThread({
    backend: scripted({ turns: [{ steps: [{ type: "exec", command: ["touch", marker] }] }] })
  })
  const controller = new AbortController()
  void askedWith.then(() => controller.abort())
  const seen: Array<string> = []
  let error: unknown
  try {
    for await (const event of thread.runStreamed("go", { signal: controller.signal })) seen.push(event.type)
  } catch (e) {
    error = e
  }
  const signal = await askedWith
  return {
    error: error instanceof RunAborted ? error._tag : String(error),
    isDeputyError: error instanceof DeputyError,
    callbackSignalAborted: signal.aborted,
    commandRan: existsSync(marker),
    withdrawn: error instanceof RunAborted ? error.report.withdrawn.length : -1
  }
}

/** `@openai/codex` is an optional peer, not installed here (and no `codex` on PATH): the start names it. */
const codexMissing = async () => {
  await using deputy = new Deputy({ home })
  const error = await deputy.startThread({ backend: codex() }).then(
    () => undefined,
    (e: unknown) => e
  )
  return error instanceof DeputyError
    ? { tag: error._tag, namesPackage: error.message.includes("@openai/codex") }
    : String(error)
}

const effectApi = () =>
  Effect.gen(function* () {
    const agent = Scripted.spawn({ turns: [{ steps: [{ type: "message", text: "from the Effect API" }] }] })
    const delegate = yield* Delegate.oneShot(agent, "go")
    const events = Chunk.toArray(yield* Stream.runCollect(delegate.events))
    const last = events.at(-1)?.msg
    return last?.type === "turn_complete" ? last.lastAgentMessage : undefined
  }).pipe(
    Effect.scoped,
    Effect.provide(Layer.merge(Parent.layerPolicy(policy({})), NodeContext.layer)),
    Effect.runPromise
  )

const main = async () => {
  const result = {
    oneShot: await oneShot(),
    cancel: await cancelWhilePending(),
    codexMissing: await codexMissing(),
    effect: await effectApi()
  }
  await new Promise((resolve) => setImmediate(resolve))
  // What is left after every `await using` closed: this process's own stdio only.
  const handles = (process as unknown as { _getActiveHandles(): Array<unknown> })._getActiveHandles()
  const ownStdio = handles.filter((h) => h === process.stdin || h === process.stdout || h === process.stderr)
  const left = process.getActiveResourcesInfo().filter((r) => LASTING.includes(r))
  for (const _ of ownStdio) if (left.includes("PipeWrap")) left.splice(left.indexOf("PipeWrap"), 1)
  console.log(JSON.stringify({ ...result, left }))
}

await main()
