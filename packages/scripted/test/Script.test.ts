import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { loadScript, parseScript, Scripted } from "../src/index.js"
import { parseScriptBytes, validateScript } from "../src/Script.js"

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
      assert.deepStrictEqual(issues, ['turns.0.steps.2.ms: expected number, got "soon"'])
      const tooLong = yield* issuesOf("turns: [{steps: [{type: sleep, ms: 600001}]}]", "s.yaml")
      assert.deepStrictEqual(tooLong, ["turns.0.steps.0.ms: 600001 is too big: at most 600000"])
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
      assert.deepStrictEqual(error._tag === "InvalidInput" ? error.issues : [], ["turns: expected array, got 3"])
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
      assert.match(
        issues[0]!,
        /^turns\.0\.steps\.0\.agents\.0\.script\.turns\.0\.steps\.0\.ms: -1 is too small: at least 0$/
      )
      const none = yield* issuesOf(JSON.stringify({ turns: [{ steps: [{ type: "spawn", agents: [] }] }] }), "s.json")
      assert.deepStrictEqual(none, ["turns.0.steps.0.agents: 0 items is too few: at least 1"])
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

/** `depth` spawn steps, each nesting the next script; the innermost says "leaf". */
const nestedSpawns = (depth: number): unknown => {
  let script: unknown = { turns: [{ steps: [{ type: "message", text: "leaf" }] }] }
  for (let i = 0; i < depth; i++) {
    script = { turns: [{ steps: [{ type: "spawn", agents: [{ script, input: "go" }] }] }] }
  }
  return script
}

const aliasBomb = [
  'a: &a ["x","x","x","x","x","x","x","x","x"]',
  "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]",
  "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]",
  "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]",
  "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]",
  "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]",
  "turns: [*f,*f,*f,*f,*f,*f,*f,*f,*f]"
].join("\n")

describe("Script, §36 bounded input", () => {
  // Each hostile input, as a user could hand it over, and what the one issue must say.
  const corpus: ReadonlyArray<readonly [string, string, string, RegExp]> = [
    ["a YAML alias bomb", aliasBomb, "bomb.yaml", /^\(syntax\) Excessive alias count .*at most 100 aliases/],
    [
      "100,000 nested YAML flow sequences",
      `turns: ${"[".repeat(100_000)}${"]".repeat(100_000)}`,
      "deep.yaml",
      /nested/
    ],
    [
      "100,000 nested JSON arrays",
      `{"turns":${"[".repeat(100_000)}${"]".repeat(100_000)}}`,
      "deep.json",
      /nested deeper than 200 levels$/
    ],
    ["spawn nested 300 levels", JSON.stringify(nestedSpawns(300)), "spawn.json", /nested deeper than 200 levels$/],
    [
      "spawn nested 17 levels",
      JSON.stringify(nestedSpawns(17)),
      "spawn.json",
      /: spawn steps nested deeper than 16 levels$/
    ],
    [
      "repeat: 1e12",
      "turns: [{repeat: 1000000000000, steps: []}]",
      "s.yaml",
      /^turns\.0\.repeat: 1000000000000 is too big: at most 10000$/
    ],
    [
      "deltas: 1e9",
      "turns: [{steps: [{type: message, text: a, deltas: 1000000000}]}]",
      "s.yaml",
      /^turns\.0\.steps\.0\.deltas: 1000000000 is too big: at most 10000$/
    ],
    [
      "an unknown step type",
      "turns: [{steps: [{type: message, text: a}, {type: message, text: b}, {type: exek}]}]",
      "s.yaml",
      /^turns\.0\.steps\.2\.type: "exek" is not one of message, reasoning, exec, patch, ask, sleep, fail, token_count, spawn$/
    ]
  ]
  for (const [name, text, source, expected] of corpus) {
    it.effect(`${name} is InvalidInput naming the bound, never a defect`, () =>
      Effect.gen(function* () {
        const issues = yield* issuesOf(text, source)
        assert.strictEqual(issues.length, 1)
        assert.match(issues[0]!, expected)
      })
    )
  }

  it.effect("spawn nested 16 levels is still a script", () =>
    Effect.map(parseScript(JSON.stringify(nestedSpawns(16)), "spawn.json"), (script) =>
      assert.strictEqual(script.turns.length, 1)
    )
  )

  it.effect("bytes that are not UTF-8 are InvalidInput naming the byte offset, never a mangled script", () =>
    Effect.gen(function* () {
      const encode = (text: string) => new TextEncoder().encode(text)
      const bytes = new Uint8Array([
        ...encode("turns: [{steps: [{type: message, text: 'caf"),
        0xc3,
        0x28,
        ...encode("'}]}]")
      ])
      const error = yield* Effect.flip(parseScriptBytes(bytes, "s.yaml"))
      assert.deepStrictEqual(error.issues, ["(encoding) byte 43: not valid UTF-8 (0xc3)"])
      const cut = yield* Effect.flip(
        parseScriptBytes(new Uint8Array([...encode("turns: []\n#"), 0xe2, 0x82]), "s.yaml")
      )
      assert.deepStrictEqual(cut.issues, ["(encoding) byte 11: not valid UTF-8 (0xe2)"])
      const stray = yield* Effect.flip(parseScriptBytes(new Uint8Array([...encode("turns: []#"), 0x80]), "s.yaml"))
      assert.deepStrictEqual(stray.issues, ["(encoding) byte 10: not valid UTF-8 (0x80)"])
      const fine = yield* parseScriptBytes(encode("turns: [{steps: [{type: message, text: 'café €'}]}]"), "s.yaml")
      assert.deepStrictEqual(fine.turns[0]?.steps[0], { type: "message", text: "café €" })
    })
  )

  it.effect("a script given as an object is validated as strictly as a file", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(validateScript({ turns: [{ steps: [{ type: "message", text: 5 }] }] }, "script"))
      assert.deepStrictEqual(error.issues, ["turns.0.steps.0.text: expected string, got 5"])
    })
  )

  it.scoped("Scripted.spawn of a script object with a wrong field type fails with InvalidInput (it used to hang)", () =>
    Effect.gen(function* () {
      const bad = { turns: [{ steps: [{ type: "message", text: ["not", "a", "string"] }] }] }
      const error = yield* Effect.flip(Scripted.spawn(bad as never, { cwd: "/work" }))
      assert.strictEqual(error._tag, "InvalidInput")
      assert.deepStrictEqual(error.issues, ["turns.0.steps.0.text: expected string, got an array"])
      const viaBackend = yield* Effect.flip(Scripted.backend(bad as never).spawn({}))
      assert.strictEqual(viaBackend._tag, "SpawnFailed")
      assert.include(viaBackend.message, "turns.0.steps.0.text: expected string, got an array")
    }).pipe(Effect.provide(NodeContext.layer))
  )
})
