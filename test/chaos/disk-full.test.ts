/**
 * Chaos for the disk (issue 13): a rollout written onto a 64 KiB tmpfs that fills part-way through a
 * thread's turns. The thread goes on and ends (nothing hangs), the caller is told the rollout could not
 * be written, and every line that reached the disk stays readable, in order, a prefix of what the caller
 * saw. Needs root to mount the tmpfs (the test machine runs as root; elsewhere the mount is refused
 * and the test says so rather than pass quietly).
 * A failed flush at close (the disk refusing every write) is covered in packages/core/test/Crashes.test.ts.
 */
import { execFileSync } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Parent, policy, RolloutStore, ThreadManager } from "@deputy/core"
import { type Event, userText } from "@deputy/protocol"
import { Scripted } from "@deputy/scripted"
import { NodeContext } from "@effect/platform-node"
import { Effect, Layer, Option } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

let dir = ""
let home = ""
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "deputy-chaos-disk-"))
  home = join(dir, "home")
  mkdirSync(home)
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", home]) // throws (and fails the file) unless root
})
afterAll(() => {
  if (home !== "") execFileSync("umount", [home])
  rmSync(dir, { recursive: true, force: true })
})

const TURNS = 8
const PER_TURN = 10
const TEXT = "x".repeat(2000) // 8 turns × 10 × 2 KB: about 160 KB of rollout for a 64 KB disk

describe("chaos: the disk fills while a rollout is written", () => {
  it("§20 the thread ends, the caller hears of it, and every line on disk is kept in order", async () => {
    const seen: Array<Event> = []
    const rollout = await Effect.runPromise(
      Effect.gen(function* () {
        const manager = yield* ThreadManager
        const store = yield* RolloutStore
        const backend = Scripted.backend({
          turns: [
            {
              repeat: TURNS,
              steps: Array.from({ length: PER_TURN }, (_, i) => ({ type: "message" as const, text: `${i} ${TEXT}` }))
            }
          ]
        })
        const thread = yield* manager.start({ backend, cwd: dir })
        for (let turn = 0; turn < TURNS; turn++) {
          yield* thread.submit(userText(`turn ${turn}`))
          while (true) {
            const event = yield* thread.delegate.take
            seen.push(event)
            if (event.msg.type === "turn_complete" || event.msg.type === "turn_aborted") break
          }
        }
        const path = Option.getOrThrow(yield* thread.rolloutPath)
        yield* manager.remove(thread.threadId)
        yield* thread.delegate.awaitShutdown
        return yield* store.read(path)
      }).pipe(
        Effect.provide(
          ThreadManager.layerHome({ home }).pipe(
            Layer.provideMerge(Parent.layerPolicy(policy({}))),
            Layer.provideMerge(NodeContext.layer)
          )
        ),
        Effect.scoped,
        Effect.timeout("20 seconds")
      )
    )
    // Every turn ended: a full disk stops the record, not the work.
    expect(seen.filter((e) => e.msg.type === "turn_complete")).toHaveLength(TURNS)
    // The caller was told, with the reason.
    const told = seen.flatMap((e) => (e.msg.type === "error" || e.msg.type === "warning" ? [e.msg.message] : []))
    expect(told.join("\n")).toMatch(/ENOSPC|no space/i)
    // What reached the disk is a readable prefix of what the caller saw, in order; the disk did fill.
    const written = rollout.lines.flatMap((l) =>
      l.type === "event" && l.event.msg.type === "agent_message" ? [l.event.msg.message] : []
    )
    const said = seen.flatMap((e) => (e.msg.type === "agent_message" ? [e.msg.message] : []))
    expect(written.length).toBeGreaterThan(0)
    expect(written.length).toBeLessThan(said.length)
    expect(said.slice(0, written.length)).toEqual(written)
  })
})
