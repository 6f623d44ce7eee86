/** Reads a scenario file: `.yaml`/`.yml` as YAML, anything else as JSON. */
import { readFile } from "node:fs/promises"
import { parse as parseYaml } from "yaml"
import { MockModelFailed } from "./errors.js"
import { decodeScenario } from "./MockModel.js"
import type { Scenario } from "./Scenario.js"

/** Loads and decodes a scenario file; rejects with InvalidScenario (bad content) or MockModelFailed (unreadable). */
export const loadScenarioFile = async (path: string): Promise<Scenario> => {
  let text: string
  try {
    text = await readFile(path, "utf8")
  } catch (cause) {
    throw new MockModelFailed({ reason: `cannot read ${path}`, cause })
  }
  let value: unknown
  try {
    value = /\.ya?ml$/i.test(path) ? parseYaml(text) : JSON.parse(text)
  } catch (cause) {
    throw new MockModelFailed({ reason: `cannot parse ${path}: ${String(cause)}`, cause })
  }
  return decodeScenario(value, path)
}
