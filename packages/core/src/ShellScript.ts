/**
 * Shell scripts as a policy sees them (§27): a command such as `bash -lc "cat a && git diff"` is taken
 * apart into the simple commands the shell would run, so that rules judge those, not the wrapper.
 *
 * The parser is tree-sitter-bash (the grammar Codex itself uses for the same job) run by
 * `web-tree-sitter`, loaded once per process on first use (an async WASM load of about 40 ms) and then
 * synchronous, about 0.2 ms a script. We did not pick `sh-syntax` (mvdan/sh built to WASM): its 0.7
 * `parse()` returns every command node as `{}` with no kind, so a redirection cannot be told from a
 * pipeline, and each parse is an async call costing about 17 ms. tree-sitter names every node kind,
 * which is what an allowlist needs.
 *
 * What the analysis reports, for one argv:
 * - `leaves`: the simple commands an allow rule must approve, one by one, with every word known.
 * - `notPlain`: why no allow rule may approve the command at all (the script uses anything but
 *   plain words joined by `&&`, `||`, `;`, `|`, or runs code a rule cannot see), or undefined.
 * - `seen`: every simple command at any depth (inside substitutions, subshells, functions, nested
 *   shells, and behind wrappers such as `sudo` or `xargs`), for deny and ask rules; a word whose value
 *   is only known when the shell runs (an expansion, a glob) is `undefined`.
 * - `opaque`: why some code may run that no rule can see (`eval`, `source`, a shell run another way),
 *   or undefined; a policy with deny rules then cannot rule them out.
 * - `parseError`: the parser's complaint about a script that does not parse.
 *
 * "Plain" is decided per word, and only what is provably literal counts: an unquoted word of printable
 * ASCII characters that no shell treats specially (no `$`, backquote, backslash, quote, glob `* ? [ ]`,
 * brace `{ }`, `!`, `#`; no `~` or `=` at its start, no `=~` or `:~`; for zsh, whose extended globs
 * use them, no `^`, `#` or `~` at all), a single-quoted string, a double-quoted string with no
 * expansion in it, and concatenations of these. `$'…'` and `$"…"` are not plain (their escapes and
 * translations are the shell's business). Nor is a script holding control characters or unusual
 * whitespace, or text the parser skipped (a `\<newline>` inside a word). Only `-l` and `-c` are
 * understood as the shell's options: `-i` (aliases, rc files, history expansion) and any other shape
 * (`bash file`, words after the script, a shell binary outside the system directories) leave the
 * script unread, so it is never approved by an allow rule.
 *
 * Bounded (§36): a script over 64 KiB, or a command needing more than 512 commands and scripts
 * judged, is not read (never approved; deny rules cannot be ruled out), and trees are walked without
 * recursion. The parser is process-wide and synchronous once loaded; trees are freed after use.
 */
import { createRequire } from "node:module"
import { basename } from "node:path"
import { Data, Effect } from "effect"
import { Language, type Node, Parser } from "web-tree-sitter"

/** The shell parser could not be loaded (its WASM files are missing or broken). */
export class ShellParserUnavailable extends Data.TaggedError("ShellParserUnavailable")<{ readonly cause: unknown }> {
  override get message() {
    return `the shell parser (tree-sitter-bash) could not be loaded: ${String(this.cause)}`
  }
}

/** A loaded shell parser. */
export interface ShellParser {
  readonly parser: Parser
}

let loading: Promise<ShellParser> | undefined

const load = async (): Promise<ShellParser> => {
  const require = createRequire(import.meta.url)
  await Parser.init()
  const bash = await Language.load(require.resolve("tree-sitter-bash/tree-sitter-bash.wasm"))
  const parser = new Parser()
  parser.setLanguage(bash)
  return { parser }
}

/** The process-wide parser, loaded on first use; a failed load is retried by the next caller. */
export const shellParser: Effect.Effect<ShellParser, ShellParserUnavailable> = Effect.tryPromise({
  try: () => {
    loading ??= load().catch((error: unknown) => {
      loading = undefined
      throw error
    })
    return loading
  },
  catch: (cause) => new ShellParserUnavailable({ cause })
})

/** A word of a simple command: its value, or `undefined` when only the running shell knows it. */
export type Word = string | undefined

/** What a policy needs to know about one command (see the module doc). */
export interface CommandAnalysis {
  readonly leaves: ReadonlyArray<ReadonlyArray<string>>
  readonly seen: ReadonlyArray<ReadonlyArray<Word>>
  readonly notPlain: string | undefined
  readonly opaque: string | undefined
  readonly parseError: string | undefined
}

/** Shells whose `-c` script we parse. */
const SHELLS = new Set(["bash", "sh", "zsh", "dash"])
/** Where a shell named by path is trusted to be the real one. */
const SYSTEM_DIRS = new Set(["/bin", "/usr/bin", "/usr/local/bin", "/opt/homebrew/bin"])
/** Builtins that run code held in strings or files no rule sees, and runners of commands read from input. */
const OPAQUE = new Set([
  "eval",
  "source",
  ".",
  "alias",
  "trap",
  "fc",
  "enable",
  "shopt",
  "set",
  "coproc",
  "xargs",
  "parallel"
])
/** A runner's word that looks like a script handed to a shell. */
const SCRIPT_LIKE = /[\s;&|<>()$`]/
/**
 * Programs that run another command from their arguments: never approved by an allow rule (their
 * inner command would go unjudged); deny and ask rules are tried against every tail of their argv.
 */
const RUNNERS = new Set([
  "env",
  "sudo",
  "doas",
  "su",
  "runuser",
  "pkexec",
  "nice",
  "nohup",
  "timeout",
  "time",
  "stdbuf",
  "setsid",
  "ionice",
  "chrt",
  "taskset",
  "chroot",
  "flock",
  "watch",
  "strace",
  "ltrace",
  "unbuffer",
  "script",
  "exec",
  "command",
  "builtin",
  "busybox",
  "systemd-run",
  "nsenter",
  "unshare",
  "firejail",
  "sg",
  "torsocks",
  "proxychains",
  "proxychains4"
])
/** `find` options followed by a command it runs; deny rules look at what follows (`find … -exec rm {} ;`). */
const FIND_RUNS = new Set(["-exec", "-execdir", "-ok", "-okdir"])

/** Named node kinds a plain script may contain (the rest of tree-sitter-bash's kinds are not plain). */
const PLAIN_KINDS = new Set([
  "program",
  "list",
  "pipeline",
  "command",
  "command_name",
  "word",
  "number",
  "string",
  "string_content",
  "raw_string",
  "concatenation"
])
/** Anonymous tokens a plain script may contain: the four connectors and double quotes. */
const PLAIN_TOKENS = new Set(["&&", "||", ";", "|", '"'])

/** Characters no shell reads as a word separator that tree-sitter might: controls and odd whitespace. */
const ODD_CHARACTERS =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
  /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u00a0\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u3000\ufeff]/u
/** Unquoted characters that make a word something other than its literal text. */
const SPECIAL = /[\s$`\\"'*?[\]{}!#|&;()<>]/u
const ZSH_SPECIAL = /[\^#~]/u
/** Tilde expansion (bash also expands `a=~/x` and `a:~/x` in arguments) and zsh's `=cmd`. */
const TILDE = /^[~=]|[=:]~/
/** Characters that make an unquoted word's value unknowable before the shell runs. */
const EXPANDING = /[$`*?[{]/u

const MAX_DEPTH = 8
const MAX_COMMANDS = 512
// tree-sitter parses a hostile 64 KiB script (thousands of nested substitutions) in about 0.1 to 0.3 s here.
const MAX_SCRIPT = 65_536

interface Acc {
  readonly leaves: Array<ReadonlyArray<string>>
  readonly seen: Array<ReadonlyArray<Word>>
  notPlain: string | undefined
  opaque: string | undefined
  parseError: string | undefined
  budget: number
}

const notPlain = (acc: Acc, reason: string) => {
  acc.notPlain ??= reason
}
const opaque = (acc: Acc, reason: string) => {
  acc.opaque ??= reason
  acc.notPlain ??= reason
}

/** `bash`, `/bin/bash`: the program's name, when the word names it bare or in a system directory. */
const systemName = (word: string): string => {
  const name = basename(word)
  return word === name || SYSTEM_DIRS.has(word.slice(0, -name.length - 1)) ? name : word
}
/** The shell's name, when the word names a real shell. */
const shellName = (word: string): string | undefined => {
  const name = systemName(word)
  return SHELLS.has(name) ? name : undefined
}

/**
 * The script of `SHELL [-l] -c SCRIPT` (also `-lc`, `-cl`, `--login`), or undefined for any other
 * shape: `-i` (aliases and rc files), other options, a script file, or words after the script.
 */
const shellScript = (words: ReadonlyArray<Word>): Word | "unrecognized" => {
  let sawC = false
  let i = 1
  for (; i < words.length; i++) {
    const word = words[i]
    if (word === "--login") continue
    if (word === undefined || !/^-[lc]+$/.test(word)) break
    if (word.includes("c")) {
      if (sawC || word.indexOf("c") !== word.lastIndexOf("c")) return "unrecognized"
      sawC = true
    }
  }
  return sawC && i === words.length - 1 ? words[i] : "unrecognized"
}

const display = (words: ReadonlyArray<Word>) => words.map((w) => (w === undefined ? "…" : w)).join(" ")

/** Judges one simple command's words: recurses into shells, unwraps `env`, records leaves and what is seen. */
const analyzeWords = (
  shell: ShellParser,
  words: ReadonlyArray<Word>,
  depth: number,
  asLeaf: boolean,
  acc: Acc
): void => {
  if (words.length === 0) return
  if (--acc.budget < 0) {
    opaque(acc, `more than ${MAX_COMMANDS} commands and scripts to judge`)
    return
  }
  acc.seen.push(words)
  const name = words[0]
  if (name === undefined) {
    opaque(acc, `its command name is only known when the shell runs: ${display(words)}`)
    return
  }
  const base = basename(name)
  // `env cmd …` with no options or assignments only looks cmd up in PATH.
  if (systemName(name) === "env" && words.length > 1 && words[1] !== undefined && !/^-|=/.test(words[1])) {
    analyzeWords(shell, words.slice(1), depth, asLeaf, acc)
    return
  }
  if (SHELLS.has(base)) {
    const script = shellName(name) === undefined ? "unrecognized" : shellScript(words)
    if (script === "unrecognized" || script === undefined) {
      opaque(acc, `${name} is run without a plain -c script deputy can read: ${display(words)}`)
      return
    }
    if (depth >= MAX_DEPTH) {
      opaque(acc, `shells nested deeper than ${MAX_DEPTH}`)
      return
    }
    analyzeScript(shell, script, shellName(name) === "zsh", depth + 1, asLeaf, acc)
    return
  }
  if (OPAQUE.has(base)) {
    opaque(acc, `${base} runs code no rule can see`)
    return
  }
  if (RUNNERS.has(base)) {
    notPlain(acc, `${base} runs another command, which an allow rule for ${base} does not judge`)
  } else if (asLeaf) {
    if (words.every((w) => w !== undefined)) acc.leaves.push(words as ReadonlyArray<string>)
    else notPlain(acc, `a word is only known when the shell runs: ${display(words)}`)
  }
  if (RUNNERS.has(base)) {
    for (let i = 1; i < words.length; i++) {
      if (acc.budget <= 0) {
        opaque(acc, `more than ${MAX_COMMANDS} commands and scripts to judge`)
        return
      }
      const word = words[i]
      if (word === undefined) continue
      if (!word.startsWith("-")) analyzeWords(shell, words.slice(i), depth, false, acc)
      // `su -c "rm x"`, `watch "rm x"`, `env -S "rm x"`, `flock f -c …` hand a word to a shell.
      if (SCRIPT_LIKE.test(word)) {
        if (depth >= MAX_DEPTH) opaque(acc, `shells nested deeper than ${MAX_DEPTH}`)
        else analyzeScript(shell, word, false, depth + 1, false, acc, "guess")
      }
    }
  } else if (base === "find") {
    for (let i = 1; i < words.length - 1; i++) {
      if (!FIND_RUNS.has(words[i] ?? "-exec")) continue
      // `find … -exec {} ;` runs whatever it finds.
      if (words[i + 1]?.includes("{}") !== false) opaque(acc, "find runs a command named by what it finds")
      else analyzeWords(shell, words.slice(i + 1), depth, false, acc)
    }
  }
}

/** `line 1, column 5` (1-based) for messages. */
const at = (node: Node) => `line ${node.startPosition.row + 1}, column ${node.startPosition.column + 1}`

/**
 * Visits `root` and its descendants in document order, without recursion (a script of 20,000 nested
 * parentheses is a tree that deep); `visit` returns false to skip a node's children, "stop" to end.
 */
const walk = (root: Node, visit: (node: Node) => boolean | "stop") => {
  // A tree cursor, not `children`: it allocates no arrays (about 2.5x faster on a 60,000-node tree).
  const cursor = root.walk()
  try {
    for (;;) {
      const descend = visit(cursor.currentNode)
      if (descend === "stop") return
      if (descend && cursor.gotoFirstChild()) continue
      while (!cursor.gotoNextSibling()) if (!cursor.gotoParent()) return
    }
  } finally {
    cursor.delete()
  }
}

/** The first ERROR or MISSING node, in document order. */
const firstProblem = (root: Node): Node | undefined => {
  let found: Node | undefined
  walk(root, (node) => {
    if (node.isError || node.isMissing) {
      found = node
      return "stop"
    }
    return node.hasError
  })
  return found
}

const unescapeUnquoted = (text: string) => text.replace(/\\\n/g, "").replace(/\\(.)/gsu, "$1")
const unescapeDoubleQuoted = (text: string) => text.replace(/\\\n/g, "").replace(/\\([\\"$`])/g, "$1")

interface WordValue {
  readonly value: Word
  readonly plain: boolean
}

/** A word node's value (undefined when the shell computes it) and whether it is provably literal. */
const wordValue = (node: Node, zsh: boolean): WordValue => {
  switch (node.type) {
    case "word":
    case "number": {
      const text = node.text
      // Printable ASCII only: look-alikes (`ｒm`, `；`) are literal to the shell but not to a reader.
      const plain =
        /^[\x21-\x7e]+$/.test(text) && !SPECIAL.test(text) && !TILDE.test(text) && !(zsh && ZSH_SPECIAL.test(text))
      if (plain) return { value: text, plain }
      const unknowable = EXPANDING.test(text) || TILDE.test(text) || (zsh && ZSH_SPECIAL.test(text))
      return { value: unknowable ? undefined : unescapeUnquoted(text), plain: false }
    }
    case "raw_string":
      return { value: node.text.slice(1, -1), plain: true }
    case "string": {
      const parts = node.children.filter((c): c is Node => c !== null && c.type !== '"')
      if (!parts.every((c) => c.type === "string_content")) return { value: undefined, plain: false }
      return { value: unescapeDoubleQuoted(parts.map((c) => c.text).join("")), plain: true }
    }
    case "concatenation": {
      const parts = node.children.filter((c): c is Node => c !== null).map((c) => wordValue(c, zsh))
      const known = parts.every((p) => p.value !== undefined)
      return { value: known ? parts.map((p) => p.value).join("") : undefined, plain: parts.every((p) => p.plain) }
    }
    default:
      return { value: undefined, plain: false }
  }
}

/**
 * The words tree-sitter-bash files under a redirection that bash passes to the command: every word
 * after a file or here-string redirection's target, every word on a here-document's opening line.
 */
const redirectArguments = (redirect: Node): ReadonlyArray<Node> => {
  const named = redirect.namedChildren.filter((c): c is Node => c !== null)
  switch (redirect.type) {
    case "file_redirect":
    case "herestring_redirect":
      return named.filter((c) => c.type !== "file_descriptor").slice(1)
    case "heredoc_redirect":
      return named.filter((c) => !["heredoc_start", "heredoc_body", "heredoc_end", "file_descriptor"].includes(c.type))
    default:
      return []
  }
}

/** Every node kind and token of a plain script is on the allowlists. */
const checkPlain = (root: Node, acc: Acc) =>
  walk(root, (node) => {
    if (acc.notPlain !== undefined) return "stop"
    if (node.isNamed ? !PLAIN_KINDS.has(node.type) : !PLAIN_TOKENS.has(node.type)) {
      notPlain(acc, `the script uses ${node.isNamed ? node.type.replace(/_/g, " ") : `"${node.type}"`} at ${at(node)}`)
      return "stop"
    }
    return true
  })

/**
 * Between the tokens of a plain script there is only blank space. tree-sitter skips some text as
 * "extras" that bash does not: a `\<newline>` inside a word (bash joins `-la\<newline>cat` into one word).
 */
const checkGaps = (root: Node, script: string, acc: Acc) => {
  if (acc.notPlain !== undefined) return
  let end = 0
  walk(root, (node) => {
    if (node.childCount > 0) return true
    if (!/^[ \t\n]*$/.test(script.slice(end, node.startIndex))) {
      notPlain(acc, `the script holds text the parser skipped at ${at(node)}`)
      return "stop"
    }
    end = Math.max(end, node.endIndex)
    return false
  })
  if (!/^[ \t\n]*$/.test(script.slice(end))) notPlain(acc, "the script ends with text the parser skipped")
}

/** Parses a script and judges each simple command in it, wherever it sits in the tree. */
const analyzeScript = (
  shell: ShellParser,
  script: string,
  zsh: boolean,
  depth: number,
  asLeaf: boolean,
  acc: Acc,
  // A runner's word that may or may not be a script: if it does not parse, deny rules cannot be ruled out.
  kind: "script" | "guess" = "script"
): void => {
  if (--acc.budget < 0) {
    opaque(acc, `more than ${MAX_COMMANDS} commands and scripts to judge`)
    return
  }
  if (script.length > MAX_SCRIPT) {
    opaque(acc, `a script longer than ${MAX_SCRIPT} characters is not read`)
    return
  }
  const tree = shell.parser.parse(script)
  if (tree === null) {
    if (kind === "script") acc.parseError ??= "the parser gave up"
    opaque(acc, "the script does not parse")
    return
  }
  try {
    const root = tree.rootNode
    if (root.hasError) {
      opaque(acc, "the script does not parse")
      if (kind === "guess") return
      const problem = firstProblem(root) ?? root
      acc.parseError ??= problem.isMissing
        ? `missing ${JSON.stringify(problem.type)} at ${at(problem)}`
        : `syntax error at ${at(problem)} near ${JSON.stringify(problem.text.slice(0, 40))}`
      return
    }
    if (ODD_CHARACTERS.test(script)) notPlain(acc, "the script holds control characters or unusual whitespace")
    checkPlain(root, acc)
    checkGaps(root, script, acc)
    const commands: Array<Node> = []
    walk(root, (node) => {
      if (node.type === "command") commands.push(node)
      return true
    })
    if (commands.length === 0) notPlain(acc, "the script runs no command")
    for (const command of commands) {
      const words: Array<Word> = []
      const addWord = (node: Node) => {
        const value = wordValue(node, zsh)
        if (!value.plain)
          notPlain(acc, `the word ${JSON.stringify(node.text.slice(0, 40))} at ${at(node)} is not plain`)
        words.push(value.value)
      }
      const children = command.children.filter((c): c is Node => c !== null)
      for (const [i, child] of children.entries()) {
        // tree-sitter-bash joins `a|b|c<newline>d&&e` into one command `c d`; bash runs `d` on its own.
        const next = children[i + 1]
        if (next && /(^|[^\\])\n/.test(script.slice(child.endIndex, next.startIndex))) {
          opaque(acc, `the parser read a command across a line break at ${at(next)}, which bash would not`)
        }
        if (!child.isNamed || child.type === "variable_assignment") continue
        if (child.type === "command_name") addWord(child.firstNamedChild ?? child)
        else if (child.type.endsWith("_redirect")) {
          // A redirection is not plain; words tree-sitter files under it are still the command's arguments.
          notPlain(acc, `the script redirects at ${at(child)}`)
          for (const word of redirectArguments(child)) addWord(word)
        } else addWord(child)
      }
      // `git > f push`: tree-sitter puts `push` under the redirection; bash passes it to git.
      const parent = command.parent
      if (parent?.type === "redirected_statement" && parent.firstNamedChild?.id === command.id) {
        for (const sibling of parent.namedChildren) {
          if (sibling && sibling.id !== command.id) for (const word of redirectArguments(sibling)) addWord(word)
        }
      }
      analyzeWords(shell, words, depth, asLeaf, acc)
    }
    // Words under a redirection of something other than a simple command: bash would refuse; we cannot judge.
    walk(root, (node) => {
      if (node.type === "redirected_statement" && node.firstNamedChild?.type !== "command") {
        const stray = node.namedChildren.slice(1).some((r) => r !== null && redirectArguments(r).length > 0)
        if (stray) opaque(acc, `words after a redirection at ${at(node)}`)
      }
      return true
    })
  } finally {
    tree.delete()
  }
}

/** Takes one argv apart into what a policy judges (see the module doc). */
export const analyzeCommand = (shell: ShellParser, command: ReadonlyArray<string>): CommandAnalysis => {
  const acc: Acc = {
    leaves: [],
    seen: [],
    notPlain: undefined,
    opaque: undefined,
    parseError: undefined,
    budget: MAX_COMMANDS
  }
  if (command.length === 0) notPlain(acc, "the command is empty")
  analyzeWords(shell, command, 0, true, acc)
  return acc
}
