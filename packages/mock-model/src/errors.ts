/** Errors of the mock model: a scenario that does not decode, a server that cannot start. */
import * as Data from "effect/Data"

/** A scenario (object, JSON or YAML file) failed validation; each issue names the bad field by its zod path. */
export class InvalidScenario extends Data.TaggedError("InvalidScenario")<{
  /** Where the scenario came from: `scenario.yaml`, `startMockModel`. */
  readonly source: string
  /** One `path: message` line per problem, e.g. `responses.0.steps.1.ms: Too big: expected number to be <=600000`. */
  readonly issues: ReadonlyArray<string>
}> {
  override get message() {
    return `invalid scenario (${this.source}): ${this.issues.join("; ")}`
  }
}

/** The server could not listen on 127.0.0.1, or a scenario file could not be read. */
export class MockModelFailed extends Data.TaggedError("MockModelFailed")<{
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message() {
    return `mock model: ${this.reason}`
  }
}
