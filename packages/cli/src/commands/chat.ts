/**
 * `deputy chat`: an interactive sub-agent. Each line (typed at the `>` prompt, or read from stdin
 * when it is not a terminal) is one turn of the same thread. Approvals are asked inline on a
 * terminal. Ctrl-C during a turn interrupts it (the thread is cancelled, then resumed from its
 * rollout for the next prompt); Ctrl-C at the prompt, or a second one, ends the session (exit 130).
 */
import { createInterface } from "node:readline"
import type { DeputyThread } from "@deputy/sdk"
import { Command } from "@effect/cli"
import type { Ask } from "../approvals.js"
import { CliError, ExitCode } from "../errors.js"
import type { Interrupts } from "../interrupt.js"
import { humanPrinter, jsonPrinter } from "../output.js"
import { openSession, runTurn } from "../session.js"
import {
  backendOption,
  body,
  cwdOption,
  get,
  jsonOption,
  policyOption,
  scriptOption,
  threadOption,
  verboseOption
} from "./shared.js"

/** Lines from stdin, one at a time; `undefined` once input ends. */
const lineReader = (tty: boolean, onCtrlC: () => void) => {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: tty })
  const lines: Array<string> = []
  const waiting: Array<(line: string | undefined) => void> = []
  let closed = false
  rl.on("line", (line) => {
    const next = waiting.shift()
    if (next === undefined) lines.push(line)
    else next(line)
  })
  rl.on("close", () => {
    closed = true
    for (const next of waiting.splice(0)) next(undefined)
  })
  rl.on("SIGINT", onCtrlC)
  const next = (prompt: string): Promise<string | undefined> => {
    const line = lines.shift()
    if (line !== undefined) return Promise.resolve(line)
    if (closed) return Promise.resolve(undefined)
    if (tty) {
      rl.setPrompt(prompt)
      rl.prompt()
    }
    return new Promise((resolve) => waiting.push(resolve))
  }
  const ask: Ask = (question, signal) =>
    new Promise((resolve, reject) => {
      const onAbort = () => {
        const i = waiting.indexOf(answer)
        if (i >= 0) waiting.splice(i, 1)
        process.stderr.write("\n")
        reject(new Error("the request was withdrawn"))
      }
      const answer = (line: string | undefined) => {
        signal.removeEventListener("abort", onAbort)
        if (line === undefined) reject(new Error("input ended"))
        else resolve(line)
      }
      signal.addEventListener("abort", onAbort, { once: true })
      rl.setPrompt(question)
      rl.prompt()
      waiting.push(answer)
    })
  return { next, ask, close: () => rl.close() }
}

/** The `chat` command. */
export const chat = Command.make(
  "chat",
  {
    backend: backendOption,
    script: scriptOption,
    cwd: cwdOption,
    thread: threadOption,
    policy: policyOption,
    json: jsonOption,
    verbose: verboseOption
  },
  (args) =>
    body(async () => {
      const tty = process.stdin.isTTY === true
      const printer = args.json ? jsonPrinter() : humanPrinter()
      // Ctrl-C goes to the turn in flight first; at the prompt (or a second one) it ends the session.
      let turn: (Pick<Interrupts, "signal" | "reason"> & { abort: () => void }) | undefined
      let ended = false
      const onCtrlC = () => {
        if (turn !== undefined && turn.reason() === undefined) {
          turn.abort()
          process.stderr.write("deputy: interrupting the turn (Ctrl-C again to end the session)\n")
          return
        }
        if (turn !== undefined) {
          process.stderr.write("deputy: interrupted again: exiting now\n")
          process.exit(130)
        }
        ended = true
        reader.close()
      }
      process.on("SIGINT", onCtrlC)
      const reader = lineReader(tty, onCtrlC)
      const { deputy, thread: first } = await openSession(
        {
          backend: args.backend,
          script: get(args.script),
          cwd: get(args.cwd),
          thread: get(args.thread),
          policy: get(args.policy),
          interactive: tty,
          // Approvals are asked through the same reader as the prompts (one reader on stdin).
          ask: reader.ask
        },
        { onCtrlC },
        printer
      ).then(
        (opened) => opened,
        (error: unknown) => {
          reader.close()
          process.off("SIGINT", onCtrlC)
          throw error
        }
      )
      let thread: DeputyThread = first
      let failures = 0
      try {
        for (;;) {
          const line = await reader.next("> ")
          if (line === undefined || ended) break
          if (line.trim() === "") continue
          const controller = new AbortController()
          let why: string | undefined
          turn = {
            signal: controller.signal,
            reason: () => why,
            abort: () => {
              why = "interrupted"
              controller.abort()
            }
          }
          try {
            await runTurn(thread, line, printer, turn, undefined)
          } catch (error) {
            if (!(error instanceof CliError)) throw error
            if (error.code === ExitCode.cancelled) {
              // The thread was cancelled with its turn: pick it up again from its rollout.
              thread = await deputy.resumeThread(thread.id)
              process.stderr.write(`deputy: turn interrupted; thread ${thread.id} resumed for the next prompt\n`)
            } else {
              failures++
              process.stderr.write(`deputy: ${error.message}\n`)
            }
          } finally {
            turn = undefined
          }
        }
      } finally {
        reader.close()
        process.off("SIGINT", onCtrlC)
        await deputy.close().catch(() => undefined)
      }
      if (ended) throw new CliError({ code: ExitCode.cancelled, message: "session ended (Ctrl-C)" })
      if (failures > 0) throw new CliError({ code: ExitCode.failed, message: `${failures} turn(s) failed` })
    })
).pipe(
  Command.withDescription(
    "Chat with a sub-agent: each line is a turn of one thread; approvals asked inline. Ctrl-C interrupts a turn; at the prompt it ends the session.\n" +
      "Example: deputy chat --script assistant.yaml --policy policy.yaml"
  )
)
