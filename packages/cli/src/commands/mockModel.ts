/**
 * `deputy mock-model SCENARIO`: serves a @deputy/mock-model scenario on 127.0.0.1 (never another
 * address: the mock answers anyone who can reach it) until Ctrl-C, and prints how to point Codex at it.
 */

import { loadScenarioFile, startMockModel } from "@deputy/mock-model"
import { Args, Command, Options } from "@effect/cli"
import { usage } from "../errors.js"
import { readText } from "../files.js"
import { body, get } from "./shared.js"

/** The `mock-model` command. */
export const mockModel = Command.make(
  "mock-model",
  {
    scenario: Args.text({ name: "scenario" }).pipe(Args.withDescription("the scenario file (YAML or JSON)")),
    codexHome: Options.text("codex-home").pipe(
      Options.withDescription("write a config.toml there that points Codex at the mock (CODEX_HOME)"),
      Options.optional
    )
  },
  (args) =>
    body(async () => {
      await readText(args.scenario, "scenario") // a missing file is named as such
      const scenario = await loadScenarioFile(args.scenario).catch((error: unknown) => {
        throw usage(error instanceof Error ? (error.message.split("\n")[0] ?? error.message) : String(error))
      })
      const model = await startMockModel(scenario)
      const home = get(args.codexHome)
      process.stdout.write(`mock model serving ${args.scenario} at ${model.url}\n`)
      if (home === undefined) {
        process.stdout.write(
          `point Codex at it: deputy mock-model ${args.scenario} --codex-home DIR writes DIR/config.toml; then CODEX_HOME=DIR codex …\n`
        )
      } else {
        const path = await model.writeCodexConfig(home)
        process.stdout.write(`wrote ${path}\npoint Codex at it: export CODEX_HOME=${home}\n`)
        process.stdout.write(`or: deputy run --backend codex 'your prompt' with CODEX_HOME=${home}\n`)
      }
      process.stdout.write("Ctrl-C stops it\n")
      await new Promise<void>((resolve) => {
        const stop = () => resolve()
        process.once("SIGINT", stop)
        process.once("SIGTERM", stop)
      })
      await model.close()
    })
).pipe(
  Command.withDescription(
    "Serve a mock-model scenario on 127.0.0.1 so the real Codex CLI runs offline (CI), until Ctrl-C.\n" +
      "Example: deputy mock-model scenario.yaml --codex-home /tmp/codex-home"
  )
)
