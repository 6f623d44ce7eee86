/**
 * The `deputy` command: the root command, its subcommands (registered in commands/index.ts), and the
 * one place where a command's end becomes an exit code and one line on stderr.
 */
import { Command, ValidationError } from "@effect/cli"
import { NodeContext } from "@effect/platform-node"
import { Cause, Console, Effect, Exit, Option } from "effect"
import { commands } from "./commands/index.js"
import { CliError, ExitCode, oneLine } from "./errors.js"

/** The version `deputy --version` prints. */
export const VERSION = "0.1.0"

const root = Command.make("deputy").pipe(
  Command.withDescription(
    "deputy delegates work to sub-agents and asks you (or a policy) before they run anything.\n" +
      "Example: deputy run --script review.yaml --policy policy.yaml 'review src/'"
  ),
  Command.withSubcommands(commands)
)

const cli = Command.run(root, { name: "deputy", version: VERSION })

// Colour codes in @effect/cli's help text.
const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*[A-Za-z]`, "g")

/** @effect/cli's usage errors, gathered (it prints them as several lines of help) to print as one line. */
const captureConsole = (into: Array<string>) =>
  Effect.map(Console.consoleWith(Effect.succeed), (console) => ({
    ...console,
    // Help and --version go to stdout, written directly: console.log itself is moved to stderr (see main).
    log: (...args: ReadonlyArray<unknown>) =>
      Effect.sync(() => void process.stdout.write(`${args.map(String).join(" ")}\n`)),
    error: (...args: ReadonlyArray<unknown>) => Effect.sync(() => void into.push(args.map(String).join(" "))),
    unsafe: {
      ...console.unsafe,
      error: (...args: ReadonlyArray<unknown>) => void into.push(args.map(String).join(" "))
    }
  }))

/** Runs `deputy` with `argv` (without node and the script) and resolves to the exit code. */
export const main = async (argv: ReadonlyArray<string>): Promise<number> => {
  // stdout is the command's output (--json lines): the log lines Effect's default logger writes with
  // console.log (the backends' warnings) go to stderr instead.
  console.log = (...args: Array<unknown>) => console.error(...args)
  const verbose = argv.includes("--verbose")
  const errors: Array<string> = []
  const program = Effect.flatMap(captureConsole(errors), (console) =>
    cli(["node", "deputy", ...argv]).pipe(Effect.withConsole(console), Effect.provide(NodeContext.layer))
  )
  const exit = await Effect.runPromiseExit(program)
  if (Exit.isSuccess(exit)) return ExitCode.ok
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) {
    const error = failure.value
    if (error instanceof CliError) {
      if (error.message !== "") process.stderr.write(`deputy: ${error.message}\n`)
      if (verbose && error.cause instanceof Error && error.cause.stack) process.stderr.write(`${error.cause.stack}\n`)
      return error.code
    }
    if (ValidationError.isValidationError(error)) {
      const text = errors
        .join("\n")
        .replace(ANSI, "")
        .split("\n")
        .map((line) => line.trim())
        .filter((line) => line !== "")
        .join(" ")
      process.stderr.write(`deputy: ${text || "bad usage"} (see deputy --help)\n`)
      return ExitCode.usage
    }
  }
  const defect = Cause.squash(exit.cause)
  process.stderr.write(`deputy: unexpected failure (a bug): ${oneLine(defect)}\n`)
  if (verbose && defect instanceof Error && defect.stack) process.stderr.write(`${defect.stack}\n`)
  return ExitCode.failed
}
