/** `deputy pipeline FILE`: a YAML file of named sub-agent steps, run as a graph. */
import { Args, Command } from "@effect/cli"
import { terminalAsk } from "../approvals.js"
import { CliError, ExitCode } from "../errors.js"
import { listenForInterrupts } from "../interrupt.js"
import { loadPipeline } from "../pipeline/Pipeline.js"
import { pipelineSucceeded, runPipeline } from "../pipeline/runPipeline.js"
import { jsonView, liveView, plainView } from "../pipeline/views.js"
import { body, jsonOption, verboseOption } from "./shared.js"

/** The `pipeline` command. */
export const pipeline = Command.make(
  "pipeline",
  {
    file: Args.text({ name: "file" }).pipe(Args.withDescription("the pipeline file (YAML)")),
    json: jsonOption,
    verbose: verboseOption
  },
  (args) =>
    body(async () => {
      const loaded = await loadPipeline(args.file)
      const view = args.json ? jsonView() : process.stdout.isTTY === true ? liveView() : plainView()
      const interrupts = listenForInterrupts(() => process.stdout.write("\u001b[?25h"))
      try {
        const ask = process.stdin.isTTY === true ? view.wrapAsk(terminalAsk(interrupts.onCtrlC)) : undefined
        view.start(loaded.steps.map((s) => ({ name: s.name, state: "waiting" })))
        const steps = await runPipeline(loaded, { observer: view, signal: interrupts.signal, ask })
        view.finish(steps)
        if (interrupts.reason() === "interrupted") {
          throw new CliError({ code: ExitCode.cancelled, message: "cancelled: every running step was shut down" })
        }
        if (!pipelineSucceeded(steps)) throw new CliError({ code: ExitCode.failed, message: "" })
      } finally {
        interrupts.dispose()
      }
    })
).pipe(
  Command.withDescription(
    "Run a pipeline of sub-agents: named steps with needs, timeouts and policies. Exit 0 when every step succeeded (optional ones aside), 1 otherwise.\n" +
      "Example: deputy pipeline examples/pipeline/pipeline.yaml"
  )
)
