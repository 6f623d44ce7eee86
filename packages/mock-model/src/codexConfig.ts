/** Renders the Codex `config.toml` (and, when asked, a model catalog) that points Codex 0.169 at a mock model. */
import { mkdir, writeFile } from "node:fs/promises"
import { join } from "node:path"

/** Options of `writeCodexConfig`. */
export interface CodexConfigOptions {
  /** Model slug Codex sends; an unknown slug gets fallback metadata (and one `warning` per thread). */
  readonly model?: string
  /** Provider `env_key`: Codex then sends `Authorization: Bearer $<envKey>` and fails when the variable is unset. */
  readonly envKey?: string
  /** Write `model_catalog.json` with `apply_patch_tool_type: "freeform"`, so Codex offers the custom apply_patch tool. */
  readonly applyPatchTool?: boolean
  /** `[features] default_mode_request_user_input = true`: request_user_input works outside plan mode. */
  readonly requestUserInput?: boolean
  /** Appended verbatim (top-level keys must not repeat ones written here). */
  readonly extraToml?: string
}

/** The provider id written into config.toml. */
export const providerId = "deputy_mock"

// TOML basic strings accept JSON's escapes.
const str = (value: string): string => JSON.stringify(value)

/** A one-model catalog for `model_catalog_json`, in the shape of `codex debug models --bundled`. */
export const modelCatalog = (model: string) => ({
  models: [
    {
      slug: model,
      display_name: model,
      description: "deputy mock model",
      default_reasoning_level: "medium",
      supported_reasoning_levels: [{ effort: "medium", description: "medium" }],
      shell_type: "unified_exec",
      visibility: "list",
      supported_in_api: true,
      priority: 1,
      base_instructions: "You are a mock model used in tests.",
      default_reasoning_summary: "none",
      support_verbosity: false,
      apply_patch_tool_type: "freeform",
      truncation_policy: { mode: "tokens", limit: 10000 },
      context_window: 272000,
      effective_context_window_percent: 95,
      experimental_supported_tools: [],
      input_modalities: ["text"],
      supports_search_tool: false
    }
  ]
})

/** The config.toml text: the mock as the only provider, nothing that reaches the network. */
export const codexConfigToml = (baseUrl: string, options: CodexConfigOptions = {}, catalogPath?: string): string => {
  const model = options.model ?? "mock-model"
  const lines = [
    "# Written by @deputy/mock-model: Codex talks only to the local mock.",
    `model = ${str(model)}`,
    `model_provider = ${str(providerId)}`,
    ...(catalogPath === undefined ? [] : [`model_catalog_json = ${str(catalogPath)}`]),
    'web_search = "disabled"',
    "check_for_update_on_startup = false",
    "",
    "[analytics]",
    "enabled = false",
    "",
    "[feedback]",
    "enabled = false",
    "",
    "[features]",
    // Codex syncs its curated plugins from github.com at every start (git ls-remote: DNS, HTTPS).
    "plugins = false",
    ...(options.requestUserInput === true ? ["default_mode_request_user_input = true"] : []),
    "",
    `[model_providers.${providerId}]`,
    'name = "deputy mock model"',
    `base_url = ${str(baseUrl)}`,
    'wire_api = "responses"',
    ...(options.envKey === undefined ? [] : [`env_key = ${str(options.envKey)}`]),
    "request_max_retries = 0",
    "stream_max_retries = 0",
    "supports_websockets = false",
    ""
  ]
  return [...lines, ...(options.extraToml === undefined ? [] : [options.extraToml, ""])].join("\n")
}

/** Writes `<codexHome>/config.toml` (and `model_catalog.json` if asked); returns the config path. */
export const writeCodexConfigFile = async (
  codexHome: string,
  baseUrl: string,
  options: CodexConfigOptions = {}
): Promise<string> => {
  await mkdir(codexHome, { recursive: true })
  let catalogPath: string | undefined
  if (options.applyPatchTool === true) {
    catalogPath = join(codexHome, "model_catalog.json")
    await writeFile(catalogPath, `${JSON.stringify(modelCatalog(options.model ?? "mock-model"), null, 2)}\n`)
  }
  const configPath = join(codexHome, "config.toml")
  await writeFile(configPath, codexConfigToml(baseUrl, options, catalogPath))
  return configPath
}
