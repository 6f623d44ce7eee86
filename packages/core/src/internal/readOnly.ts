/**
 * The `read_only` preset: simple commands that only read files and print, modelled on Codex's
 * known-safe list (codex-rs/core/src/command_safety/is_safe_command.rs) and stricter. A command is
 * named bare (`cat`) or from /bin or /usr/bin; every flag that writes a file, runs another program or
 * changes state is refused, and so is any flag we do not know for the commands where flags matter
 * (`git branch`, `sed`). What is not listed here is not read-only.
 *
 * Trusted as the user's own, as Codex does: the programs found on PATH, and configuration they read
 * by themselves (the repository's `.git/config` may name a pager, an external diff or an fsmonitor
 * hook; ripgrep reads `RIPGREP_CONFIG_PATH`). A sub-agent cannot change these through an approved
 * command of this preset; patches to them are the patch policy's business.
 */

/** Commands with no flag that writes or executes (GNU coreutils and friends). */
const ALWAYS = new Set([
  "cat",
  "ls",
  "head",
  "tail",
  "wc",
  "nl",
  "cut",
  "paste",
  "rev",
  "tac",
  "tr",
  "pwd",
  "echo",
  "true",
  "false",
  "whoami",
  "id",
  "uname",
  "basename",
  "dirname",
  "realpath",
  "readlink",
  "stat",
  "du",
  "df",
  "which",
  "seq",
  "grep",
  "egrep",
  "fgrep",
  "cmp",
  "diff",
  "md5sum",
  "sha1sum",
  "sha256sum",
  "sha512sum",
  "cd"
])

const command = (word: string): string | undefined => {
  for (const dir of ["/bin/", "/usr/bin/"]) if (word.startsWith(dir)) return word.slice(dir.length)
  return word.includes("/") ? undefined : word
}

/** A short-option cluster (`-nro`) that holds one of `letters`. */
const shortHas = (arg: string, letters: string) =>
  /^-[^-]/.test(arg) && [...arg.slice(1)].some((c) => letters.includes(c))
/** `--name`, `--name=…`, or an abbreviation of it (GNU getopt and git accept unique prefixes: `--outp`). */
const longIs = (arg: string, names: ReadonlyArray<string>) => {
  if (!arg.startsWith("--") || arg.length < 3) return false
  const key = arg.split("=", 1)[0] ?? arg
  return names.some((name) => name.startsWith(key))
}

const FIND_REFUSED = new Set([
  "-exec",
  "-execdir",
  "-ok",
  "-okdir",
  "-delete",
  "-fls",
  "-fprint",
  "-fprint0",
  "-fprintf"
])

const find = (args: ReadonlyArray<string>) => !args.some((arg) => FIND_REFUSED.has(arg))

// --pre runs a program per file; --hostname-bin runs one; -z/--search-zip runs decompressors.
const rg = (args: ReadonlyArray<string>) =>
  !args.some((arg) => longIs(arg, ["--pre", "--hostname-bin", "--search-zip"]) || shortHas(arg, "z"))

// -o/--output writes the result; --compress-program runs one.
const sort = (args: ReadonlyArray<string>) =>
  !args.some((arg) => longIs(arg, ["--output", "--compress-program"]) || shortHas(arg, "o"))

// `uniq IN OUT` writes OUT: at most one operand.
const uniq = (args: ReadonlyArray<string>) => args.filter((arg) => !arg.startsWith("-")).length <= 1

// Only `sed -n N[,M]p [FILE…]`: a sed script can write files (w, -i) and run commands (e).
const sed = (args: ReadonlyArray<string>) =>
  args.length >= 2 &&
  args[0] === "-n" &&
  /^[0-9]+(,[0-9]+)?p$/.test(args[1] ?? "") &&
  args.slice(2).every((arg) => !arg.startsWith("-"))

const GIT_READS = new Set(["status", "diff", "log", "show", "blame", "branch", "rev-parse", "ls-files", "ls-tree"])
// Flags of those subcommands that write a file, run a program (external diff, textconv filter, pager) or exec.
const GIT_REFUSED = ["--output", "--ext-diff", "--textconv", "--exec", "--paginate", "--open-files-in-pager"]
const GIT_BRANCH_LISTING = new Set([
  "--list",
  "-l",
  "--show-current",
  "-a",
  "--all",
  "-r",
  "--remotes",
  "-v",
  "-vv",
  "--verbose"
])

/**
 * `git [-C DIR] [--no-pager|-P] SUB ARGS…` with SUB a read and no refused flag. Any other global option
 * is refused: `-c` and `--config-env` set config that runs programs (core.pager, diff.external…),
 * `--git-dir`/`--work-tree`/`--exec-path` point git elsewhere, `-p` starts a pager.
 */
const git = (args: ReadonlyArray<string>) => {
  let i = 0
  while (i < args.length) {
    const arg = args[i]
    if (arg === "-C" && i + 1 < args.length) i += 2
    else if (arg === "--no-pager" || arg === "-P") i += 1
    else break
  }
  const sub = args[i]
  if (sub === undefined || !GIT_READS.has(sub)) return false
  const rest = args.slice(i + 1)
  if (rest.some((arg) => longIs(arg, GIT_REFUSED))) return false
  if (sub === "branch") return rest.every((arg) => GIT_BRANCH_LISTING.has(arg) || arg.startsWith("--format="))
  return true
}

// A Map, not an object: `constructor` or `__proto__` must not find a judge.
const WITH_ARGS = new Map<string, (args: ReadonlyArray<string>) => boolean>([
  ["find", find],
  ["rg", rg],
  ["sort", sort],
  ["uniq", uniq],
  ["sed", sed],
  ["git", git]
])

/** True when `argv` is a read-only command of the preset (see the module doc for the list). */
export const isReadOnlyCommand = (argv: ReadonlyArray<string>): boolean => {
  const name = argv[0] === undefined ? undefined : command(argv[0])
  if (name === undefined) return false
  if (ALWAYS.has(name)) return true
  return WITH_ARGS.get(name)?.(argv.slice(1)) === true
}

/** The commands the preset knows, for documentation and tests. */
export const readOnlyCommandNames: ReadonlyArray<string> = [...ALWAYS, ...WITH_ARGS.keys()].sort()
