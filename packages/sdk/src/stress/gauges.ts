/**
 * A run's gauges, from `startGauges` to `stop`: wall time, peak RSS (sampled every 100 ms, and at both
 * ends) and the event loop's delay (perf_hooks.monitorEventLoopDelay). `stop` clears the sampler.
 */
import { monitorEventLoopDelay } from "node:perf_hooks"

/** What the gauges read between start and stop. */
export interface GaugeReadings {
  readonly seconds: number
  readonly peakRssBytes: number
  readonly eventLoopDelayMs: { readonly p50: number; readonly p99: number; readonly max: number }
}

/** Starts the gauges; `stop` reads them and lets their timer go. */
export const startGauges = (): { readonly stop: () => GaugeReadings } => {
  const delay = monitorEventLoopDelay({ resolution: 10 })
  delay.enable()
  let peakRss = process.memoryUsage.rss()
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage.rss())
  }, 100)
  const startedAt = performance.now()
  const stop = (): GaugeReadings => {
    const seconds = (performance.now() - startedAt) / 1000
    clearInterval(sampler)
    delay.disable()
    peakRss = Math.max(peakRss, process.memoryUsage.rss())
    const ms = (ns: number) => Math.round((ns / 1e6) * 100) / 100
    return {
      seconds,
      peakRssBytes: peakRss,
      eventLoopDelayMs: { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), max: ms(delay.max) }
    }
  }
  return { stop }
}
