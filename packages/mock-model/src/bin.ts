#!/usr/bin/env node
/** deputy-mock-model: serves a scenario on 127.0.0.1 until SIGINT/SIGTERM; prints the base URL on stdout. */
import { parseArgs } from "node:util"
import { loadScenarioFile } from "./loadScenario.js"
import { startMockModel } from "./MockModel.js"

const usage = "usage: deputy-mock-model --scenario <file.json|file.yaml> [--codex-home <dir>]"

const main = async (): Promise<void> => {
  const { values } = parseArgs({
    options: {
      scenario: { type: "string" },
      "codex-home": { type: "string" },
      help: { type: "boolean", short: "h" }
    },
    strict: true
  })
  if (values.help === true) {
    process.stdout.write(`${usage}\n`)
    return
  }
  if (values.scenario === undefined) throw new Error(`--scenario is required\n${usage}`)
  const model = await startMockModel(await loadScenarioFile(values.scenario))
  const codexHome = values["codex-home"]
  if (codexHome !== undefined) {
    const path = await model.writeCodexConfig(codexHome)
    process.stderr.write(`wrote ${path}\n`)
  }
  process.stdout.write(`${model.url}\n`)
  const stop = () => {
    model.close().then(() => process.exit(0))
  }
  process.once("SIGINT", stop)
  process.once("SIGTERM", stop)
}

main().catch((error: unknown) => {
  process.stderr.write(`deputy-mock-model: ${error instanceof Error ? error.message : String(error)}\n`)
  process.exit(2)
})
