/**
 * The README's first command is `deputy pipeline` on the example, through the workspace's `deputy`
 * script (the CLI from source, with tsx): run here as that script runs it.
 */
import { execFile } from "node:child_process"
import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { assert, describe, it } from "vitest"
import { repoRoot, scratch } from "./support.js"

describe("README: the two commands", () => {
  it("the first runs the example pipeline with the workspace's deputy script; the second is unchanged", async () => {
    const readme = await readFile(join(repoRoot, "README.md"), "utf8")
    const section = readme.slice(readme.indexOf("## Two commands"), readme.indexOf("## Install"))
    const commands = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => (m[1] ?? "").trim())
    assert.deepStrictEqual(commands, [
      "npx -y pnpm@10.34.9 install --frozen-lockfile && npx -y pnpm@10.34.9 deputy pipeline examples/pipeline/pipeline.yaml",
      "npx -y pnpm@10.34.9 install --frozen-lockfile && npx -y pnpm@10.34.9 test"
    ])
    const pkg = JSON.parse(await readFile(join(repoRoot, "package.json"), "utf8")) as {
      scripts: Record<string, string>
    }
    assert.strictEqual(pkg.scripts.deputy, "tsx --conditions=@deputy/source packages/cli/src/cli.ts")
    assert.isDefined(pkg.scripts.demo, "pnpm demo still works")

    const box = await scratch()
    try {
      const tsx = join(repoRoot, "node_modules/tsx/dist/cli.mjs")
      const result = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
        const child = execFile(
          process.execPath,
          [
            tsx,
            "--conditions=@deputy/source",
            "packages/cli/src/cli.ts",
            "pipeline",
            "examples/pipeline/pipeline.yaml"
          ],
          { cwd: repoRoot, env: { ...process.env, ...box.env }, timeout: 60_000 },
          (_, stdout) => resolve({ code: child.exitCode, stdout })
        )
      })
      assert.strictEqual(result.code, 0)
      assert.include(result.stdout, "worker-b: $ rm -rf build: denied by policy")
      assert.include(result.stdout, "4 of 5 steps succeeded; worker-c timed out after 1s (optional)\n")
    } finally {
      await box.remove()
    }
  }, 60_000)
})
