/** The rollout store's errors, shared by its parts (re-exported by Rollout.ts), and the mapping from platform errors. */

import type { RolloutItem } from "@deputy/protocol"
import type { PlatformError } from "@effect/platform/Error"
import { Data } from "effect"

/** No rollout where one was looked for: no file at `path`, or none for `threadId` (among archived ones when `archived`). */
export class RolloutNotFound extends Data.TaggedError("RolloutNotFound")<{
  readonly threadId?: string
  readonly path?: string
  readonly archived?: boolean
}> {
  override get message() {
    if (this.path !== undefined) return `no rollout file at ${this.path}`
    return `no ${this.archived ? "archived " : ""}rollout for thread ${this.threadId}`
  }
}

/**
 * A rollout file exists but cannot be used: it is empty, or its first (metadata) line is unreadable.
 * `readable` holds the lines that could still be read, so nothing saved is lost.
 */
export class RolloutUnreadable extends Data.TaggedError("RolloutUnreadable")<{
  readonly path: string
  /** The 1-based line at fault, when one is. */
  readonly line?: number
  readonly reason: string
  readonly readable?: ReadonlyArray<RolloutItem>
}> {
  override get message() {
    return `cannot read rollout ${this.path}${this.line === undefined ? "" : `:${this.line}`}: ${this.reason}`
  }
}

/** The file system refused a rollout operation (permission, full disk, a file where a folder should be, …). */
export class RolloutIoFailed extends Data.TaggedError("RolloutIoFailed")<{
  readonly path: string
  readonly operation: "create" | "append" | "read" | "list" | "move" | "repair" | "mark"
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message() {
    return `rollout ${this.operation} failed for ${this.path}: ${this.reason}`
  }
}

/** A platform error that says the file is not there. */
export const isNotFound = (error: PlatformError): boolean => error._tag === "SystemError" && error.reason === "NotFound"
/** A platform error that says the file is there already. */
export const isAlreadyExists = (error: PlatformError): boolean =>
  error._tag === "SystemError" && error.reason === "AlreadyExists"

/** A platform error as RolloutIoFailed for `path` and `operation`. */
export const ioFailed = (path: string, operation: RolloutIoFailed["operation"]) => (error: PlatformError) =>
  new RolloutIoFailed({ path, operation, reason: error.message, cause: error })
