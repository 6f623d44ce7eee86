// Properties that must hold for any input, checked with fast-check (through effect's FastCheck).
import { canonicalUuid, type RolloutItem, ThreadId } from "@deputy/protocol"
import { beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import { truncateBeforeNthUserMessage, turnState } from "../src/ForkSnapshot.js"
import { judgeExec, policy } from "../src/Policy.js"
import { type ShellParser, shellParser } from "../src/ShellScript.js"

let shell: ShellParser
beforeAll(async () => {
  shell = await Effect.runPromise(shellParser)
})

const at = "2026-11-22T00:00:00.000Z"
const input = (id: string): RolloutItem => ({
  type: "submission",
  at,
  submission: { id, op: { type: "user_input", items: [{ type: "text", text: id }] } }
})
const event = (id: string, type: "turn_started" | "agent_message" | "turn_complete" | "turn_aborted"): RolloutItem => ({
  type: "event",
  at,
  event: {
    id,
    msg:
      type === "agent_message"
        ? { type, message: "m" }
        : type === "turn_aborted"
          ? { type, turnId: id, reason: "interrupted" }
          : { type, turnId: id }
  }
})
/** Histories of whole turns, the last one possibly cut off part-way. */
const histories = fc
  .tuple(fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 6 }), fc.integer({ min: 0, max: 4 }))
  .map(([turns, cut]) => {
    const items: Array<RolloutItem> = []
    turns.forEach((messages, i) => {
      const id = `t${i}`
      items.push(input(id), event(id, "turn_started"))
      for (let m = 0; m < messages; m++) items.push(event(id, "agent_message"))
      items.push(event(id, i % 2 === 0 ? "turn_complete" : "turn_aborted"))
    })
    return items.slice(0, Math.max(0, items.length - cut))
  })

describe("properties", () => {
  it.prop(
    "§11 every spelling of a UUID canonicalises to the same id, and canonical ids are fixed points",
    [fc.uuid()],
    ([uuid]) => {
      const canonical = ThreadId.parse(uuid)
      for (const spelling of [uuid.toUpperCase(), uuid.replaceAll("-", ""), `{${uuid}}`]) {
        expect(ThreadId.parse(spelling)).toBe(canonical)
      }
      expect(canonicalUuid(canonical)).toBe(canonical)
    }
  )

  it.prop(
    "§17 truncation keeps a prefix with at most n user messages that never ends mid-turn",
    [histories, fc.integer({ min: 0, max: 8 })],
    ([history, n]) => {
      const cut = truncateBeforeNthUserMessage(history, n)
      expect(history.slice(0, cut.length)).toEqual(cut)
      const users = cut.filter((i) => i.type === "submission" && i.submission.op.type === "user_input").length
      expect(users).toBeLessThanOrEqual(n)
      expect(turnState(cut).midTurn).toBe(false)
    }
  )

  it.prop(
    "a policy never approves a command that a deny rule matches, whatever else matches",
    [fc.array(fc.stringMatching(/^[a-z]{1,4}$/), { minLength: 1, maxLength: 4 })],
    ([command]) => {
      const rules = policy({
        exec: [
          { prefix: [command[0]!], decision: "approved" },
          { regex: ".*", decision: "approved_for_session" },
          { prefix: command, decision: "denied" }
        ],
        default: "approved"
      })
      expect(judgeExec(rules, shell, command).decision).toBe("denied")
    }
  )
})
