/**
 * The Codex side of the stress harness (`stress({ backend: "codex" })`): each top-level agent is a
 * thread of the real Codex app-server, its turn played by deputy's mock model on 127.0.0.1. A seeded
 * chain of model responses per agent — messages (streamed), reasoning, then an exec, an apply_patch
 * or a request_user_input, answered by the same parents as the scripted run — is merged into one
 * scenario the mock serves to every agent (each response matched by the agent's own tag or call id).
 *
 * Each exec and patch writes a file named after its call, so whether it ran is read from the disk,
 * not from Codex's events (an app-server `fileChange` item starts before its approval is asked).
 */
import { mkdir } from "node:fs/promises"
import { join } from "node:path"
import { type AppServerProcess, CodexAppServer } from "@deputy/codex"
import type { Backend } from "@deputy/core"
import { MockModel, type ScenarioInput } from "@deputy/mock-model"
import { Effect } from "effect"

/** The env variable the mock's dummy key is read from (Codex sends it as a bearer token to 127.0.0.1 only). */
const KEY_NAME = "DEPUTY_STRESS_MOCK_KEY"

/** What one model response of an agent's chain ends with. */
export type CodexTool =
  | { readonly type: "exec"; readonly callId: string; readonly file: string }
  | { readonly type: "patch"; readonly callId: string; readonly file: string }
  | { readonly type: "ask"; readonly callId: string }

/** What a Codex agent plays: its prompt (with its tag), and the mock's responses for it, in order. */
export interface CodexPlay {
  /** The user input that starts the turn; holds the agent's tag, which the first response matches. */
  readonly prompt: string
  readonly responses: ReadonlyArray<NonNullable<ScenarioInput["responses"]>[number]>
  /** The tool each response but the last ends with, in order. */
  readonly tools: ReadonlyArray<CodexTool>
  /** Runs on its own app-server process (shut down with the thread) rather than the shared one. */
  readonly ownProcess: boolean
}

/** The draws a plan needs (the harness's seeded PRNG). */
export interface Draws {
  readonly next: () => number
  readonly int: (lo: number, hi: number) => number
}

/** The chain of model responses agent `index` of run `seed` plays on Codex. */
export const codexPlay = (r: Draws, seed: number, index: number): CodexPlay => {
  const tag = `[s${seed}a${index}]`
  const responses: Array<NonNullable<ScenarioInput["responses"]>[number]> = []
  const tools: Array<CodexTool> = []
  const count = r.int(0, 3)
  let previous: string | undefined
  for (let k = 0; k <= count; k++) {
    const steps: Array<Record<string, unknown>> = []
    if (r.next() < 0.3) steps.push({ type: "reasoning", summary: `a${index} thinks ${k}` })
    if (r.next() < 0.5) steps.push({ type: "message", text: `a${index} says ${k}`, deltas: r.int(1, 4) })
    if (r.next() < 0.3) steps.push({ type: "delay", ms: r.int(0, 20) })
    const callId = `s${seed}-a${index}-k${k}`
    if (k < count) {
      const roll = r.next()
      if (roll < 0.45) {
        const file = `x-s${seed}-a${index}-k${k}`
        steps.push({ type: "exec_command", callId, cmd: `touch ${file}` })
        tools.push({ type: "exec", callId, file })
      } else if (roll < 0.8) {
        const file = `p-s${seed}-a${index}-k${k}.txt`
        steps.push({
          type: "apply_patch",
          callId,
          patch: `*** Begin Patch\n*** Add File: ${file}\n+a${index} ${k}\n*** End Patch`
        })
        tools.push({ type: "patch", callId, file })
      } else {
        steps.push({
          type: "request_user_input",
          callId,
          questions: [{ id: "q", question: "which?", options: [{ label: "a" }, { label: "b" }] }]
        })
        tools.push({ type: "ask", callId })
      }
    } else {
      steps.push({ type: "message", text: `a${index} done`, deltas: r.int(1, 3) })
    }
    responses.push({
      name: `a${index}.${k}`,
      match: previous === undefined ? { lastUserMessageContains: tag } : { callOutput: previous },
      steps: steps as never
    })
    previous = callId
  }
  return { prompt: `stress ${tag}: go`, responses, tools, ownProcess: r.next() < 0.25 }
}

/**
 * Starts the mock model serving every agent's chain, a CODEX_HOME pointing Codex at it, and one shared
 * app-server process, all in the caller's scope; returns the backend for each agent.
 */
export const codexSetup = (plays: ReadonlyArray<CodexPlay>, workspace: string, codexHome: string) =>
  Effect.gen(function* () {
    const model = yield* MockModel.scoped({ responses: plays.flatMap((p) => [...p.responses]) })
    yield* Effect.promise(async () => {
      await mkdir(codexHome, { recursive: true })
      await model.writeCodexConfig(codexHome, { envKey: KEY_NAME, applyPatchTool: true, requestUserInput: true })
    })
    const processOptions = {
      cwd: workspace,
      env: { HOME: codexHome, CODEX_HOME: codexHome, [KEY_NAME]: "dummy" },
      shutdownGrace: "2 seconds"
    } as const
    // Codex asks before every command it does not trust: each exec and patch reaches the parents.
    const threadOptions = { approvalPolicy: "untrusted", sandbox: "workspace-write" } as const
    let shared: AppServerProcess | undefined
    if (plays.some((p) => !p.ownProcess)) shared = yield* CodexAppServer.process(processOptions)
    const own = CodexAppServer.backend({ ...processOptions, ...threadOptions })
    const onShared = shared === undefined ? own : CodexAppServer.backendOn(shared, threadOptions)
    return {
      model,
      backendFor: (play: CodexPlay): Backend => (play.ownProcess ? own : onShared)
    }
  })

/** Where an agent's exec or patch writes, in the run's workspace. */
export const toolPath = (workspace: string, tool: CodexTool): string | undefined =>
  tool.type === "ask" ? undefined : join(workspace, tool.file)
