/** @deputy/codex: the Codex backends. */

export {
  /** One running `codex app-server`, shareable by several agents. */
  type AppServerProcess,
  /** The app-server backend: `process`, `backend`, `backendOn`, `name`, `optedOutNotifications`. */
  CodexAppServer,
  /** How to run the app-server process: binary, args, env additions, cwd, shutdown grace. */
  type ProcessOptions,
  /** thread/start overrides: model, approvalPolicy, sandbox, config, developer instructions, events capacity. */
  type ThreadOptions
} from "./AppServer.js"
/** The exec backend (§26): `CodexExec.backend(options)`, `checkPolicy`, `ApprovalsUnsupported`, pointer helpers. */
export * as CodexExec from "./Exec.js"
/** Errors: BackendExited (the process ended under a request) and JsonRpcError (an error response). */
export { BackendExited, JsonRpcError } from "./errors.js"
/** The JSON-RPC 2.0 client over stdio lines (`make`, `Peer`, `Handlers`, `JsonRpcClient`, `RequestId`). */
export * as JsonRpc from "./JsonRpc.js"
