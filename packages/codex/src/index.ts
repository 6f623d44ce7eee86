/** @deputy/codex: the Codex backends. */

/** The exec backend (§26): `CodexExec.backend(options)`, `checkPolicy`, `ApprovalsUnsupported`, pointer helpers. */
export * as CodexExec from "./Exec.js"
