/**
 * `deputy stress`: the SDK's `stress` harness from a terminal or CI. Runs N randomised sub-agents
 * (a seeded share cancelled at random moments), checks the invariants, prints the report, and exits
 * 1 when any invariant broke (each violation names the seed and thread that reproduce it).
 * `--backend codex` plays the agents on the real Codex app-server against deputy's mock model on
 * 127.0.0.1 (offline), 20 agents unless `--agents` says otherwise.
 */
import { formatStressReport, stress as runStress, STRESS_BACKENDS, type StressBackend } from "@deputy/sdk"
import { Command, Options } from "@effect/cli"
import { CliError, ExitCode, usage } from "../errors.js"
import { body, get, jsonOption } from "./shared.js"

const MAX_AGENTS = 100_000

/** The `stress` command. */
export const stress = Command.make(
  "stress",
  {
    backend: Options.text("backend").pipe(
      Options.withDefault("scripted"),
      Options.withDescription(
        "what plays the sub-agents: scripted (in process) or codex (the real Codex app-server on deputy's mock model)"
      )
    ),
    agents: Options.integer("agents").pipe(
      Options.withDescription("top-level sub-agents (their nested sub-agents come on top); default 1000, 20 on codex"),
      Options.optional
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
      if (!(STRESS_BACKENDS as ReadonlyArray<string>).includes(args.backend)) {
        throw usage(`--backend ${args.backend}: expected ${STRESS_BACKENDS.join(" or ")}`)
      }
      const backend = args.backend as StressBackend
      const agents = get(args.agents) ?? (backend === "codex" ? 20 : 1000)
      if (agents < 1 || agents > MAX_AGENTS) {
        throw usage(`--agents ${agents}: expected a whole number from 1 to ${MAX_AGENTS}`)
      }
      if (!(args.cancelShare >= 0 && args.cancelShare <= 1)) {
        throw usage(`--cancel-share ${args.cancelShare}: expected a number from 0 to 1`)
      }
      // A live progress line on a terminal (stderr), redrawn in place.
      const live = process.stderr.isTTY === true
      const report = await runStress({
        backend,
        agents,
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
          message: `${report.violations.length} invariant(s) broken; replay with --backend ${report.backend} --seed ${report.seed} --agents ${report.agents}`
        })
      }
    })
).pipe(
  Command.withDescription(
    "Run randomised sub-agents under cancellation and load, check deputy's invariants, print a report (exit 1 on a violation).\n" +
      "Example: deputy stress --agents 1000 --seed 1; deputy stress --backend codex --agents 20 --seed 1"
  )
)
