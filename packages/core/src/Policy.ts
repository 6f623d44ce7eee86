/**
 * Approval policies: allow / deny rules for commands (by argv prefix, regex or preset) and for patches
 * (by path glob), fixed answers to questions, and a default. Deny wins over ask, ask over allow; nothing
 * matched gives the default, which is `denied` unless the policy says otherwise. Policies are plain
 * data, decoded by zod.
 *
 * What an exec rule matches (§27). A command is taken apart by ShellScript into simple commands:
 * `["cat", "a"]` is one; `bash -lc "cat a && git diff"` (also `sh`, `zsh`, `dash`, `-c`, `-l -c`,
 * `/bin/bash`, `/usr/bin/env bash`) is the simple commands of its script, recursively through shells
 * inside it. A rule is tried against each simple command, never against the shell wrapper's own argv
 * when deciding to allow:
 * - `prefix`: the command's first words equal these words, one for one (`["git", "diff"]` matches
 *   `git diff --stat`, not `git diffx`; an allow rule does not match `/usr/bin/git diff`, a deny or ask
 *   rule does).
 * - `regex`: an RE2 expression (linear time, checked when the policy is decoded) searched in the
 *   command's words joined by single spaces; anchor it (`^…$`) to mean the whole command.
 * - `preset: "read_only"`: the command is one of the read-only commands listed in internal/readOnly.ts
 *   (`cat`, `ls`, `head`, `grep`, `rg`, `find`, `git status|diff|log|show|blame|branch`…), with every
 *   flag that writes a file or runs a program refused (`find -exec`, `sed -i`, `git -c`, `--output`,
 *   `rg --pre`…). `policy.readOnly` is a ready policy that approves these and denies the rest.
 *
 * An allow rule (`approved`, `approved_for_session`) approves a command only when:
 * - every simple command in it is matched by some allow rule (the least of their decisions wins:
 *   `approved_for_session` only if every one says so), and
 * - the script is plain: literal words (unquoted words with no special character, '…', "…" with no
 *   expansion) joined only by `&&`, `||`, `;`, `|`, newlines. Redirections, command and process
 *   substitution, subshells and groups, background `&`, here-documents, assignments (`X=1 cmd`),
 *   any expansion (`$X`, globs, braces, `~`, `$'…'`), control flow, functions, comments, `eval`,
 *   `source`, `.`, `alias`, `trap`, a shell run any other way (`bash -i`, `bash file`), and wrappers
 *   that run another command (`env X=1 …`, `sudo`, `xargs`, `nice`, `timeout`, `exec`, `command`…)
 *   are never approved by an allow rule: such a command falls to an `ask` rule or the default. So is
 *   a script the parser may have read otherwise than bash (text it skipped, a command it read across
 *   a line break, control characters, unusual whitespace, unquoted non-ASCII look-alikes such as `；`),
 *   and a script over 64 KiB. ShellScript.ts lists exactly which words are plain.
 * The shell's own start-up files (`-l` reads the login profile) are trusted as the user's; `-i`
 * (interactive: aliases, rc files, history expansion) is not plain.
 *
 * A deny or ask rule matches when it matches any simple command anywhere: in the script, inside
 * substitutions, subshells, functions and nested shells, and behind wrappers (every tail of `sudo …`
 * or `find … -exec …` is tried, and a wrapper's words that look like scripts, `su -c "…"`, are parsed).
 * A word only the running shell knows (`$X`, `*`) may match anything, so it counts as a match; and
 * when the command runs code no rule can see (`eval`, `source`, `xargs`, a shell run another way),
 * every deny rule counts as matching (so does a command the parser may have misread). Arguments
 * tree-sitter files under a redirection (`git > f push`) are the command's. A script that does not
 * parse is denied, with the parser's message. Deny rules are a guard, not a sandbox: programs that
 * run code from their own arguments (`awk`, `python -c`, `git -c`) hide it from them; approve by a
 * closed list.
 */
import { basename } from "node:path"
import type { Question, UserInputResponse } from "@deputy/protocol"
import { Effect } from "effect"
import picomatch from "picomatch"
import { RE2JS } from "re2js"
import { z } from "zod"
import type { InvalidInput } from "./errors.js"
import { decode } from "./internal/decode.js"
import { isReadOnlyCommand } from "./internal/readOnly.js"
import { analyzeCommand, type CommandAnalysis, type ShellParser, shellParser, type Word } from "./ShellScript.js"

/** What a rule says: a decision, or `ask` (leave it to a person or program; alone, that is no answer, so denied). */
export const RuleDecision = z.enum(["approved", "approved_for_session", "denied", "ask"])
/** What a rule says. */
export type RuleDecision = z.output<typeof RuleDecision>

const compiled = new Map<string, RE2JS>()

/** The compiled RE2 program for `source` (cached), or the RE2 syntax error. */
const compileRegex = (source: string): RE2JS | Error => {
  const cached = compiled.get(source)
  if (cached) return cached
  try {
    const re = RE2JS.compile(source)
    compiled.set(source, re)
    return re
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error))
  }
}

// Validated with the engine that will run it: backreferences and lookaround (which need backtracking) fail here.
const regex = z.string().superRefine((source, ctx) => {
  const re = compileRegex(source)
  if (re instanceof Error) {
    ctx.addIssue({
      code: "custom",
      message: `${JSON.stringify(source)} is not a linear-time (RE2) regular expression: ${re.message}`
    })
  }
})

/** A rule for commands: an argv prefix, an RE2 regex over the words joined by spaces, or a preset (see the module doc). */
export const ExecRule = z.union([
  z.strictObject({ prefix: z.array(z.string()).min(1), decision: RuleDecision }),
  z.strictObject({ regex, decision: RuleDecision }),
  z.strictObject({ preset: z.literal("read_only"), decision: RuleDecision })
])
/** A rule for commands. */
export type ExecRule = z.output<typeof ExecRule>

/** A rule for patches: a glob over each changed path. */
export const PatchRule = z.strictObject({ glob: z.string().min(1), decision: RuleDecision })
/** A rule for patches. */
export type PatchRule = z.output<typeof PatchRule>

/** A whole policy, as written in a policy file. */
export const Policy = z.strictObject({
  exec: z.array(ExecRule).default([]),
  patch: z.array(PatchRule).default([]),
  /** Fixed answers by question id; questions without one get no answer. */
  answers: z.record(z.string(), z.array(z.string())).default({}),
  default: RuleDecision.default("denied")
})
/** A whole policy. */
export type Policy = z.output<typeof Policy>
/** A policy as written (defaults may be left out). */
export type PolicyInput = z.input<typeof Policy>

/** Decodes a policy, naming every bad field (a regex RE2 cannot run is named with RE2's message). */
export const decodePolicy = (input: unknown, source = "policy"): Effect.Effect<Policy, InvalidInput> =>
  decode(Policy, source)(input)

/**
 * A policy from an object literal; throws on a bad one (for programs that write policies in code).
 * `policy.readOnly` approves the read-only preset's commands and denies everything else.
 */
export const policy: ((input: PolicyInput) => Policy) & { readonly readOnly: Policy } = Object.assign(
  (input: PolicyInput): Policy => Policy.parse(input),
  { readOnly: Policy.parse({ exec: [{ preset: "read_only", decision: "approved" }] }) }
)

/** A rule in words, for reasons and error messages. */
export const describeExecRule = (rule: ExecRule): string =>
  "prefix" in rule
    ? `prefix ${JSON.stringify(rule.prefix)}`
    : "regex" in rule
      ? `regex ${JSON.stringify(rule.regex)}`
      : `preset ${JSON.stringify(rule.preset)}`

type Match = "yes" | "no" | "maybe"

/**
 * Whether `rule` matches a simple command; `maybe` when it depends on a word only the shell knows.
 * For deny and ask rules (`guarding`), a prefix's first word also matches the command run by path
 * (`["rm"]` matches `/bin/rm`): a guard should not be walked around by spelling the path.
 */
const matchesExec = (rule: ExecRule, words: ReadonlyArray<Word>, guarding = false): Match => {
  if ("prefix" in rule) {
    if (rule.prefix.length > words.length) return "no"
    let unknown = false
    for (const [i, word] of rule.prefix.entries()) {
      const actual = words[i]
      if (actual === undefined) unknown = true
      else if (actual !== word && !(guarding && i === 0 && !word.includes("/") && basename(actual) === word)) {
        return "no"
      }
    }
    return unknown ? "maybe" : "yes"
  }
  if (words.some((w) => w === undefined)) return "maybe"
  const known = words as ReadonlyArray<string>
  if ("regex" in rule) {
    const re = compileRegex(rule.regex)
    // `test` searches anywhere (like RegExp.test) on re2js's DFA path. Decoding rejects a regex RE2 cannot
    // compile; one that slipped past zod counts as a possible match (deny yes, allow no).
    return re instanceof Error ? "maybe" : re.test(known.join(" ")) ? "yes" : "no"
  }
  return isReadOnlyCommand(known) ? "yes" : "no"
}

/** Deny wins, then ask, then allow; of allows, `approved_for_session` only if every match says so. */
const combine = (decisions: ReadonlyArray<RuleDecision>): RuleDecision | undefined => {
  if (decisions.length === 0) return undefined
  if (decisions.includes("denied")) return "denied"
  if (decisions.includes("ask")) return "ask"
  return decisions.every((d) => d === "approved_for_session") ? "approved_for_session" : "approved"
}

/** A decision on a command, with the reason for it (for logs, and for a person asked). */
export interface ExecVerdict {
  readonly decision: RuleDecision
  readonly reason: string
}

const shown = (words: ReadonlyArray<Word>) => JSON.stringify(words.map((w) => w ?? "…").join(" "))

/** The first rule deciding `decision` that matches (or may match) something the command runs. */
const guard = (policy: Policy, analysis: CommandAnalysis, decision: "denied" | "ask"): string | undefined => {
  for (const [index, rule] of policy.exec.entries()) {
    if (rule.decision !== decision) continue
    const what = `exec rule ${index} (${describeExecRule(rule)})`
    if (analysis.opaque !== undefined) return `${what} cannot be ruled out: ${analysis.opaque}`
    for (const words of analysis.seen) {
      const match = matchesExec(rule, words, true)
      if (match === "yes") return `${what} matches ${shown(words)}`
      if (match === "maybe") return `${what} may match ${shown(words)}, whose words the shell computes`
    }
  }
  return undefined
}

/** The policy's decision on an analysed command (see the module doc). */
const judge = (policy: Policy, analysis: CommandAnalysis): ExecVerdict => {
  if (analysis.parseError !== undefined) {
    return { decision: "denied", reason: `the script does not parse: ${analysis.parseError}` }
  }
  const denied = guard(policy, analysis, "denied")
  if (denied !== undefined) return { decision: "denied", reason: denied }
  const asked = guard(policy, analysis, "ask")
  if (asked !== undefined) return { decision: "ask", reason: asked }
  const fallback = (why: string): ExecVerdict => ({
    decision: policy.default,
    reason: `${why}; the default decides (${policy.default})`
  })
  if (analysis.notPlain !== undefined) return fallback(`no allow rule can approve it: ${analysis.notPlain}`)
  const perCommand: Array<RuleDecision> = []
  for (const words of analysis.leaves) {
    const decision = combine(
      policy.exec
        .filter((rule) => rule.decision !== "denied" && rule.decision !== "ask" && matchesExec(rule, words) === "yes")
        .map((rule) => rule.decision)
    )
    if (decision === undefined) return fallback(`no allow rule matches ${shown(words)}`)
    perCommand.push(decision)
  }
  const decision = combine(perCommand)
  return decision === undefined
    ? fallback("it runs no command")
    : { decision, reason: `allow rules approve every command: ${analysis.leaves.map(shown).join(", ")}` }
}

/** The policy's decision on a command, given a loaded shell parser (synchronous). */
export const judgeExec = (policy: Policy, shell: ShellParser, command: ReadonlyArray<string>): ExecVerdict =>
  judge(policy, analyzeCommand(shell, command))

/** The policy's decision on a command and why; `denied` if the shell parser cannot load or judging fails (fail closed). */
export const policyExecVerdict = (policy: Policy, command: ReadonlyArray<string>): Effect.Effect<ExecVerdict> =>
  shellParser.pipe(
    // A bug or an exhausted WASM heap while judging must not approve anything (fail closed).
    Effect.flatMap((shell) =>
      Effect.try({ try: () => judgeExec(policy, shell, command), catch: (error) => `could not judge: ${error}` })
    ),
    Effect.catchAll((error) =>
      Effect.succeed({ decision: "denied" as const, reason: typeof error === "string" ? error : error.message })
    )
  )

/** The policy's decision on a command (see the module doc for what each rule matches). */
export const policyExecDecision = (policy: Policy, command: ReadonlyArray<string>): Effect.Effect<RuleDecision> =>
  Effect.map(policyExecVerdict(policy, command), (verdict) => verdict.decision)

/** The policy's decision on a patch: every path must be allowed; one denied or unmatched path decides for all. */
export const policyPatchDecision = (policy: Policy, paths: ReadonlyArray<string>): RuleDecision => {
  const perPath = paths.map(
    (path) =>
      combine(
        policy.patch.filter((rule) => picomatch.isMatch(path, rule.glob, { dot: true })).map((rule) => rule.decision)
      ) ?? policy.default
  )
  return combine(perPath) ?? policy.default
}

/** The policy's answers to questions, or `undefined` when it has none for any of them. */
export const policyUserInputAnswers = (
  policy: Policy,
  questions: ReadonlyArray<Question>
): UserInputResponse | undefined => {
  const answered = questions.filter((q) => policy.answers[q.id] !== undefined)
  if (answered.length === 0) return undefined
  return { answers: Object.fromEntries(answered.map((q) => [q.id, { answers: policy.answers[q.id] ?? [] }])) }
}
