import { readdirSync, readlinkSync } from "node:fs"
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "vitest"
import { repoRoot, runTs, typecheck } from "./support.js"

// The README is the source of truth: its ```ts blocks are written out, type-checked and run as they are.
const readme = await readFile(join(repoRoot, "README.md"), "utf8")
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1] ?? "")
// Inside the repository, so `@deputy/sdk` resolves from its node_modules; .tsbuild is ignored by git.
const folder = join(repoRoot, ".tsbuild", "readme")
const files = blocks.map((_, i) => join(folder, `block-${i}.ts`))
// Each package's README example is type-checked too (not run: some need the real Codex CLI).
const packageBlocks = await Promise.all(
  ["sdk", "core", "protocol", "scripted", "mock-model", "codex"].map(async (name) => {
    const text = await readFile(join(repoRoot, "packages", name, "README.md"), "utf8")
    return [...text.matchAll(/```ts\n([\s\S]*?)```/g)].map((m, i) => ({
      file: join(folder, `${name}-${i}.ts`),
      code: m[1] ?? ""
    }))
  })
).then((all) => all.flat())

let home: string
beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), "deputy-readme-"))
  await mkdir(folder, { recursive: true })
  await Promise.all(blocks.map((block, i) => writeFile(files[i] ?? "", block)))
  await Promise.all(packageBlocks.map(({ file, code }) => writeFile(file, code)))
})
afterAll(async () => {
  await rm(home, { recursive: true, force: true })
})

describe("README", () => {
  it("has the Promise quickstart first, then the Effect API", () => {
    assert.isAtLeast(blocks.length, 2)
    assert.include(blocks[0], 'from "@deputy/sdk"')
    assert.include(blocks[1], 'from "@deputy/sdk/core"')
  })

  it("every ts block, and each package README's example, type-checks as a strict NodeNext module", async () => {
    assert.lengthOf(packageBlocks, 6)
    await typecheck(folder, [...files, ...packageBlocks.map((b) => b.file)])
  }, 120_000)

  it("the quickstart runs as written: echo approved, curl denied, the final message printed", async () => {
    const out = await runTs(files[0] ?? "", { cwd: home, env: { DEPUTY_HOME: home } })
    assert.include(out, "done\n")
    assert.include(out, "'approved by policy', 'denied by policy'")
  }, 60_000)

  it("the Effect quickstart runs as written", async () => {
    const out = await runTs(files[1] ?? "", { cwd: home, env: { DEPUTY_HOME: home } })
    assert.include(out, "exec_command_end")
    assert.include(out, "turn_complete")
  }, 60_000)
})

describe("examples/side-by-side: the codex-sdk / Claude Agent SDK job with deputy", () => {
  const job = join(repoRoot, "examples/side-by-side/job.ts")

  it("is at most 16 lines", async () => {
    const lines = (await readFile(job, "utf8")).trimEnd().split("\n")
    assert.isAtMost(lines.length, 16)
  })

  it("reviews (echo approved, curl denied), prints the final message, cancels the builder mid-command", async () => {
    const out = (await runTs(job, { cwd: home, env: { DEPUTY_HOME: home } })).trim().split("\n")
    assert.strictEqual(out[0], "LGTM: tests pass; I did not upload anything. [ 'approved', 'denied' ]")
    const report = JSON.parse(out[1] ?? "{}") as { threads: Array<{ outcome: string }> }
    assert.deepStrictEqual(
      report.threads.map((t) => t.outcome),
      ["aborted"]
    )
    // Nothing of the cancelled build is left running: no process has this run's unique folder as its cwd.
    const left = readdirSync("/proc")
      .filter((pid) => /^\d+$/.test(pid))
      .filter((pid) => {
        try {
          return readlinkSync(`/proc/${pid}/cwd`) === home
        } catch {
          return false
        }
      })
    assert.deepStrictEqual(left, [])
  }, 60_000)
})
