/** The `--backend` choice and what it needs: a script file for `scripted`, the Codex CLI for the others. */
import { codex, codexExec, type DeputyBackend, scripted } from "@deputy/sdk"
import { parseScript } from "@deputy/sdk/scripted"
import { Effect, Either } from "effect"
import { usage } from "./errors.js"
import { issueError, parseYaml, readText } from "./files.js"

/** The backends a command can run on. */
export const BACKENDS = ["scripted", "codex", "codex-exec"] as const
/** A backend's name. */
export type BackendName = (typeof BACKENDS)[number]

/** Reads and validates a script file (YAML or JSON); a bad one is a usage error naming its file, line and field. */
export const loadScript = async (path: string, what = "--script"): Promise<unknown> => {
  const text = await readText(path, what)
  const file = parseYaml(path, text)
  const result = Effect.runSync(Effect.either(parseScript(text, path)))
  if (Either.isLeft(result)) throw issueError(file, result.left.issues)
  return file.value
}

/** What a backend is made from. */
export interface BackendChoice {
  readonly backend: BackendName
  /** The script (scripted). */
  readonly script?: unknown
  readonly cwd?: string
}

/** The SDK backend for `choice`. */
export const makeBackend = (choice: BackendChoice): DeputyBackend => {
  const cwd = choice.cwd === undefined ? {} : { cwd: choice.cwd }
  switch (choice.backend) {
    case "scripted":
      if (choice.script === undefined) throw usage("--backend scripted needs --script FILE (a YAML or JSON script)")
      return scripted(choice.script as Parameters<typeof scripted>[0], cwd)
    case "codex":
      // Codex asks before every command it does not trust, so the policy and the person decide.
      return codex({ ...cwd, approvalPolicy: "untrusted", sandbox: "workspace-write" })
    case "codex-exec":
      return codexExec(cwd)
  }
}
