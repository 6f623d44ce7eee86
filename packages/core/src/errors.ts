/** Errors shared by several core modules. Module-specific errors live beside their module. */
import { Data } from "effect"

/** Input from outside (a file, a child process's line, a flag, a callback's answer) failed validation. */
export class InvalidInput extends Data.TaggedError("InvalidInput")<{
  /** Where the input came from: `script.yaml`, `codex stdout`, `--thread-id`. */
  readonly source: string
  /** One `path: message` line per problem. */
  readonly issues: ReadonlyArray<string>
}> {
  override get message() {
    return `invalid ${this.source}: ${this.issues.join("; ")}`
  }
}
