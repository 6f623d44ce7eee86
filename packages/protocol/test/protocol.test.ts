import { readdirSync, readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { canonicalUuid, Event, jsonSchemas, jsonSchemaText, Op, Submission, ThreadId, TurnId } from "../src/index.js"

const schemaDir = fileURLToPath(new URL("../schema/", import.meta.url))

describe("ids", () => {
  it("§11 canonicalises case and hyphen variants to one lower-case hyphenated form", () => {
    const canonical = "0f8e2c4a-1b2c-4d5e-8f90-a1b2c3d4e5f6"
    for (const spelling of [canonical, canonical.toUpperCase(), canonical.replaceAll("-", ""), `{${canonical}}`]) {
      expect(ThreadId.parse(spelling)).toBe(canonical)
      expect(TurnId.parse(spelling)).toBe(canonical)
    }
  })

  it("§11 rejects what is not a UUID, naming the id", () => {
    for (const bad of ["", "thread-1", "0f8e2c4a-1b2c-4d5e-8f90-a1b2c3d4e5f", "0f8e2c4a1b2c-4d5e-8f90-a1b2c3d4e5f6"]) {
      const result = ThreadId.safeParse(bad)
      expect(result.success).toBe(false)
      expect(result.error?.issues[0]?.message).toBe("thread id must be a UUID")
      expect(canonicalUuid(bad)).toBeUndefined()
    }
  })
})

describe("wire format", () => {
  it("round-trips every op through JSON", () => {
    const ops: Array<Op> = [
      { type: "user_input", items: [{ type: "text", text: "hi" }] },
      { type: "exec_approval", id: "call-1", turnId: "t", decision: "approved_for_session" },
      { type: "patch_approval", id: "call-2", decision: "denied" },
      { type: "user_input_answer", id: "evt", response: { answers: { q: { answers: ["yes"] } } } },
      { type: "interrupt" },
      { type: "shutdown" }
    ]
    for (const op of ops) expect(Submission.parse(JSON.parse(JSON.stringify({ id: "s", op })))).toEqual({ id: "s", op })
  })

  it("rejects an unknown op type and an unknown decision with the field named", () => {
    const unknown = Op.safeParse({ type: "reboot" })
    expect(unknown.success).toBe(false)
    expect(unknown.error?.issues[0]?.path).toEqual(["type"])
    const decision = Op.safeParse({ type: "patch_approval", id: "c", decision: "sure" })
    expect(decision.error?.issues[0]?.path).toEqual(["decision"])
  })

  it("parses an event and refuses one whose message lacks a required field", () => {
    expect(Event.parse({ id: "t", msg: { type: "turn_aborted", reason: "interrupted" } }).msg.type).toBe("turn_aborted")
    const bad = Event.safeParse({ id: "t", msg: { type: "exec_command_end", callId: "c", turnId: "t" } })
    expect(bad.success).toBe(false)
    expect(bad.error?.issues.map((i) => i.path.join("."))).toContain("msg.exitCode")
  })
})

describe("JSON Schema files", () => {
  it("are exactly what the zod schemas generate (run `pnpm schemas` when this fails)", () => {
    const expected = jsonSchemas()
    const onDisk = readdirSync(schemaDir).filter((f) => f.endsWith(".schema.json"))
    expect(onDisk.sort()).toEqual(Object.keys(expected).sort())
    for (const [file, schema] of Object.entries(expected)) {
      expect(readFileSync(`${schemaDir}${file}`, "utf8"), file).toBe(jsonSchemaText(schema))
    }
  })
})
