/**
 * The environment of a Codex child: an allowlist of the parent's variables (PATH, HOME, CODEX_HOME,
 * LANG, LC_*, TMPDIR) plus what the caller adds — never the parent's other variables (API keys,
 * tokens, CI secrets stay out unless passed on purpose).
 */

/** Variables passed through from the parent by exact name (LC_* also pass). */
export const ALLOWED_VARIABLES: ReadonlyArray<string> = ["PATH", "HOME", "CODEX_HOME", "LANG", "TMPDIR"]

const isAllowed = (name: string) => ALLOWED_VARIABLES.includes(name) || name.startsWith("LC_")

/** The child's whole environment: the allowlisted part of `parent`, then `extra` over it (`undefined` removes). */
export const childEnv = (
  extra: Readonly<Record<string, string | undefined>> = {},
  parent: Readonly<Record<string, string | undefined>> = process.env
): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(parent)) {
    if (value !== undefined && isAllowed(name)) env[name] = value
  }
  for (const [name, value] of Object.entries(extra)) {
    if (value === undefined) delete env[name]
    else env[name] = value
  }
  return env
}
