/** Options several commands share, and the bridge from a command's Promise body to @effect/cli. */
import { Options } from "@effect/cli"
import { Effect, Option } from "effect"
import { BACKENDS } from "../backends.js"
import type { CliError } from "../errors.js"
import { asCliError } from "../session.js"

/** `--backend scripted|codex|codex-exec` (default scripted). */
export const backendOption = Options.choice("backend", BACKENDS).pipe(
  Options.withDefault("scripted" as const),
  Options.withDescription("what plays the sub-agent: scripted (offline, needs --script), codex, codex-exec")
)
/** `--script FILE`. */
export const scriptOption = Options.text("script").pipe(
  Options.withDescription("the scripted sub-agent's script (YAML or JSON)"),
  Options.optional
)
/** `--cwd DIR`. */
export const cwdOption = Options.text("cwd").pipe(
  Options.withDescription("the working directory of the sub-agent's commands"),
  Options.optional
)
/** `--thread ID`. */
export const threadOption = Options.text("thread").pipe(
  Options.withDescription("resume this thread from its rollout (or start it with this id if it has none)"),
  Options.optional
)
/** `--policy FILE`. */
export const policyOption = Options.text("policy").pipe(
  Options.withDescription("approval rules (YAML or JSON); without one, every request is denied"),
  Options.optional
)
/** `--json`. */
export const jsonOption = Options.boolean("json").pipe(Options.withDescription("one JSON object per line on stdout"))
/** `--verbose`. */
export const verboseOption = Options.boolean("verbose").pipe(
  Options.withDescription("print the stack of an unexpected error")
)
/** `--timeout DURATION`. */
export const timeoutOption = Options.text("timeout").pipe(
  Options.withDescription("cancel after this long (500ms, 30s, 2m): exit 124"),
  Options.optional
)

/** An Option as a value or undefined. */
export const get = <A>(option: Option.Option<A>): A | undefined => Option.getOrUndefined(option)

/** Runs a command body; its rejection becomes the CliError main turns into an exit code. */
export const body = (run: () => Promise<void>): Effect.Effect<void, CliError> =>
  Effect.tryPromise({ try: run, catch: asCliError })
