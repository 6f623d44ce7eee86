/**
 * The shared shape of every benchmark (issue 12): paired rounds in rotated order, figures as medians
 * with their min–max over the rounds, ratios as the median of per-round ratios (never a ratio of
 * bests from different rounds), one table. A bench file builds `Figure`s and calls `report`: run alone
 * it prints its table; under `pnpm bench` (test/bench/all.ts) it also prints one machine-readable line
 * the runner gathers into a single table.
 */

/** One row of the table. */
export interface Figure {
  /** Which benchmark it comes from (delegate, rollout, …). */
  readonly bench: string
  /** What is measured, in words. */
  readonly figure: string
  /** The unit of median / min / max. */
  readonly unit: string
  readonly median: number
  readonly min: number
  readonly max: number
  /** What the figure is compared with, doing the same work (its median, same unit). */
  readonly baseline?: { readonly name: string; readonly median: number }
  /** Median of the per-round ratios figure / baseline (or the figure itself when it is a ratio). */
  readonly ratio?: number
  /** The target, in words (`ratio ≤ 2.0`, `≤ 48 KB`). */
  readonly target?: string
  /** Whether the target is met; absent without a target. */
  readonly met?: boolean
}

/** The marker of the machine-readable line `pnpm bench` gathers. */
export const FIGURE_LINE = "BENCH_FIGURE "

/** Rounds from the environment (`BENCH_ROUNDS`), else `fallback`. */
export const rounds = (fallback: number): number => Number(process.env.BENCH_ROUNDS ?? fallback)

/** A number from the environment, else `fallback`. */
export const knob = (name: string, fallback: number): number => Number(process.env[name] ?? fallback)

/** The median of `xs` (the upper one of an even count). */
export const median = (xs: ReadonlyArray<number>): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN
}

/** The q-quantile of `xs` (nearest rank). */
export const quantile = (xs: ReadonlyArray<number>, q: number): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN
}

/** Samples of each variant, one per round, and the rounds' order. */
export type Samples<K extends string> = Record<K, Array<number>>

/**
 * Runs every variant once per round, the order rotated by one each round (so no variant always runs
 * first or right after another), after one untimed warm-up round. `measure` returns the sample (a time,
 * a rate, bytes).
 */
export const paired = async <K extends string>(
  count: number,
  variants: ReadonlyArray<readonly [K, () => Promise<number>]>,
  options: { readonly warmup?: boolean; readonly log?: string } = {}
): Promise<Samples<K>> => {
  const samples = Object.fromEntries(variants.map(([name]) => [name, [] as Array<number>])) as Samples<K>
  if (options.warmup !== false) for (const [, run] of variants) await run()
  for (let round = 0; round < count; round++) {
    const line: Array<string> = []
    for (let k = 0; k < variants.length; k++) {
      const [name, run] = variants[(round + k) % variants.length]!
      const value = await run()
      samples[name].push(value)
      line.push(`${name} ${value.toPrecision(4)}`)
    }
    if (options.log !== undefined) console.error(`${options.log} round ${round + 1}/${count}: ${line.join(" | ")}`)
  }
  return samples
}

/** Per-round ratios a / b. */
export const ratios = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): Array<number> => a.map((x, i) => x / b[i]!)

/** A figure from samples, compared with a baseline's samples of the same rounds. */
export const compare = (
  bench: string,
  figure: string,
  unit: string,
  samples: ReadonlyArray<number>,
  baseline: { readonly name: string; readonly samples: ReadonlyArray<number> } | undefined,
  target?: { readonly text: string; readonly met: (ratio: number, median: number) => boolean }
): Figure => {
  const m = median(samples)
  const perRound = baseline === undefined ? undefined : median(ratios(samples, baseline.samples))
  // A baseline of zero (0 ticks) has no finite ratio: the two medians say it all.
  const ratio = perRound !== undefined && Number.isFinite(perRound) ? perRound : undefined
  return {
    bench,
    figure,
    unit,
    median: m,
    min: Math.min(...samples),
    max: Math.max(...samples),
    ...(baseline === undefined ? {} : { baseline: { name: baseline.name, median: median(baseline.samples) } }),
    ...(ratio === undefined ? {} : { ratio }),
    ...(target === undefined ? {} : { target: target.text, met: target.met(ratio ?? m, m) })
  }
}

const num = (n: number): string =>
  !Number.isFinite(n)
    ? String(n)
    : Math.abs(n) >= 1000
      ? Math.round(n).toLocaleString("en-US")
      : Math.abs(n) >= 10
        ? n.toFixed(1)
        : n.toFixed(n === 0 ? 0 : 3)

/** The table of `figures` as Markdown. */
export const table = (figures: ReadonlyArray<Figure>): string => {
  const rows = [
    ["bench", "figure", "median", "min–max", "baseline", "ratio", "target", "met"],
    ["---", "---", "---", "---", "---", "---", "---", "---"],
    ...figures.map((f) => [
      f.bench,
      f.figure,
      `${num(f.median)} ${f.unit}`,
      `${num(f.min)}–${num(f.max)}`,
      f.baseline === undefined ? "" : `${f.baseline.name}: ${num(f.baseline.median)} ${f.unit}`,
      f.ratio === undefined || f.ratio === null ? "" : f.ratio.toFixed(3),
      f.target ?? "",
      f.met === undefined ? "" : f.met ? "✓" : "✗"
    ])
  ]
  return rows.map((r) => `| ${r.join(" | ")} |`).join("\n")
}

/** Prints the figures: as a table, and as machine-readable lines for `pnpm bench`. */
export const report = (figures: ReadonlyArray<Figure>): void => {
  if (process.env.BENCH_GATHER === "1") {
    for (const f of figures) console.log(FIGURE_LINE + JSON.stringify(f))
  } else {
    console.log(table(figures))
  }
}

/** Runs a bench's main, reporting its figures; a failure sets the exit code. */
export const main = (figures: () => Promise<ReadonlyArray<Figure>>): void => {
  figures().then(report, (error: unknown) => {
    console.error(error)
    process.exitCode = 1
  })
}
