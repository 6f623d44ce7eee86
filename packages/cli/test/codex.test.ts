/**
 * `deputy mock-model` and `deputy run --backend codex`, both the built bin: the mock serves a scenario
 * on 127.0.0.1 and writes a CODEX_HOME; the real Codex CLI (@openai/codex) then runs offline against
 * it, its exec request goes through the policy file (denied, the file is never written), and --json
 * shows the events and the approval line.
 */
import { existsSync } from "node:fs"
import { join } from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "vitest"
import { build, deputy, scratch, spawnDeputy, waitFor } from "./support.js"

let box: Awaited<ReturnType<typeof scratch>>
beforeAll(async () => {
  await build()
  box = await scratch({
    "scenario.yaml": [
      "responses:",
      "  - name: run",
      "    steps:",
      "      - { type: exec_command, callId: call-write, cmd: 'printf deputy > denied.txt' }",
      "  - name: after",
      "    match: { callOutput: call-write }",
      "    steps:",
      "      - { type: message, text: the write was refused }",
      ""
    ].join("\n"),
    "policy.yaml": "exec:\n  - { prefix: [printf], decision: denied }\n"
  })
}, 120_000)
afterAll(() => box.remove())

describe("deputy run on the real Codex against deputy mock-model", () => {
  it("mock-model binds 127.0.0.1 and writes CODEX_HOME; run --backend codex: the policy denies the write, exit 0", async () => {
    const home = join(box.dir, "codex-home")
    const mock = spawnDeputy(["mock-model", "scenario.yaml", "--codex-home", home], { cwd: box.dir, env: box.env })
    try {
      await waitFor(mock.child, mock.out, "Ctrl-C stops it")
      assert.match(mock.out(), /^mock model serving scenario\.yaml at http:\/\/127\.0\.0\.1:\d+\/v1$/m)
      assert.include(mock.out(), `point Codex at it: export CODEX_HOME=${home}`)
      assert.isTrue(existsSync(join(home, "config.toml")))

      const r = await deputy(["run", "--backend", "codex", "--policy", "policy.yaml", "--json", "write the file"], {
        cwd: box.dir,
        env: { ...box.env, CODEX_HOME: home, HOME: home }
      })
      assert.strictEqual(r.code, 0, r.stderr)
      const lines = r.stdout
        .trimEnd()
        .split("\n")
        .map((l) => JSON.parse(l) as { type: string; decision?: string; by?: string; command?: Array<string> })
      const approval = lines.find((l) => l.type === "approval")
      assert.include(approval, { decision: "denied", by: "policy" })
      assert.include(approval?.command?.join(" "), "printf deputy > denied.txt")
      assert.deepInclude(lines.at(-1) as object, { type: "turn_complete", lastAgentMessage: "the write was refused" })
      assert.isFalse(existsSync(join(box.dir, "denied.txt")))
    } finally {
      mock.child.kill("SIGINT")
    }
    const stopped = await mock.done
    assert.strictEqual(stopped.code, 0)
  }, 60_000)
})
