/**
 * The environment of every child process deputy starts (§32): scripted commands, `codex app-server`,
 * `codex exec`. An allowlist of the parent's variables (PATH, HOME, CODEX_HOME, LANG, LC_*, TMPDIR)
 * plus what the caller adds on purpose — never the parent's other variables, so API keys, tokens and
 * CI secrets stay out of what a sub-agent can read.
 */

/** Variables passed through from the parent by exact name (LC_* also pass). */
export const ALLOWED_VARIABLES: ReadonlyArray<string> = ["PATH", "HOME", "CODEX_HOME", "LANG", "TMPDIR"]

const isAllowed = (name: string) => ALLOWED_VARIABLES.includes(name) || name.startsWith("LC_")

/** The child's whole environment: the allowlisted part of `parent`, then `extra` over it (`undefined` removes). */
export const childEnvironment = (
  extra: Readonly<Record<string, string | undefined>> = {},
  parent: Readonly<Record<string, string | undefined>> = process.env
): Record<string, string> => {
  const env: Record<string, string> = {}
  // Names first, then only the allowed values: reading every value of process.env (Object.entries)
  // cost three times as much, once per child started.
  for (const name of Object.keys(parent)) {
    if (!isAllowed(name)) continue
    const value = parent[name]
    if (value !== undefined) env[name] = value
  }
  for (const [name, value] of Object.entries(extra)) {
    if (value === undefined) delete env[name]
    else env[name] = value
  }
  return env
}
