/**
 * `deputy pipeline`, the built bin in a child process: the example pipeline (planner → three workers
 * → reviewer; rm denied by the policy; worker-c cancelled by its timeout, its process gone, nothing
 * else cancelled), --json, a failed step cancelling exactly its dependents, bad files (one line, exit
 * 2), and the live view on a real terminal (tmux: what the screen shows mid-run and at the end).
 */
import { execFileSync } from "node:child_process"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "vitest"
import { build, deputy, processesWith, repoRoot, scratch, spawnDeputy, waitFor } from "./support.js"

const example = join(repoRoot, "examples/pipeline/pipeline.yaml")

let box: Awaited<ReturnType<typeof scratch>>
beforeAll(async () => {
  await build()
  box = await scratch({
    "ok.yaml": "turns:\n  - steps:\n      - { type: message, text: fine }\n",
    "boom.yaml": "turns:\n  - steps:\n      - { type: fail, message: boom }\n",
    "graph.yaml": [
      "steps:",
      "  a: { script: boom.yaml, prompt: go }",
      "  b: { script: ok.yaml, prompt: 'after {{steps.a.output}}', needs: [a] }",
      "  c: { script: ok.yaml, prompt: 'after b', needs: [b] }",
      "  d: { script: ok.yaml, prompt: independent }",
      ""
    ].join("\n"),
    "unknown-need.yaml":
      "steps:\n  a: { script: ok.yaml, prompt: go }\n  b:\n    script: ok.yaml\n    prompt: go\n    needs: [nope]\n",
    "cycle.yaml":
      "steps:\n  a: { script: ok.yaml, prompt: go, needs: [b] }\n  b: { script: ok.yaml, prompt: go, needs: [a] }\n",
    "bad-field.yaml": "concurrency: 2\nsteps:\n  a:\n    script: ok.yaml\n    prompt: go\n    timout: 3s\n",
    "bad-policy.yaml":
      "policy:\n  exec:\n    - { prefix: [echo], decision: yes }\nsteps:\n  a: { script: ok.yaml, prompt: go }\n",
    "missing-script.yaml": "steps:\n  a: { script: gone.yaml, prompt: go }\n",
    "bad-ref.yaml":
      "steps:\n  a: { script: ok.yaml, prompt: go }\n  b: { script: ok.yaml, prompt: 'x {{steps.a.output}}' }\n",
    "not-yaml.yaml": "steps: [a\n",
    "sleeper.yaml": "turns:\n  - steps:\n      - { type: exec, command: [sleep, '29.9792'] }\n",
    "slow.yaml": [
      "policy: { exec: [{ prefix: [sleep], decision: approved }] }",
      "steps:",
      "  slow: { script: sleeper.yaml, prompt: go }",
      "  after: { script: ok.yaml, prompt: go, needs: [slow] }",
      ""
    ].join("\n"),
    "build.yaml":
      "turns:\n  - steps:\n      - { type: exec, command: [touch, built] }\n      - { type: message, text: built }\n",
    "live.yaml": [
      "concurrency: 1",
      "steps:",
      "  plan: { script: ok.yaml, prompt: go }",
      "  build: { script: build.yaml, prompt: go, needs: [plan] }",
      "  ship: { script: ok.yaml, prompt: go, needs: [build] }",
      "  lint: { script: ok.yaml, prompt: go, needs: [build] }",
      ""
    ].join("\n")
  })
}, 120_000)
afterAll(() => box.remove())

const pipeline = (args: ReadonlyArray<string>) => deputy(["pipeline", ...args], { cwd: box.dir, env: box.env })

describe("deputy pipeline: the example", () => {
  it("plain lines: rm denied by the policy, optional worker-c timed out (its sleep gone), the reviewer ran, exit 0", async () => {
    const r = await pipeline([example])
    assert.strictEqual(r.code, 0, r.stderr)
    const lines = r.stdout.trimEnd().split("\n")
    assert.include(lines, "worker-b: $ rm -rf build: denied by policy")
    assert.include(lines, "worker-a: $ echo building the docs: approved by policy")
    assert.include(lines, "worker-c: timed out after 1s")
    assert.isTrue(lines.some((l) => /^reviewer: done in [\d.]+s: LGTM/.test(l)))
    assert.strictEqual(lines.at(-1), "4 of 5 steps succeeded; worker-c timed out after 1s (optional)")
    assert.strictEqual(r.stderr, "")
    assert.deepStrictEqual(await processesWith("30", box.dir), [], "worker-c's sleep 30 was killed")
  })

  it("--json: step lines with the filled-in prompts, events and approvals by step, a summary", async () => {
    const r = await pipeline(["--json", example])
    assert.strictEqual(r.code, 0)
    const lines = r.stdout
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    const running = lines.find((l) => l.type === "step" && l.step === "worker-a" && l.state === "running")
    assert.strictEqual(
      running?.prompt,
      "Do part 1 of this plan: 1) build the docs 2) clean the build folder 3) run the slow benchmarks"
    )
    const denied = lines.find((l) => l.type === "approval" && l.step === "worker-b")
    assert.include(denied, { decision: "denied", by: "policy" })
    assert.isTrue(lines.some((l) => l.type === "turn_complete" && l.step === "reviewer"))
    assert.deepStrictEqual(lines.at(-1), {
      type: "pipeline",
      ok: true,
      steps: { planner: "done", "worker-a": "done", "worker-b": "done", "worker-c": "timed_out", reviewer: "done" }
    })
  })
})

describe("deputy pipeline: Ctrl-C", () => {
  it("SIGINT cancels the running steps and the ones not started; their commands are gone; exit 130", async () => {
    const p = spawnDeputy(["pipeline", "slow.yaml"], { cwd: box.dir, env: box.env, input: "" })
    await waitFor(p.child, p.out, "slow: $ sleep 29.9792: approved by policy")
    let sleeper: number | undefined
    for (let i = 0; i < 500 && sleeper === undefined; i++) {
      ;[sleeper] = await processesWith("29.9792")
      if (sleeper === undefined) await new Promise((resolve) => setImmediate(resolve))
    }
    assert.isDefined(sleeper)
    p.child.kill("SIGINT")
    const r = await p.done
    assert.strictEqual(r.code, 130, r.stderr)
    const lines = r.stdout.trimEnd().split("\n")
    assert.include(lines, "slow: cancelled (Ctrl-C)")
    assert.include(lines, "after: cancelled: slow did not succeed")
    assert.include(r.stderr, "deputy: cancelled: every running step was shut down")
    assert.deepStrictEqual(await processesWith("29.9792"), [])
  })
})

describe("deputy pipeline: failures", () => {
  it("a failed step cancels the steps that need it (transitively) and nothing else", async () => {
    const r = await pipeline(["graph.yaml"])
    assert.strictEqual(r.code, 1)
    const lines = r.stdout.trimEnd().split("\n")
    assert.include(lines, "a: failed: the turn failed: boom")
    assert.include(lines, "b: cancelled: a did not succeed")
    assert.include(lines, "c: cancelled: b did not succeed")
    assert.isTrue(lines.some((l) => l.startsWith("d: done")))
    assert.notInclude(r.stdout, "b: started")
  })

  const bad: ReadonlyArray<readonly [string, RegExp]> = [
    ["unknown-need.yaml", /^deputy: unknown-need\.yaml:6: field steps\.b\.needs: no step is named "nope"$/],
    ["cycle.yaml", /^deputy: cycle\.yaml:2: field steps\.a\.needs: a cycle: a → b → a$/],
    ["bad-field.yaml", /^deputy: bad-field\.yaml:6: field steps\.a\.timout: .*"timout"/],
    ["bad-policy.yaml", /^deputy: bad-policy\.yaml:3: field policy\.exec\.0\.decision: .*\(got "yes"\)$/],
    ["missing-script.yaml", /^deputy: missing-script\.yaml:2: field steps\.a\.script: .*gone\.yaml: no such file$/],
    ["bad-ref.yaml", /^deputy: bad-ref\.yaml:3: field steps\.b\.prompt: .*not in needs/],
    ["not-yaml.yaml", /^deputy: not-yaml\.yaml:\d+:\d+: /],
    ["absent.yaml", /^deputy: pipeline file absent\.yaml: no such file$/]
  ]
  for (const [file, expected] of bad) {
    it.concurrent(`${file}: one error line naming the file, line and field; exit 2`, async () => {
      const r = await pipeline([file])
      assert.strictEqual(r.code, 2, r.stderr)
      assert.strictEqual(r.stdout, "")
      const lines = r.stderr.trimEnd().split("\n")
      assert.lengthOf(lines, 1, r.stderr)
      assert.match(lines[0] ?? "", expected)
    })
  }
})

describe("deputy pipeline: the live view on a terminal (tmux)", () => {
  const socket = `deputy-cli-test-${process.pid}`
  const tmux = (...args: Array<string>) => execFileSync("tmux", ["-L", socket, ...args], { encoding: "utf8" })
  afterAll(() => {
    try {
      tmux("kill-server")
    } catch {
      // already gone
    }
  })

  it("mid-run: one line per step with its state and the approval it waits for; `y` typed; at the end: the steps and the summary", async () => {
    const command = `cd ${box.dir} && DEPUTY_HOME=${box.env.DEPUTY_HOME} ${process.execPath} ${join(repoRoot, "packages/cli/bin/deputy.cjs")} pipeline live.yaml; echo EXIT=$?; sleep 60`
    tmux("new-session", "-d", "-x", "100", "-y", "30", command)
    const screen = () => tmux("capture-pane", "-p").trimEnd()
    const until = async (ok: (text: string) => boolean) => {
      for (let i = 0; i < 400; i++) {
        const text = screen()
        if (ok(text)) return text
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      throw new Error(`the screen never showed what was expected:\n${screen()}`)
    }
    const mid = await until((t) => t.includes("Allow?"))
    const midLines = mid.split("\n").filter((l) => l.trim() !== "")
    assert.lengthOf(midLines, 5, mid)
    assert.match(midLines[0] ?? "", /^✓ plan\s+[\d.]+s\s+done$/)
    assert.match(midLines[1] ?? "", /^\S build\s+[\d.]+s\s+waiting for approval: touch built$/)
    assert.match(midLines[2] ?? "", /^· ship\s+waiting$/)
    assert.match(midLines[3] ?? "", /^· lint\s+waiting$/)
    assert.match(midLines[4] ?? "", /^sub-agent build asks to run `touch built` in .*Allow\?/)
    tmux("send-keys", "y", "Enter")

    const end = await until((t) => t.includes("EXIT="))
    const endLines = end.split("\n").filter((l) => l.trim() !== "")
    assert.deepStrictEqual(
      endLines.map((l) => l.replace(/\s+[\d.]+s\s+/, " ")),
      ["✓ plan done", "✓ build done", "✓ ship done", "✓ lint done", "4 of 4 steps succeeded", "EXIT=0"]
    )
    assert.isTrue(existsSync(join(box.dir, "built")), "approved as typed")
  })
})
