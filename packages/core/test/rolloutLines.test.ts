// The rollout's line builders (internal/rolloutLines.ts) and what a rollout persists (§2).
import { type Event, newThreadId, type RolloutMeta, userText } from "@deputy/protocol"
import { FileSystem, Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, expect, it, layer } from "@effect/vitest"
import { Effect, Exit, FastCheck as fc, Scope } from "effect"
import { PendingLines } from "../src/internal/pendingLines.js"
import { appendEventLines, eventLine, lineBuilder } from "../src/internal/rolloutLines.js"
import { makeRolloutWriter, newState } from "../src/internal/rolloutWriter.js"

/** Any string, including quotes, backslashes, control characters and lone surrogates. */
const text = fc.oneof(
  fc.string(),
  fc.fullUnicodeString(),
  fc.string({ unit: "binary" }),
  fc.constantFrom('"', "\\", "\u0000", "\ud800", "\u2028")
)
const hotEvents: fc.Arbitrary<Event> = fc.oneof(
  fc.record({ id: text, msg: fc.record({ type: fc.constant("agent_message" as const), message: text }) }),
  fc.record({ id: text, msg: fc.record({ type: fc.constant("agent_reasoning" as const), text }) }),
  fc.record({ id: text, msg: fc.record({ type: fc.constant("turn_started" as const), turnId: text }) }),
  fc.record({
    id: text,
    msg: fc.record(
      { type: fc.constant("turn_complete" as const), turnId: text, lastAgentMessage: text },
      { requiredKeys: ["type", "turnId"] }
    )
  })
) as fc.Arbitrary<Event>

describe("rollout lines", () => {
  it.prop(
    "each hand-written line builder writes exactly what JSON.stringify writes for the same line",
    [hotEvents, fc.date({ noInvalidDate: true }).map((d) => d.toISOString())],
    ([event, at]) => {
      expect(eventLine(at, event)).toBe(`${JSON.stringify({ type: "event", at, event })}\n`)
    },
    { fastCheck: { numRuns: 2_000 } }
  )

  // Ids and texts from a small set too, so runs of one id and type reuse a line's head, and a run breaks
  // on an id, a type, a value to escape or an unknown field.
  const few = fc.constantFrom("t", "t2", "x", 'q"', "")
  const anyEvent: fc.Arbitrary<Event> = fc.oneof(
    hotEvents,
    fc.record({
      id: few,
      msg: fc.record({ type: fc.constant("agent_message" as const), message: fc.oneof(few, text) })
    }),
    fc.record({ id: few, msg: fc.record({ type: fc.constant("agent_reasoning" as const), text: few }) }),
    fc.record({ id: few, msg: fc.record({ type: fc.constant("turn_started" as const), turnId: few }) }),
    fc.record({ id: few, msg: fc.record({ type: fc.constant("agent_message" as const), message: few, extra: few }) }),
    fc.record({ msg: fc.record({ type: fc.constant("agent_message" as const), message: few }), id: few }),
    fc.record({ id: few, msg: fc.record({ message: few, type: fc.constant("agent_message" as const) }) }),
    fc.record({ id: few, msg: fc.record({ type: fc.constant("error" as const), message: few }) })
  ) as fc.Arbitrary<Event>
  it.prop(
    "a batch's line builder writes, line by line, exactly what JSON.stringify writes",
    [fc.array(anyEvent, { maxLength: 30 }), fc.date({ noInvalidDate: true }).map((d) => d.toISOString())],
    ([events, at]) => {
      const line = lineBuilder(at)
      for (const event of events) expect(line(event)).toBe(`${JSON.stringify({ type: "event", at, event })}\n`)
    },
    { fastCheck: { numRuns: 1_000 } }
  )

  const delta: fc.Arbitrary<Event> = fc.record({
    id: few,
    msg: fc.record({ type: fc.constant("agent_message_delta" as const), delta: few })
  }) as fc.Arbitrary<Event>
  const boundary: fc.Arbitrary<Event> = fc.record({
    id: few,
    msg: fc.record({ type: fc.constant("turn_complete" as const), turnId: few })
  }) as fc.Arbitrary<Event>
  // Mostly ASCII hot events (copied as bytes in a long batch), some with accents, emoji or escapes.
  const streamed = fc.oneof(
    { weight: 6, arbitrary: anyEvent },
    { weight: 2, arbitrary: delta },
    { weight: 1, arbitrary: boundary }
  )
  it.prop(
    "a batch's lines, short (one string) or long (hot lines copied as bytes), are byte for byte JSON.stringify's, deltas left out",
    [
      fc.oneof(fc.array(streamed, { maxLength: 10 }), fc.array(streamed, { minLength: 64, maxLength: 200 })),
      fc.date({ noInvalidDate: true }).map((d) => d.toISOString())
    ],
    ([events, at]) => {
      const pending = new PendingLines()
      pending.push("before\n")
      const ended = appendEventLines(pending, at, events)
      const kept = events.filter((e) => e.msg.type !== "agent_message_delta")
      const expected = `before\n${kept.map((event) => `${JSON.stringify({ type: "event", at, event })}\n`).join("")}`
      expect(Buffer.concat(pending.take()).toString("utf8")).toBe(expected)
      expect(ended).toBe(events.some((e) => e.msg.type === "turn_complete"))
    },
    { fastCheck: { numRuns: 500, endOnFailure: true } }
  )

  it("an event of another type, or with fields the builder does not know, falls back to JSON.stringify", () => {
    const at = "2026-11-30T00:00:00.000Z"
    const odd = { id: "t", msg: { type: "agent_message", message: "m", extra: [1, { a: "\n" }] } } as unknown as Event
    const other: Event = { id: "t", msg: { type: "error", message: "boom" } }
    // Not a plain object: JSON.stringify calls its toJSON, which a builder reading fields would skip.
    class Shown {
      readonly id = "t"
      readonly msg = { type: "agent_message", message: "m" }
      toJSON() {
        return { id: "t", msg: { type: "agent_message", message: "shown" } }
      }
    }
    const instance = new Shown() as unknown as Event
    for (const event of [odd, other, instance]) {
      expect(eventLine(at, event)).toBe(`${JSON.stringify({ type: "event", at, event })}\n`)
      const line = lineBuilder(at)
      line({ id: "t", msg: { type: "agent_message", message: "warm" } }) // a head to reuse wrongly
      expect(line(event)).toBe(`${JSON.stringify({ type: "event", at, event })}\n`)
    }
  })
})

layer(NodeContext.layer, { excludeTestServices: true })("rollout persistence", (it) => {
  it.scoped("§2 streaming deltas are not persisted; the completed message and reasoning are", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const path = yield* Path.Path
      const home = yield* fs.makeTempDirectoryScoped({ prefix: "deputy-lines-" })
      const threadId = newThreadId()
      const meta: RolloutMeta = {
        type: "meta",
        threadId,
        createdAt: "2026-11-22T01:14:33.000Z",
        backend: "scripted",
        cwd: "/work",
        source: { type: "top_level" }
      }
      const file = `${home}/sessions/rollout.jsonl`
      const scope = yield* Scope.make()
      const { writer } = yield* makeRolloutWriter({ fs, path, liveDir: `${home}/live`, flushThreshold: 1 << 20 })(
        threadId,
        file,
        { meta },
        newState({ started: false }),
        (error) => Effect.die(error)
      ).pipe(Scope.extend(scope))
      yield* writer.submission({ id: "t1", op: userText("hi") })
      yield* writer.events([
        { id: "t1", msg: { type: "agent_message_delta", delta: "he" } },
        { id: "t1", msg: { type: "agent_reasoning_delta", delta: "th" } },
        { id: "t1", msg: { type: "agent_reasoning", text: "think" } },
        { id: "t1", msg: { type: "agent_message", message: "hello" } }
      ])
      yield* writer.event({ id: "t1", msg: { type: "agent_message_delta", delta: "x" } })
      yield* writer.event({ id: "t1", msg: { type: "turn_complete", turnId: "t1" } })
      yield* Scope.close(scope, Exit.void)
      const types = (yield* fs.readFileString(file))
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as { type: string; event?: Event })
        .map((line) => line.event?.msg.type ?? line.type)
      assert.deepStrictEqual(types, ["meta", "submission", "agent_reasoning", "agent_message", "turn_complete"])
    })
  )
})
