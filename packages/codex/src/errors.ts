/** Errors of the Codex backends. */
import { Data } from "effect"

/** The peer answered a JSON-RPC request with an error object. */
export class JsonRpcError extends Data.TaggedError("JsonRpcError")<{
  /** The JSON-RPC error code (Codex 0.169 uses -32600 for nearly everything). */
  readonly code: number
  readonly message: string
  /** The method of the request that failed. */
  readonly method: string
  readonly data?: unknown
}> {}

/** The backend's process ended (its stdout closed) while something still waited on it. */
export class BackendExited extends Data.TaggedError("BackendExited")<{
  readonly backend: string
  /** The exit code; null when killed by a signal or not known yet. */
  readonly code: number | null
  /** The signal that killed it, when one did. */
  readonly signal?: string | null
  /** Why deputy stopped listening, when it did first (a line past the bound, §36). */
  readonly reason?: string
}> {
  override get message() {
    const how = this.signal
      ? `${this.backend} exited with code ${this.code} (signal ${this.signal})`
      : `${this.backend} exited with code ${this.code}`
    return this.reason === undefined ? how : `${this.backend} was cut off: ${this.reason}`
  }
}
