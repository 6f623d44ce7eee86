/**
 * `deputy stress`: the SDK's `stress` harness from a terminal or CI. Runs N randomised sub-agents
 * (a seeded share cancelled at random moments), checks the invariants, prints the report, and exits
 * 1 when any invariant broke (each violation names the seed and thread that reproduce it).
 */
import { stress as runStress, type StressReport } from "@deputy/sdk"
import { Command, Options } from "@effect/cli"
import { CliError, ExitCode, usage } from "../errors.js"
import { body, jsonOption } from "./shared.js"

const MAX_AGENTS = 100_000

const ms = (p: { readonly p50: number; readonly p99: number; readonly max: number }) =>
  `p50 ${p.p50.toFixed(1)} / p99 ${p.p99.toFixed(1)} / max ${p.max.toFixed(1)} ms`

/** The report as lines a person reads. */
const describe = (report: StressReport): string =>
  [
    `deputy stress: ${report.agents} agents (${report.threads} threads, ${report.cancelled} cancelled), seed ${report.seed}`,
    `  ${report.seconds.toFixed(1)} s: ${report.threadsPerSecond.toFixed(0)} threads/s, ${report.eventsPerSecond.toFixed(0)} events/s, ${report.approvals} approvals`,
    `  approval round trip ${ms(report.approvalRoundTripMs)}`,
    `  cancel → shutdown received ${ms(report.cancelToShutdownMs)}`,
    `  event-loop delay ${ms(report.eventLoopDelayMs)}, peak RSS ${(report.peakRssBytes / 2 ** 20).toFixed(0)} MiB`,
    report.violations.length === 0 ? "  every invariant held" : `  ${report.violations.length} invariant(s) broken:`,
    ...report.violations.map(
      (v) => `    ${v.invariant}: ${v.detail} (seed ${v.seed}, agent ${v.agent}, thread ${v.threadId || "-"})`
    )
  ].join("\n")

/** The `stress` command. */
export const stress = Command.make(
  "stress",
  {
    agents: Options.integer("agents").pipe(
      Options.withDefault(1000),
      Options.withDescription("top-level sub-agents (their nested sub-agents come on top)")
    ),
    seed: Options.integer("seed").pipe(
      Options.withDefault(1),
      Options.withDescription("the same seed plays the same run")
    ),
    cancelShare: Options.float("cancel-share").pipe(
      Options.withDefault(0.3),
      Options.withDescription("share of agents cancelled at a random moment, 0 to 1")
    ),
    json: jsonOption
  },
  (args) =>
    body(async () => {
      if (args.agents < 1 || args.agents > MAX_AGENTS) {
        throw usage(`--agents ${args.agents}: expected a whole number from 1 to ${MAX_AGENTS}`)
      }
      if (!(args.cancelShare >= 0 && args.cancelShare <= 1)) {
        throw usage(`--cancel-share ${args.cancelShare}: expected a number from 0 to 1`)
      }
      const report = await runStress({ agents: args.agents, seed: args.seed, cancelShare: args.cancelShare })
      process.stdout.write(args.json ? `${JSON.stringify(report)}\n` : `${describe(report)}\n`)
      if (report.violations.length > 0) {
        throw new CliError({
          code: ExitCode.failed,
          message: `${report.violations.length} invariant(s) broken; replay with --seed ${report.seed} --agents ${report.agents}`
        })
      }
    })
).pipe(
  Command.withDescription(
    "Run randomised sub-agents under cancellation and load, check deputy's invariants, print a report (exit 1 on a violation).\n" +
      "Example: deputy stress --agents 1000 --seed 1"
  )
)
