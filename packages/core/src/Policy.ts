/**
 * Approval policies: allow / deny rules for commands (by argv prefix or regex) and for patches (by path
 * glob), fixed answers to questions, and a default. Deny wins over allow; nothing matched gives the
 * default, which is `denied` unless the policy says otherwise. Policies are plain data, decoded by zod.
 */
import type { Question, UserInputResponse } from "@deputy/protocol"
import type { Effect } from "effect"
import picomatch from "picomatch"
import { z } from "zod"
import type { InvalidInput } from "./errors.js"
import { decode } from "./internal/decode.js"

/** What a rule says: a decision, or `ask` (leave it to a person or program; alone, that is no answer, so denied). */
export const RuleDecision = z.enum(["approved", "approved_for_session", "denied", "ask"])
/** What a rule says. */
export type RuleDecision = z.output<typeof RuleDecision>

const regex = z.string().refine((source) => {
  try {
    new RegExp(source)
    return true
  } catch {
    return false
  }
}, "not a valid regular expression")

/** A rule for commands: matches an argv prefix, or a regex over the command joined by spaces. */
export const ExecRule = z.union([
  z.strictObject({ prefix: z.array(z.string()).min(1), decision: RuleDecision }),
  z.strictObject({ regex, decision: RuleDecision })
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

/** Decodes a policy, naming every bad field. */
export const decodePolicy = (input: unknown, source = "policy"): Effect.Effect<Policy, InvalidInput> =>
  decode(Policy, source)(input)

/** A policy from an object literal; throws on a bad one (for programs that write policies in code). */
export const policy = (input: PolicyInput): Policy => Policy.parse(input)

const matchesExec = (rule: ExecRule, command: ReadonlyArray<string>) =>
  "prefix" in rule
    ? rule.prefix.length <= command.length && rule.prefix.every((word, i) => command[i] === word)
    : new RegExp(rule.regex).test(command.join(" "))

/** Deny wins, then ask, then allow; of allows, `approved_for_session` only if every match says so. */
const combine = (decisions: ReadonlyArray<RuleDecision>): RuleDecision | undefined => {
  if (decisions.length === 0) return undefined
  if (decisions.includes("denied")) return "denied"
  if (decisions.includes("ask")) return "ask"
  return decisions.every((d) => d === "approved_for_session") ? "approved_for_session" : "approved"
}

/** The policy's decision on a command. */
export const policyExecDecision = (policy: Policy, command: ReadonlyArray<string>): RuleDecision =>
  combine(policy.exec.filter((rule) => matchesExec(rule, command)).map((rule) => rule.decision)) ?? policy.default

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
