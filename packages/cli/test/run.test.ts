/**
 * `deputy run`, run as a user runs it: the built bin in a child process. Every exit code, --json
 * checked line by line against the protocol's JSON Schemas (ajv, draft 2020-12), one-line errors,
 * and Ctrl-C (SIGINT) during a turn: the thread is cancelled and its command's process is gone.
 */
import { existsSync } from "node:fs"
import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { Ajv2020 } from "ajv/dist/2020.js"
import { afterAll, assert, beforeAll, describe, it } from "vitest"
import { build, deputy, processesWith, repoRoot, scratch, spawnDeputy, waitFor } from "./support.js"

const script = (steps: string) => `turns:\n  - steps:\n${steps}`

let box: Awaited<ReturnType<typeof scratch>>
beforeAll(async () => {
  await build()
  box = await scratch({
    "review.yaml": script(
      [
        "      - { type: exec, command: [echo, hello] }",
        "      - { type: exec, command: [touch, curl-ran] }",
        "      - { type: message, text: LGTM }"
      ].join("\n") + "\n"
    ),
    "policy.yaml": "exec:\n  - prefix: [echo]\n    decision: approved\n",
    "bad-policy.yaml": "exec:\n  - prefix: [echo]\n    decision: approved\n  - prefix: [curl]\n    decision: denyy\n",
    "bad-script.yaml": script("      - { type: exek, command: [echo] }\n"),
    "fails.yaml": script("      - { type: fail, message: the build is broken }\n"),
    "slow.yaml": script("      - { type: sleep, ms: 60000 }\n"),
    "long-command.yaml": script("      - { type: exec, command: [sleep, '31.4159'] }\n"),
    "sleep-policy.yaml": "exec:\n  - prefix: [sleep]\n    decision: approved\n"
  })
}, 120_000)
afterAll(() => box.remove())

const run = (args: ReadonlyArray<string>) => deputy(["run", ...args], { cwd: box.dir, env: box.env })

/** One line on stderr, starting `deputy: `. */
const oneErrorLine = (stderr: string) => {
  const lines = stderr.trimEnd().split("\n")
  assert.lengthOf(lines, 1, stderr)
  assert.match(lines[0] ?? "", /^deputy: /)
  return lines[0] ?? ""
}

describe("deputy run: exit codes", () => {
  it("0: the turn completed; echo approved by the policy, touch denied by its default and never run", async () => {
    const r = await run(["--script", "review.yaml", "--policy", "policy.yaml", "review"])
    assert.strictEqual(r.code, 0, r.stderr)
    assert.strictEqual(r.stdout, "LGTM\n")
    assert.include(r.stderr, "$ echo hello: approved by policy")
    assert.include(r.stderr, "$ touch curl-ran: denied by the policy's default")
    assert.isFalse(existsSync(join(box.dir, "curl-ran")))
  })

  it("1: the turn failed (an error during the turn), named on one line", async () => {
    const r = await run(["--script", "fails.yaml", "go"])
    assert.strictEqual(r.code, 1)
    assert.include(r.stderr.trimEnd().split("\n").at(-1), "deputy: the turn failed: the build is broken")
  })

  it("2: a bad policy file: one line naming the file, the line and the field", async () => {
    const r = await run(["--script", "review.yaml", "--policy", "bad-policy.yaml", "go"])
    assert.strictEqual(r.code, 2)
    const line = oneErrorLine(r.stderr)
    assert.include(line, "bad-policy.yaml:5: field exec.1.decision")
    assert.include(line, '"denyy"')
  })

  it("2: a bad script: one line naming the file, the line and the field", async () => {
    const r = await run(["--script", "bad-script.yaml", "go"])
    assert.strictEqual(r.code, 2)
    const line = oneErrorLine(r.stderr)
    assert.match(line, /bad-script\.yaml:3: field turns\.0\.steps\.0\.type: .*exek/)
  })

  it("2: an unknown backend, a missing script, no script, no prompt", async () => {
    const [unknown, missing, none, empty, badTimeout] = await Promise.all([
      run(["--backend", "gpt", "go"]),
      run(["--script", "nope.yaml", "go"]),
      run(["go"]),
      run(["--script", "review.yaml"]),
      run(["--script", "review.yaml", "--timeout", "soon", "go"])
    ])
    assert.strictEqual(unknown.code, 2)
    assert.include(oneErrorLine(unknown.stderr), "scripted, codex, codex-exec")
    assert.strictEqual(missing.code, 2)
    assert.strictEqual(oneErrorLine(missing.stderr), "deputy: --script nope.yaml: no such file")
    assert.strictEqual(none.code, 2)
    assert.include(oneErrorLine(none.stderr), "--backend scripted needs --script FILE")
    assert.strictEqual(empty.code, 2)
    assert.include(oneErrorLine(empty.stderr), "the prompt on stdin is empty")
    assert.strictEqual(badTimeout.code, 2)
    assert.include(oneErrorLine(badTimeout.stderr), '--timeout "soon"')
  })

  it("124: the timeout cancelled the turn", async () => {
    const r = await run(["--script", "slow.yaml", "--timeout", "300ms", "go"])
    assert.strictEqual(r.code, 124)
    assert.include(r.stderr, "deputy: timed out after 300ms")
  })

  it("130: SIGINT during a turn cancels it; its command's process is gone", async () => {
    const p = spawnDeputy(["run", "--script", "long-command.yaml", "--policy", "sleep-policy.yaml", "--json", "go"], {
      cwd: box.dir,
      env: box.env,
      input: ""
    })
    await waitFor(p.child, p.out, '"type":"exec_command_begin"')
    // exec_command_begin is sent as the command is spawned: wait for its process to show in /proc.
    let sleeper: number | undefined
    for (let i = 0; i < 500 && sleeper === undefined; i++) {
      ;[sleeper] = await processesWith("31.4159")
      if (sleeper === undefined) await new Promise((resolve) => setImmediate(resolve))
    }
    assert.isDefined(sleeper, "the scripted command runs")
    p.child.kill("SIGINT")
    const r = await p.done
    assert.strictEqual(r.code, 130, r.stderr)
    assert.include(r.stderr, "deputy: cancelled")
    assert.isFalse(existsSync(`/proc/${sleeper}`), "the command's process was killed")
    assert.deepStrictEqual(await processesWith("31.4159"), [])
  })
})

describe("deputy run --json", () => {
  it("every line is an EventMsg or an approval line, each valid against the protocol's JSON Schemas", async () => {
    const ajv = new Ajv2020({ strict: false })
    for (const name of ["EventMsg", "ReviewDecision"]) {
      ajv.addSchema(JSON.parse(await readFile(join(repoRoot, `packages/protocol/schema/${name}.schema.json`), "utf8")))
    }
    const approvalLine = ajv.compile({
      type: "object",
      required: ["type", "requestId", "threadId", "kind", "path", "decision", "by"],
      properties: {
        type: { const: "approval" },
        requestId: { type: "string" },
        threadId: { type: "string" },
        kind: { enum: ["exec", "patch", "user_input"] },
        command: { type: "array", items: { type: "string" } },
        cwd: { type: "string" },
        path: { type: "array", items: { type: "string" } },
        decision: { $ref: "urn:deputy:schema:ReviewDecision" },
        by: { enum: ["policy", "person", "callback", "default", "withdrawn"] }
      }
    })
    const eventMsg = ajv.getSchema("urn:deputy:schema:EventMsg")
    assert.isDefined(eventMsg)

    const r = await run(["--script", "review.yaml", "--policy", "policy.yaml", "--json", "review"])
    assert.strictEqual(r.code, 0, r.stderr)
    const lines = r.stdout.trimEnd().split("\n")
    const parsed = lines.map((line) => JSON.parse(line) as { type: string; by?: string; decision?: string })
    for (const [i, value] of parsed.entries()) {
      const validate = value.type === "approval" ? approvalLine : eventMsg!
      assert.isTrue(validate(value), `line ${i + 1} ${lines[i]}: ${ajv.errorsText(validate.errors)}`)
    }
    const approvals = parsed.filter((v) => v.type === "approval").map((v) => `${v.decision} by ${v.by}`)
    assert.deepStrictEqual(approvals, ["approved by policy", "denied by default"])
    assert.deepStrictEqual(
      parsed.filter((v) => v.type !== "approval").map((v) => v.type),
      ["turn_started", "exec_command_begin", "exec_command_end", "agent_message", "turn_complete"]
    )
  })
})

describe("deputy --help", () => {
  it("lists every command with an example (root help), and each command has its own help; on stdout, exit 0", async () => {
    const [root, run, show] = await Promise.all(
      [["--help"], ["run", "--help"], ["threads", "show", "--help"]].map((args) =>
        deputy(args, { cwd: box.dir, env: box.env })
      )
    )
    for (const r of [root, run, show]) assert.strictEqual(r?.code, 0, r?.stderr)
    const commands = [
      "run",
      "chat",
      "pipeline",
      "threads list",
      "threads show",
      "threads archive",
      "threads unarchive",
      "threads fork",
      "threads resume",
      "mock-model"
    ]
    const help = root?.stdout ?? ""
    for (const command of commands) {
      // Each command's line in the root help is followed by its description, whose last line is its example.
      const at = help.indexOf(`- ${command} `)
      assert.isAtLeast(at, 0, command)
      assert.match(help.slice(at), /^[^\n]*\nExample: deputy /, command)
    }
    assert.include(run?.stdout, "Example: deputy run ")
    assert.include(show?.stdout, "Example: deputy threads show ")
  })
})
