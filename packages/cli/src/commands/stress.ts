/**
 * `deputy stress`: the SDK's `stress` harness from a terminal or CI. Runs N randomised sub-agents
 * (a seeded share cancelled at random moments), checks the invariants, prints the report, and exits
 * 1 when any invariant broke (each violation names the seed and thread that reproduce it).
 */
import { formatStressReport, stress as runStress } from "@deputy/sdk"
import { Command, Options } from "@effect/cli"
import { CliError, ExitCode, usage } from "../errors.js"
import { body, jsonOption } from "./shared.js"

const MAX_AGENTS = 100_000

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
      // A live progress line on a terminal (stderr), redrawn in place.
      const live = process.stderr.isTTY === true
      const report = await runStress({
        agents: args.agents,
        seed: args.seed,
        cancelShare: args.cancelShare,
        ...(live
          ? { onProgress: (ended: number, total: number) => process.stderr.write(`\r${ended}/${total} agents ended`) }
          : {})
      })
      if (live) process.stderr.write("\n")
      process.stdout.write(args.json ? `${JSON.stringify(report)}\n` : `${formatStressReport(report)}\n`)
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
