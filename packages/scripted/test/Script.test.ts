import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { loadScript, parseScript } from "../src/index.js"

const yaml = `
name: reviewer
turns:
  - steps:
      - type: message
        text: hello
        deltas: 2
      - type: exec
        command: [ls, -la]
  - repeat: 3
    steps:
      - { type: sleep, ms: 10 }
`

const issuesOf = (text: string, source: string) =>
  Effect.map(Effect.flip(parseScript(text, source)), (error) => {
    assert.strictEqual(error._tag, "InvalidInput")
    assert.strictEqual(error.source, source)
    return error.issues
  })

describe("Script", () => {
  it.effect("§24 parses a YAML script, filling the defaults", () =>
    Effect.gen(function* () {
      const script = yield* parseScript(yaml, "review.yaml")
      assert.deepStrictEqual(script, {
        name: "reviewer",
        turns: [
          {
            repeat: 1,
            steps: [
              { type: "message", text: "hello", deltas: 2 },
              { type: "exec", command: ["ls", "-la"], needsApproval: true }
            ]
          },
          { repeat: 3, steps: [{ type: "sleep", ms: 10 }] }
        ]
      })
    })
  )

  it.effect("§24 parses a JSON script by its extension", () =>
    Effect.gen(function* () {
      const script = yield* parseScript(
        JSON.stringify({ turns: [{ steps: [{ type: "fail", message: "x" }] }] }),
        "s.json"
      )
      assert.deepStrictEqual(script.turns[0]?.steps, [{ type: "fail", message: "x", fatal: false }])
    })
  )

  it.effect("§24 a YAML syntax error is InvalidInput naming the line, never a defect", () =>
    Effect.gen(function* () {
      const issues = yield* issuesOf("turns:\n  - steps: [\n    oops: {", "bad.yml")
      assert.strictEqual(issues.length, 1)
      assert.match(issues[0]!, /^\(syntax\) line \d+, column \d+: /)
    })
  )

  it.effect("§24 a JSON syntax error is InvalidInput", () =>
    Effect.gen(function* () {
      const issues = yield* issuesOf('{"turns": [', "bad.json")
      assert.match(issues[0]!, /^\(syntax\) /)
    })
  )

  it.effect("§24 a wrong field type is InvalidInput naming the field path", () =>
    Effect.gen(function* () {
      const text =
        "turns:\n  - steps:\n      - {type: message, text: a}\n      - {type: message, text: b}\n      - {type: sleep, ms: 'soon'}\n"
      const issues = yield* issuesOf(text, "s.yaml")
      assert.deepStrictEqual(issues, ["turns.0.steps.2.ms: Invalid input: expected number, received string"])
      const tooLong = yield* issuesOf("turns: [{steps: [{type: sleep, ms: 600001}]}]", "s.yaml")
      assert.match(tooLong[0]!, /^turns\.0\.steps\.0\.ms: Too big/)
    })
  )

  it.effect("§24 an unknown step type and a misspelt field are InvalidInput naming the field", () =>
    Effect.gen(function* () {
      const unknown = yield* issuesOf("turns: [{steps: [{type: message, text: a}, {type: teleport}]}]", "s.yaml")
      assert.strictEqual(unknown.length, 1)
      assert.match(unknown[0]!, /^turns\.0\.steps\.1\.type: /)
      const misspelt = yield* issuesOf("turns: [{steps: [{type: message, text: a, delta: 3}]}]", "s.yaml")
      assert.match(misspelt[0]!, /^turns\.0\.steps\.0: Unrecognized key: "delta"/)
      const empty = yield* issuesOf("turns: [{steps: [{type: exec, command: []}]}]", "s.yaml")
      assert.match(empty[0]!, /^turns\.0\.steps\.0\.command: /)
    })
  )

  it.scoped("§24 loadScript reads a file, by its extension", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* fs.makeTempDirectoryScoped()
      writeFileSync(join(dir, "s.yml"), yaml)
      writeFileSync(join(dir, "bad.json"), '{"turns": 3}')
      assert.strictEqual((yield* loadScript(join(dir, "s.yml"))).name, "reviewer")
      const error = yield* Effect.flip(loadScript(join(dir, "bad.json")))
      assert.strictEqual(error._tag, "InvalidInput")
      assert.deepStrictEqual(error._tag === "InvalidInput" ? error.issues : [], [
        "turns: Invalid input: expected array, received number"
      ])
      assert.strictEqual((yield* Effect.flip(loadScript(join(dir, "missing.yaml"))))._tag, "SystemError")
    }).pipe(Effect.provide(NodeContext.layer))
  )
})

describe("Script, spawn steps", () => {
  const nested = `
turns:
  - steps:
      - type: spawn
        agents:
          - name: lint
            input: check it
            script:
              turns:
                - steps:
                    - type: spawn
                      agents: [{ input: deeper, script: { turns: [{ steps: [{ type: message, text: leaf }] }] } }]
          - input: "{{answer.x}}"
            script: { name: helper, turns: [] }
`

  it.effect("§24 a nested spawn script parses, children's scripts with their defaults", () =>
    Effect.gen(function* () {
      const script = yield* parseScript(nested, "tree.yaml")
      const step = script.turns[0]?.steps[0]
      assert.strictEqual(step?.type, "spawn")
      if (step?.type !== "spawn") return
      assert.strictEqual(step.agents.length, 2)
      assert.strictEqual(step.agents[0]?.name, "lint")
      const inner = step.agents[0]?.script.turns[0]?.steps[0]
      assert.deepStrictEqual(inner, {
        type: "spawn",
        agents: [{ input: "deeper", script: { turns: [{ repeat: 1, steps: [{ type: "message", text: "leaf" }] }] } }]
      })
      assert.deepStrictEqual(step.agents[1], { input: "{{answer.x}}", script: { name: "helper", turns: [] } })
    })
  )

  it.effect("§24 a bad field deep in a nested script is InvalidInput naming its full path", () =>
    Effect.gen(function* () {
      const text = JSON.stringify({
        turns: [
          {
            steps: [
              { type: "spawn", agents: [{ input: "go", script: { turns: [{ steps: [{ type: "sleep", ms: -1 }] }] } }] }
            ]
          }
        ]
      })
      const issues = yield* issuesOf(text, "s.json")
      assert.strictEqual(issues.length, 1)
      assert.match(issues[0]!, /^turns\.0\.steps\.0\.agents\.0\.script\.turns\.0\.steps\.0\.ms: Too small/)
      const none = yield* issuesOf(JSON.stringify({ turns: [{ steps: [{ type: "spawn", agents: [] }] }] }), "s.json")
      assert.match(none[0]!, /^turns\.0\.steps\.0\.agents: Too small/)
      const misspelt = yield* issuesOf(
        JSON.stringify({
          turns: [{ steps: [{ type: "spawn", agents: [{ input: "", script: { turns: [] }, nme: "a" }] }] }]
        }),
        "s.json"
      )
      assert.match(misspelt[0]!, /^turns\.0\.steps\.0\.agents\.0: Unrecognized key: "nme"/)
    })
  )
})
