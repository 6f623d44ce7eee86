// The rollout file writer (internal/rolloutWriter.ts): batching, O_APPEND, the live marker, on real files.
import { newThreadId, type RolloutMeta, userText } from "@deputy/protocol"
import { FileSystem, Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, expect, layer, it as plainIt } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope } from "effect"
import { makeRolloutWriter, newState, writeAll } from "../src/internal/rolloutWriter.js"

layer(NodeContext.layer, { excludeTestServices: true })("rolloutWriter", (it) => {
  const setUp = (flushThreshold: number) =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const path = yield* Path.Path
      const home = yield* fs.makeTempDirectoryScoped({ prefix: "deputy-writer-" })
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
      const state = newState({ started: false })
      const { writer } = yield* makeRolloutWriter({ fs, path, liveDir: `${home}/live`, flushThreshold })(
        threadId,
        file,
        { meta },
        state,
        (error) => Effect.die(error)
      ).pipe(Scope.extend(scope))
      const lines = Effect.map(fs.readFileString(file), (text) => text.split("\n").filter((l) => l !== "").length)
      return {
        fs,
        file,
        writer,
        state,
        lines,
        marker: `${home}/live/${threadId}.json`,
        close: Scope.close(scope, Exit.void)
      }
    })

  it.scoped(
    "lines wait in memory until a turn boundary, then go in one append; the marker lives until the terminal record",
    () =>
      Effect.gen(function* () {
        const { fs, writer, lines, marker, close } = yield* setUp(1024 * 1024)
        yield* writer.submission({ id: "t1", op: userText("hi") }) // the first turn creates the file
        assert.strictEqual(yield* lines, 2) // metadata and the submission
        assert.isTrue(yield* fs.exists(marker))
        yield* writer.event({ id: "t1", msg: { type: "agent_message", message: "a" } })
        assert.strictEqual(yield* lines, 2) // buffered
        yield* writer.event({ id: "t1", msg: { type: "turn_complete", turnId: "t1" } })
        assert.strictEqual(yield* lines, 4)
        yield* writer.terminal("completed")
        assert.strictEqual(yield* lines, 5)
        assert.isFalse(yield* fs.exists(marker))
        yield* close
      })
  )

  it.scoped("past the threshold it flushes without a boundary, appending after what others wrote", () =>
    Effect.gen(function* () {
      const { fs, file, writer, state, lines, close } = yield* setUp(10)
      yield* writer.submission({ id: "t1", op: userText("hi") })
      yield* fs.writeFileString(file, '{"type":"written elsewhere"}\n', { flag: "a" })
      yield* writer.event({ id: "t1", msg: { type: "agent_message", message: "past ten characters" } })
      // The write goes on in the background (the forwarder does not wait for the disk): one is under way.
      assert.isDefined(state.background)
      yield* Fiber.await(state.background!)
      assert.strictEqual(yield* lines, 4)
      assert.include((yield* fs.readFileString(file)).split("\n")[2], "written elsewhere")
      yield* close
    })
  )

  it.scoped(
    "lines buffered while a background write is under way are written by it too, without waiting for another event",
    () =>
      Effect.gen(function* () {
        const { fs, file, writer, state, close } = yield* setUp(1000)
        yield* writer.submission({ id: "t1", op: userText("hi") })
        const message = (i: number) => ({
          id: "t1",
          msg: { type: "agent_message" as const, message: `${i} ${"y".repeat(290)}` }
        })
        // Past the threshold: a background write starts; wait until it has taken the buffer.
        yield* writer.events([0, 1, 2, 3].map(message))
        while (state.pending.bytes > 0) yield* Effect.yieldNow()
        const running = state.background
        assert.isDefined(running)
        // Two thresholds more while it writes: below the backlog, so the forwarder goes on.
        yield* writer.events([4, 5, 6, 7, 8, 9, 10].map(message))
        yield* Fiber.await(running!)
        // The writer did not stop at the lines it took: nothing at or past a threshold is left.
        assert.isBelow(state.pending.bytes, 1000)
        const messages = (yield* fs.readFileString(file))
          .split("\n")
          .filter((line) => line.includes("agent_message"))
          .map((line) => Number(JSON.parse(line).event.msg.message.split(" ")[0]))
        assert.deepStrictEqual(messages, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        yield* close
      })
  )

  it.scoped("the threshold counts UTF-8 bytes, not characters", () =>
    Effect.gen(function* () {
      const { writer, state, close } = yield* setUp(1000)
      yield* writer.submission({ id: "t1", op: userText("hi") })
      // 400 characters, 1,200 bytes: past the threshold.
      yield* writer.event({ id: "t1", msg: { type: "agent_message", message: "€".repeat(400) } })
      assert.isDefined(state.background)
      yield* Fiber.await(state.background!)
      yield* close
    })
  )
})

describe("writeAll", () => {
  // A disk that takes at most 5 bytes a call: writev may write part of what it is given.
  const shortWrites = (limit: number) => {
    const written: Array<number> = []
    return {
      written,
      handle: {
        writev: async (buffers: ReadonlyArray<Uint8Array>) => {
          let left = limit
          for (const bytes of buffers) {
            const take = Math.min(left, bytes.byteLength)
            written.push(...bytes.subarray(0, take))
            left -= take
            if (left === 0) break
          }
          return { bytesWritten: limit - left }
        }
      }
    }
  }

  plainIt("a short write goes on from the byte where it stopped, inside a chunk or between chunks", async () => {
    const disk = shortWrites(5)
    const chunks = ["abc", "defghij", "", "klmnopqrstu"].map((text) => Buffer.from(text))
    expect(await writeAll(disk.handle, chunks)).toBe(21)
    expect(Buffer.from(disk.written).toString()).toBe("abcdefghijklmnopqrstu")
  })

  plainIt("a write of nothing fails rather than trying forever", async () => {
    await expect(writeAll(shortWrites(0).handle, [Buffer.from("abc")])).rejects.toThrow(/wrote 0/)
  })
})
