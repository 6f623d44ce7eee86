/**
 * `deputy stress`, the built bin as a child process: `deputy stress --agents 1000 --seed 1` (the command
 * issue 13 names) reports with every invariant held (exit 0); `--backend codex` runs the real Codex
 * app-server against deputy's mock model (exit 0, the JSON report on stdout); a bad flag is one line
 * naming it (exit 2).
 */
import { afterAll, assert, beforeAll, describe, it } from "vitest"
import { build, deputy, scratch } from "./support.js"

let box: Awaited<ReturnType<typeof scratch>>

beforeAll(async () => {
  await build()
  box = await scratch()
}, 180_000)
afterAll(() => box.remove())

describe("deputy stress", () => {
  it("deputy stress --agents 1000 --seed 1, the command issue 13 names, holds every invariant: exit 0 and its report", async () => {
    const ran = await deputy(["stress", "--agents", "1000", "--seed", "1"], { cwd: box.dir, env: box.env })
    assert.strictEqual(ran.code, 0, ran.stderr + ran.stdout)
    const report = ran.stdout.trim().split("\n")
    assert.match(
      report[0] ?? "",
      /^deputy stress: 1000 agents on scripted \((\d+) threads started, nested ones included\), seed 1$/
    )
    assert.isAbove(Number(/\((\d+) threads/.exec(report[0] ?? "")?.[1]), 1000) // nested sub-agents ran too
    assert.match(report[1] ?? "", /^[\d.]+ s: \d+ threads\/s, \d+ events\/s; \d+ cancelled, \d+ approvals$/)
    assert.match(report[2] ?? "", /^approval round trip p50 [\d.]+ ms, p99 [\d.]+ ms$/)
    assert.match(report[3] ?? "", /^cancel → shutdown p50 [\d.]+ ms, p99 [\d.]+ ms$/)
    assert.match(report[4] ?? "", /^peak RSS \d+ MiB; event-loop delay p50 [\d.]+ ms, p99 [\d.]+ ms, max [\d.]+ ms$/)
    assert.strictEqual(report[5], "no invariant broken")
    assert.lengthOf(report, 6)
    console.log(ran.stdout)
  }, 240_000)

  it("--agents 0 is bad usage: one line naming the flag, exit 2", async () => {
    const ran = await deputy(["stress", "--agents", "0"], { cwd: box.dir, env: box.env })
    assert.strictEqual(ran.code, 2)
    const lines = ran.stderr.trim().split("\n")
    assert.lengthOf(lines, 1)
    assert.include(lines[0], "--agents 0")
  }, 60_000)

  it("--backend codex: 6 agents on the real Codex app-server and the mock model hold every invariant, exit 0", async () => {
    const ran = await deputy(
      ["stress", "--backend", "codex", "--agents", "6", "--seed", "1", "--cancel-share", "0.5", "--json"],
      {
        cwd: box.dir,
        env: box.env
      }
    )
    assert.strictEqual(ran.code, 0, ran.stderr)
    const report = JSON.parse(ran.stdout.trim().split("\n").at(-1) ?? "{}")
    assert.strictEqual(report.backend, "codex")
    assert.strictEqual(report.agents, 6)
    assert.deepStrictEqual(report.violations, [])
    assert.isAbove(report.cancelled, 0)
    assert.isAbove(report.approvals, 0)
  }, 120_000)

  it("--backend nope is bad usage: one line naming the flag and the choices, exit 2", async () => {
    const ran = await deputy(["stress", "--backend", "nope"], { cwd: box.dir, env: box.env })
    assert.strictEqual(ran.code, 2)
    const lines = ran.stderr.trim().split("\n")
    assert.lengthOf(lines, 1)
    assert.include(lines[0], "--backend nope: expected scripted or codex")
  }, 60_000)
})
