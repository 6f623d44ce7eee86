/**
 * A mock model plus a fresh CODEX_HOME (with its config.toml) and cwd for one test of the real Codex
 * CLI, all removed after the test; `cleanups` also takes the test's own teardown (kill a process, …).
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type CodexConfigOptions, type MockModel, type ScenarioInput, startMockModel } from "@deputy/mock-model"
import { afterEach } from "vitest"

/** The environment variable Codex reads the mock's dummy key from. */
export const keyName = "DEPUTY_MOCK_MODEL_KEY"

/** What one test works in. */
export interface Sandbox {
  readonly home: string
  readonly cwd: string
  readonly model: MockModel
}

/** Teardown steps of the running test, run last-in first-out after it. */
export const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

/** Starts the mock with `scenario` and makes the test's CODEX_HOME and cwd. */
export const sandbox = async (
  scenario: ScenarioInput,
  config: CodexConfigOptions = {},
  prefix = "deputy-codex"
): Promise<Sandbox> => {
  const model = await startMockModel(scenario)
  cleanups.push(() => model.close())
  const home = await mkdtemp(join(tmpdir(), `${prefix}-home-`))
  const cwd = await mkdtemp(join(tmpdir(), `${prefix}-cwd-`))
  // A process of the test may still be writing there as it dies: retry what it re-creates.
  cleanups.push(() => rm(home, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }))
  cleanups.push(() => rm(cwd, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }))
  await model.writeCodexConfig(home, { envKey: keyName, ...config })
  return { home, cwd, model }
}
