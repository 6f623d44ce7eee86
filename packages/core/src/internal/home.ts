/** Where deputy keeps its state: `DEPUTY_HOME`, else `~/.deputy`. Read once per call; nothing is cached. */
import { homedir } from "node:os"
import { Path } from "@effect/platform"
import { Config, Effect, Option } from "effect"

/** The home folder (§20): `DEPUTY_HOME` from the ConfigProvider (the environment by default), else `~/.deputy`; absolute. */
export const deputyHome: Effect.Effect<string, never, Path.Path> = Effect.gen(function* () {
  const path = yield* Path.Path
  const fromEnv = yield* Config.option(Config.string("DEPUTY_HOME")).pipe(
    Effect.orElseSucceed(() => Option.none<string>())
  )
  const value = Option.filter(fromEnv, (home) => home.trim() !== "")
  return Option.isSome(value) ? path.resolve(value.value) : path.join(homedir(), ".deputy")
})
