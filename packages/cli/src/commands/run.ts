/** `deputy run [PROMPT]`: one turn of one sub-agent. */
import { Args, Command } from "@effect/cli"
import { usage } from "../errors.js"
import { listenForInterrupts } from "../interrupt.js"
import { humanPrinter, jsonPrinter } from "../output.js"
import { openSession, parseDuration, runTurn } from "../session.js"
import {
  backendOption,
  body,
  cwdOption,
  get,
  jsonOption,
  policyOption,
  scriptOption,
  threadOption,
  timeoutOption,
  verboseOption
} from "./shared.js"

const readStdin = async (): Promise<string> => {
  const chunks: Array<Buffer> = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString("utf8")
}

/** The `run` command. */
export const run = Command.make(
  "run",
  {
    prompt: Args.text({ name: "prompt" }).pipe(
      Args.withDescription("what to ask the sub-agent (default: stdin, when it is not a terminal)"),
      Args.optional
    ),
    backend: backendOption,
    script: scriptOption,
    cwd: cwdOption,
    thread: threadOption,
    policy: policyOption,
    json: jsonOption,
    timeout: timeoutOption,
    verbose: verboseOption
  },
  (args) =>
    body(async () => {
      const timeout = get(args.timeout)
      const timeoutMs = timeout === undefined ? undefined : parseDuration(timeout, "--timeout")
      const interactive = process.stdin.isTTY === true
      let prompt = get(args.prompt)
      if (prompt === undefined) {
        if (interactive) throw usage("give a PROMPT (deputy run 'review src/'), or pipe one on stdin")
        prompt = (await readStdin()).trim()
        if (prompt === "") throw usage("the prompt on stdin is empty: give a PROMPT")
      }
      const printer = args.json ? jsonPrinter() : humanPrinter()
      const interrupts = listenForInterrupts()
      const timer = timeoutMs === undefined ? undefined : setTimeout(() => interrupts.cancel("timeout"), timeoutMs)
      try {
        const { deputy, thread } = await openSession(
          {
            backend: args.backend,
            script: get(args.script),
            cwd: get(args.cwd),
            thread: get(args.thread),
            policy: get(args.policy),
            interactive
          },
          interrupts,
          printer
        )
        try {
          await runTurn(thread, prompt, printer, interrupts, timeout)
        } finally {
          await deputy.close().catch(() => undefined)
        }
      } finally {
        if (timer !== undefined) clearTimeout(timer)
        interrupts.dispose()
      }
    })
).pipe(
  Command.withDescription(
    "Run one turn of a sub-agent and exit: 0 done, 1 the turn failed, 2 bad usage or input, 124 timeout, 130 cancelled.\n" +
      "Example: deputy run --script review.yaml --policy policy.yaml --json 'review src/'"
  )
)
