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

const ROUNDS = 21
const PER_ROUND = 20
const command = [`${"a".repeat(10_000)}!`]
const catastrophic = policy({ exec: [{ regex: "^(a+)+$", decision: "denied" }], default: "approved" })
const baseline = policy({ exec: [{ regex: "^cat ", decision: "denied" }], default: "approved" })
const script = ["/bin/bash", "-lc", "cat src/add.ts && git diff --stat | head -n 20; git log --oneline -n 5"]

const median = (xs: ReadonlyArray<number>) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN
}

const main = async () => {
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
  const ratios: Array<number> = []
  const parsed: Array<number> = []
  for (let round = 0; round < ROUNDS; round++) {
    const runs = [
      () => slow.push(time(catastrophic, command, "approved")),
      () => base.push(time(baseline, command, "approved")),
      () => parsed.push(time(policy.readOnly, script, "approved"))
    ]
    for (let k = 0; k < runs.length; k++) runs[(round + k) % runs.length]?.()
    ratios.push((slow.at(-1) ?? 0) / (base.at(-1) ?? 1))
  }
  console.log(`policy benchmark, ${ROUNDS} paired rounds of ${PER_ROUND} decisions; node ${process.version}`)
  console.log(
    `^(a+)+$ on a 10,001-char command (no match): ${median(slow).toFixed(3)} ms per decision (target < 10 ms)`
  )
  console.log(`^cat    on the same command (baseline):      ${median(base).toFixed(3)} ms per decision`)
  console.log(`ratio catastrophic/baseline, median of rounds: ${median(ratios).toFixed(2)}x`)
  console.log(
    `policy.readOnly on a 4-command bash -lc script (parse included): ${(median(parsed) * 1000).toFixed(0)} µs`
  )
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
