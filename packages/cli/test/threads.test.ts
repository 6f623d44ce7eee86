/**
 * `deputy threads …` and `deputy run --thread`, the built bin over one DEPUTY_HOME: a run's thread is
 * listed, shown as a transcript (who asked, who decided, how it ended) or as raw rollout lines valid
 * against the protocol's RolloutLine schema, archived and back, forked, resumed.
 */
import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { Ajv2020 } from "ajv/dist/2020.js"
import { afterAll, assert, beforeAll, describe, it } from "vitest"
import { build, deputy, repoRoot, scratch } from "./support.js"

let box: Awaited<ReturnType<typeof scratch>>
let threadId = ""
const FRESH = "0b7c3f2e-1d4a-4c5b-9e8f-123456789abc"

beforeAll(async () => {
  await build()
  box = await scratch({
    "two-turns.yaml": [
      "turns:",
      "  - steps:",
      "      - { type: exec, command: [echo, one] }",
      "      - { type: exec, command: [touch, nope] }",
      "      - { type: message, text: first turn done }",
      "  - steps:",
      "      - { type: message, text: second turn done }",
      ""
    ].join("\n"),
    "policy.yaml": "exec:\n  - prefix: [echo]\n    decision: approved\n"
  })
  const r = await cli(["run", "--script", "two-turns.yaml", "--policy", "policy.yaml", "--json", "review it"])
  assert.strictEqual(r.code, 0, r.stderr)
  threadId = (JSON.parse(r.stdout.split("\n")[1] ?? "{}") as { threadId: string }).threadId
}, 120_000)
afterAll(() => box.remove())

const cli = (args: ReadonlyArray<string>) => deputy(args, { cwd: box.dir, env: box.env })

describe("deputy threads", () => {
  it("list shows the thread; show prints who asked what, who decided, how it ended", async () => {
    const list = await cli(["threads", "list"])
    assert.strictEqual(list.code, 0)
    assert.match(list.stdout, new RegExp(`^${threadId}  \\S+  scripted  ${box.dir}`, "m"))
    const show = await cli(["threads", "show", threadId])
    assert.strictEqual(show.code, 0, show.stderr)
    const lines = show.stdout.trimEnd().split("\n")
    assert.match(lines[0] ?? "", new RegExp(`^thread ${threadId}: scripted, top-level, in `))
    const says = lines.slice(1).map((l) => l.replace(/^\S+ {2}/, ""))
    assert.includeMembers(says, [
      "caller asked: review it",
      `agent asked to run: echo one (in ${box.dir})`,
      "parent decided: approved",
      `agent asked to run: touch nope (in ${box.dir})`,
      "parent decided: denied",
      "agent said: first turn done",
      "turn completed"
    ])
    assert.strictEqual(lines.at(-1), "state: shutdown")
  })

  it("show --json prints the raw rollout lines, each valid against RolloutLine.schema.json", async () => {
    const ajv = new Ajv2020({ strict: false })
    const validate = ajv.compile(
      JSON.parse(await readFile(join(repoRoot, "packages/protocol/schema/RolloutLine.schema.json"), "utf8"))
    )
    const show = await cli(["threads", "show", "--json", threadId])
    assert.strictEqual(show.code, 0)
    const lines = show.stdout.trimEnd().split("\n")
    assert.isAtLeast(lines.length, 8)
    for (const line of lines) assert.isTrue(validate(JSON.parse(line)), `${line}: ${ajv.errorsText(validate.errors)}`)
  })

  it("archive hides it from list, unarchive brings it back", async () => {
    const archived = await cli(["threads", "archive", threadId])
    assert.strictEqual(archived.code, 0, archived.stderr)
    assert.include(archived.stdout, "archived_sessions")
    assert.notInclude((await cli(["threads", "list"])).stdout, threadId)
    const back = await cli(["threads", "unarchive", threadId])
    assert.strictEqual(back.code, 0, back.stderr)
    assert.include((await cli(["threads", "list"])).stdout, threadId)
  })

  it("fork prints a new thread whose transcript says where it came from", async () => {
    const fork = await cli(["threads", "fork", threadId, "--script", "two-turns.yaml"])
    assert.strictEqual(fork.code, 0, fork.stderr)
    const forked = fork.stdout.trim()
    assert.match(forked, /^[0-9a-f-]{36}$/)
    assert.notStrictEqual(forked, threadId)
    const show = await cli(["threads", "show", forked])
    assert.include(show.stdout, `forked from ${threadId}`)
    assert.include(show.stdout, "caller asked: review it")
  })

  it("resume runs the next turn; a missing or malformed id is one line, exit 2", async () => {
    const resumed = await cli(["threads", "resume", threadId, "--script", "two-turns.yaml", "go on"])
    assert.strictEqual(resumed.code, 0, resumed.stderr)
    assert.strictEqual(resumed.stdout, "second turn done\n")
    assert.include(resumed.stderr, `deputy: resumed thread ${threadId} from its rollout`)
    const missing = await cli(["threads", "resume", FRESH, "--script", "two-turns.yaml", "go on"])
    assert.strictEqual(missing.code, 2)
    assert.strictEqual(
      missing.stderr,
      `deputy: thread ${FRESH} has no rollout to resume: check the id (deputy threads list) and DEPUTY_HOME\n`
    )
    const bad = await cli(["threads", "show", "not-a-uuid"])
    assert.strictEqual(bad.code, 2)
    assert.lengthOf(bad.stderr.trimEnd().split("\n"), 1)
  })

  it("run --thread: resumes when the rollout exists, else starts that id fresh, and says which", async () => {
    const again = await cli(["run", "--script", "two-turns.yaml", "--thread", FRESH, "hello"])
    assert.strictEqual(again.code, 0, again.stderr)
    assert.include(again.stderr, `deputy: no rollout of thread ${FRESH} to resume: started it fresh`)
    assert.strictEqual(again.stdout, "first turn done\n")
    const resumed = await cli(["run", "--script", "two-turns.yaml", "--thread", FRESH, "more"])
    assert.strictEqual(resumed.code, 0, resumed.stderr)
    assert.include(resumed.stderr, `deputy: resumed thread ${FRESH} from its rollout`)
    assert.strictEqual(resumed.stdout, "second turn done\n")
  })
})
