/**
 * What `run` and `chat` share: a Deputy set up from the command line (backend, policy, approvals
 * asked at the terminal or decided by default), a thread started or resumed, and one turn run to its
 * end with its outcome as an exit code.
 */
import { Deputy, DeputyError, type DeputyThread, RunAborted, type RunInput, RunStalled } from "@deputy/sdk"
import type { Policy } from "@deputy/sdk/core"
import { type ApprovalLine, type Ask, approver, terminalAsk } from "./approvals.js"
import { type BackendName, loadScript, makeBackend } from "./backends.js"
import { CliError, ExitCode, oneLine, usage } from "./errors.js"
import { loadPolicyFile } from "./files.js"
import type { Interrupts } from "./interrupt.js"
import type { Printer } from "./output.js"

/** The options `run` and `chat` share. */
export interface SessionOptions {
  readonly backend: BackendName
  readonly script: string | undefined
  readonly cwd: string | undefined
  readonly thread: string | undefined
  readonly policy: string | undefined
  /** Ask a person for what no rule decides (stdin is a terminal). */
  readonly interactive: boolean
  /** `--thread` must resume: no fallback to a fresh thread (`deputy threads resume`). */
  readonly resumeOnly?: boolean
  /** How to ask a person, when not through a readline of its own (chat reads prompts and answers from one). */
  readonly ask?: Ask
}

/** A Deputy and its thread, ready for turns. */
export interface Session {
  readonly deputy: Deputy
  readonly thread: DeputyThread
}

/** Reads the files, makes the Deputy and starts (or resumes) the thread. Bad input is a usage error. */
export const openSession = async (
  options: SessionOptions,
  interrupts: Pick<Interrupts, "onCtrlC">,
  printer: { approval: (line: ApprovalLine) => void }
): Promise<Session> => {
  if (options.backend !== "scripted" && options.script !== undefined) {
    throw usage(`--script is for --backend scripted, not ${options.backend}`)
  }
  const script = options.script === undefined ? undefined : await loadScript(options.script)
  const policy: Policy =
    options.policy === undefined
      ? { exec: [], patch: [], answers: {}, default: "denied" }
      : await loadPolicyFile(options.policy)
  const backend = makeBackend({
    backend: options.backend,
    ...(script === undefined ? {} : { script }),
    ...(options.cwd === undefined ? {} : { cwd: options.cwd })
  })
  const approvals =
    options.backend === "codex-exec"
      ? { policy } // Codex exec never asks: the policy alone must approve everything.
      : approver({
          policy,
          ...(options.interactive ? { ask: options.ask ?? terminalAsk(interrupts.onCtrlC) } : {}),
          onSettled: printer.approval
        })
  const deputy = new Deputy({
    ...approvals,
    backend,
    onWarning: (message) => process.stderr.write(`deputy: warning: ${message.replace(/^deputy: /, "")}\n`)
  })
  try {
    const cwd = options.cwd === undefined ? {} : { cwd: options.cwd }
    if (options.thread === undefined) return { deputy, thread: await deputy.startThread({ backend, ...cwd }) }
    try {
      const thread = await deputy.resumeThread(options.thread, { backend, ...cwd })
      process.stderr.write(`deputy: resumed thread ${thread.id} from its rollout\n`)
      return { deputy, thread }
    } catch (error) {
      if (!(error instanceof DeputyError) || error._tag !== "RolloutNotFound") throw error
      if (options.resumeOnly === true) {
        throw usage(
          `thread ${options.thread} has no rollout to resume: check the id (deputy threads list) and DEPUTY_HOME`
        )
      }
      const thread = await deputy.startThread({ backend, threadId: options.thread, ...cwd })
      process.stderr.write(`deputy: no rollout of thread ${options.thread} to resume: started it fresh\n`)
      return { deputy, thread }
    }
  } catch (error) {
    await deputy.close().catch(() => undefined)
    throw asCliError(error)
  }
}

/** A failure from the SDK as the CLI reports it: bad input is exit 2, the rest exit 1. */
export const asCliError = (error: unknown): CliError => {
  if (error instanceof CliError) return error
  if (error instanceof DeputyError) {
    const code = ["InvalidInput", "InvalidBackend", "DuplicateThreadId", "CodexNotInstalled"].includes(error._tag)
      ? ExitCode.usage
      : ExitCode.failed
    return new CliError({ code, message: oneLine(error), cause: error })
  }
  return new CliError({ code: ExitCode.failed, message: oneLine(error), cause: error })
}

/** Runs one turn, printing as it goes. Resolves to the agent's last message when it ended well; rejects with the CliError saying how it did not. */
export const runTurn = async (
  thread: DeputyThread,
  input: RunInput,
  printer: Printer,
  interrupts: Pick<Interrupts, "signal" | "reason">,
  timeout: string | undefined
): Promise<string | undefined> => {
  let failed: string | undefined
  let ended = false
  let output: string | undefined
  try {
    for await (const event of thread.runStreamed(input, { signal: interrupts.signal })) {
      printer.event(event)
      if (event.type === "error") failed ??= event.message
      if (event.type === "turn_aborted") failed ??= `the turn was aborted (${event.reason})`
      if (event.type === "agent_message") output = event.message
      if (event.type === "turn_complete") {
        ended = true
        output = event.lastAgentMessage ?? output
      }
    }
  } catch (error) {
    if (error instanceof RunAborted) {
      const reason = interrupts.reason()
      if (reason === "timeout") {
        throw new CliError({
          code: ExitCode.timeout,
          message: `timed out after ${timeout}: the thread was cancelled (raise --timeout)`
        })
      }
      throw new CliError({ code: ExitCode.cancelled, message: "cancelled: the thread was interrupted and shut down" })
    }
    if (error instanceof RunStalled) {
      throw new CliError({ code: ExitCode.failed, message: oneLine(error), cause: error })
    }
    throw new CliError({ code: ExitCode.failed, message: `the turn failed: ${oneLine(error)}`, cause: error })
  }
  if (failed !== undefined) throw new CliError({ code: ExitCode.failed, message: `the turn failed: ${failed}` })
  if (!ended) throw new CliError({ code: ExitCode.failed, message: "the turn ended without completing" })
  return output
}

/** A duration from the command line: `500ms`, `30s`, `2m`, `1h`, or seconds. */
export const parseDuration = (text: string, what: string): number => {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim())
  if (match === null) throw usage(`${what} ${JSON.stringify(text)}: expected a duration such as 500ms, 30s, 2m or 1h`)
  const n = Number(match[1])
  const unit = match[2] ?? "s"
  return n * (unit === "ms" ? 1 : unit === "s" ? 1000 : unit === "m" ? 60_000 : 3_600_000)
}

/** Cancels through `interrupts` (reason `timeout`) after `--timeout`, if given; returns what disarms it. */
export const armTimeout = (interrupts: Pick<Interrupts, "cancel">, timeout: string | undefined): (() => void) => {
  if (timeout === undefined) return () => undefined
  const timer = setTimeout(() => interrupts.cancel("timeout"), parseDuration(timeout, "--timeout"))
  return () => clearTimeout(timer)
}
