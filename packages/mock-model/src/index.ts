/** @deputy/mock-model: a scripted OpenAI Responses-compatible server on 127.0.0.1, for running Codex offline. */
export {
  /** Options of `writeCodexConfig`: model slug, env key, apply_patch catalog, request_user_input, extra TOML. */
  type CodexConfigOptions,
  /** The config.toml text that points Codex at a mock base URL. */
  codexConfigToml,
  /** A one-model catalog for `model_catalog_json` that enables the freeform apply_patch tool. */
  modelCatalog,
  /** The provider id written into config.toml. */
  providerId
} from "./codexConfig.js"
/** The error types: InvalidScenario (names each bad field) and MockModelFailed (listen or file errors). */
export { InvalidScenario, MockModelFailed } from "./errors.js"
/** A tool result found in a request's `input`. */
export type { CallOutput } from "./internal/requestBody.js"
/** Loads a JSON or YAML scenario file and decodes it. */
export { loadScenarioFile } from "./loadScenario.js"
/** The server: `startMockModel` (Promise), `MockModel.scoped` (Effect), the request log and scenario decoding. */
export { decodeScenario, MockModel, type RecordedRequest, startMockModel } from "./MockModel.js"
/** The scenario format (zod schemas and their types). */
export {
  ApplyPatchStep,
  DelayStep,
  DisconnectStep,
  ExecCommandStep,
  FailStep,
  FunctionCallStep,
  HttpErrorStep,
  IncompleteStep,
  Match,
  MessageStep,
  MockResponse,
  ReasoningStep,
  RequestUserInputStep,
  Scenario,
  type ScenarioInput,
  Step,
  Usage,
  UserInputOption,
  UserInputQuestion
} from "./Scenario.js"
