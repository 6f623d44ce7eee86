/**
 * The policy benchmark (issue 8, §27): a regex rule that backtracks catastrophically in JavaScript's
 * engine, `^(a+)+$`, judged against a 10,000-character command that it does not match (the worst
 * case), next to a baseline rule (`^cat `) on the same command. Regex rules run on RE2 (re2js), so both
 * are linear. Paired rounds, the order rotated each round; the figures are medians of the rounds, the
 * ratio the median of the per-round ratios. Also: one decision on a typical `bash -lc` script
 * (parsing with tree-sitter-bash included) under `policy.readOnly`.
 *
 *   node --conditions=@deputy/source --import tsx test/bench/policy.bench.ts
 */
import { judgeExec, type Policy, policy, shellParser } from "@deputy/core"
import { Effect } from "effect"
import { compare, main, rounds } from "./harness.js"

const ROUNDS = rounds(21)
const PER_ROUND = 20
const command = [`${"a".repeat(10_000)}!`]
const catastrophic = policy({ exec: [{ regex: "^(a+)+$", decision: "denied" }], default: "approved" })
const baseline = policy({ exec: [{ regex: "^cat ", decision: "denied" }], default: "approved" })
const script = ["/bin/bash", "-lc", "cat src/add.ts && git diff --stat | head -n 20; git log --oneline -n 5"]

const figures = async () => {
  const shell = await Effect.runPromise(shellParser)
  /** Milliseconds per decision, over PER_ROUND decisions. */
  const time = (rules: Policy, argv: ReadonlyArray<string>, expected: string) => {
    const start = performance.now()
    for (let i = 0; i < PER_ROUND; i++) {
      const verdict = judgeExec(rules, shell, argv)
      if (verdict.decision !== expected) throw new Error(`unexpected ${verdict.decision}: ${verdict.reason}`)
    }
    return (performance.now() - start) / PER_ROUND
  }
  // Warm up the JIT and the regex cache.
  time(catastrophic, command, "approved")
  time(baseline, command, "approved")
  time(policy.readOnly, script, "approved")
  const slow: Array<number> = []
  const base: Array<number> = []
  const parsed: Array<number> = []
  for (let round = 0; round < ROUNDS; round++) {
    const runs = [
      () => slow.push(time(catastrophic, command, "approved")),
      () => base.push(time(baseline, command, "approved")),
      () => parsed.push(time(policy.readOnly, script, "approved"))
    ]
    for (let k = 0; k < runs.length; k++) runs[(round + k) % runs.length]?.()
  }
  return [
    compare(
      "policy",
      "^(a+)+$ on a 10,001-char command (no match), per decision",
      "ms",
      slow,
      { name: "^cat on the same command", samples: base },
      { text: "< 10 ms", met: (_, m) => m < 10 }
    ),
    compare("policy", "policy.readOnly on a 4-command bash -lc script, parse included", "ms", parsed, undefined)
  ]
}

main(figures)
