import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Logger, LogLevel, Mailbox, Option, Queue } from "effect"
import { BackendExited, JsonRpcError } from "../src/errors.js"
import * as JsonRpc from "../src/JsonRpc.js"

type Json = Record<string, unknown>

/** A scripted fake peer: the test writes the server's output in chunks and reads the client's lines. */
const fakePeer = (handlers: Partial<JsonRpc.Handlers> = {}, options: JsonRpc.ClientOptions = {}) =>
  Effect.gen(function* () {
    const output = yield* Mailbox.make<string>()
    const written = yield* Queue.unbounded<string>()
    const notifications = yield* Queue.unbounded<{ method: string; params: unknown }>()
    const requests = yield* Queue.unbounded<JsonRpc.IncomingRequest>()
    const logs: Array<string> = []
    const client = yield* JsonRpc.make(
      {
        output,
        write: (line) => Queue.offer(written, line),
        exited: Effect.succeed(new BackendExited({ backend: "fake", code: 3 }))
      },
      {
        onNotification: (method, params) => Queue.offer(notifications, { method, params }),
        onRequest: (request) => Queue.offer(requests, request),
        ...handlers
      },
      "fake",
      options
    ).pipe(
      Effect.provide(
        Logger.replace(
          Logger.defaultLogger,
          Logger.make(({ logLevel, message }) => {
            logs.push(`${logLevel.label} ${Array.isArray(message) ? message.join(" ") : String(message)}`)
          })
        )
      )
    )
    return {
      client,
      logs,
      /** Chunks written by the server that the client has not read yet. */
      unread: output.size,
      /** The server writes one line (or a raw chunk). */
      say: (message: Json | string) =>
        output.offer(typeof message === "string" ? message : `${JSON.stringify(message)}\n`),
      /** The next line the client wrote, parsed. */
      heard: Effect.map(Queue.take(written), (line) => JSON.parse(line) as Json),
      notifications,
      requests,
      eof: output.end
    }
  })

const withLogs = Effect.provide(Logger.minimumLogLevel(LogLevel.All))

describe("JsonRpc", () => {
  it.scoped(
    "§36 a line past the bound (a peer that never sends a newline) ends the client with a typed error, reading no further",
    () =>
      Effect.gen(function* () {
        const peer = yield* fakePeer({}, { maxLineLength: 1024 })
        const pending = yield* Effect.fork(peer.client.request("a"))
        yield* peer.heard
        yield* peer.say(`${JSON.stringify({ method: "fine", params: {} })}\n`)
        for (let i = 0; i < 100; i++) yield* peer.say("x".repeat(100)) // 10,000 characters, no newline
        const closed = yield* peer.client.closed
        assert.strictEqual(closed._tag, "BackendExited")
        assert.include(closed.message, "longer than 1024 characters")
        const failed = yield* Fiber.join(pending).pipe(Effect.flip)
        assert.strictEqual(failed._tag, "BackendExited")
        assert.deepStrictEqual(yield* Queue.take(peer.notifications), { method: "fine", params: {} })
        // It stopped reading at the bound: what the peer writes now stays in the pipe (memory stays bounded).
        for (let i = 0; i < 10; i++) yield* peer.say("x".repeat(100))
        assert.strictEqual(Option.getOrThrow(yield* peer.unread), 10)
      })
  )

  it.scoped("responses out of order reach their own requests", () =>
    Effect.gen(function* () {
      const peer = yield* fakePeer()
      const first = yield* Effect.fork(peer.client.request("a", { n: 1 }))
      const second = yield* Effect.fork(peer.client.request("b"))
      const sentA = yield* peer.heard
      const sentB = yield* peer.heard
      assert.deepStrictEqual(sentA, { jsonrpc: "2.0", id: 1, method: "a", params: { n: 1 } })
      assert.deepStrictEqual(sentB, { jsonrpc: "2.0", id: 2, method: "b" })
      yield* peer.say({ id: 2, result: "for b" }) // no "jsonrpc", as Codex sends it
      yield* peer.say({ jsonrpc: "2.0", id: 1, result: { for: "a" } })
      assert.deepStrictEqual(yield* Fiber.join(first), { for: "a" })
      assert.strictEqual(yield* Fiber.join(second), "for b")
    })
  )

  it.scoped("an error response fails the request with a typed JsonRpcError", () =>
    Effect.gen(function* () {
      const peer = yield* fakePeer()
      const call = yield* Effect.fork(peer.client.request("thread/resume", { threadId: "x" }))
      const sent = yield* peer.heard
      yield* peer.say({ id: sent.id as number, error: { code: -32600, message: "no rollout found" } })
      const error = yield* Effect.flip(Fiber.join(call))
      assert.instanceOf(error, JsonRpcError)
      assert.deepInclude(error, { code: -32600, message: "no rollout found", method: "thread/resume" })
    })
  )

  it.scoped("a response to an unknown id is logged and skipped", () =>
    Effect.gen(function* () {
      const peer = yield* fakePeer()
      const call = yield* Effect.fork(peer.client.request("a"))
      yield* peer.heard
      yield* peer.say({ id: 99, result: "stray" })
      yield* peer.say({ id: 98, error: { code: 1, message: "stray" } })
      yield* peer.say({ id: 1, result: "mine" })
      assert.strictEqual(yield* Fiber.join(call), "mine")
      assert.isTrue(peer.logs.some((line) => line.includes("WARN") && line.includes("unknown id 99")))
      assert.isTrue(peer.logs.some((line) => line.includes("unknown id 98")))
    }).pipe(withLogs)
  )

  it.scoped("garbage lines and messages of unknown shape are logged and skipped", () =>
    Effect.gen(function* () {
      const peer = yield* fakePeer()
      yield* peer.say("this is not json\n")
      yield* peer.say("[1,2,3]\n")
      yield* peer.say({ hello: "world" })
      yield* peer.say({ method: 42 })
      yield* peer.say({ method: "turn/started", params: { ok: true } })
      const next = yield* Queue.take(peer.notifications)
      assert.deepStrictEqual(next, { method: "turn/started", params: { ok: true } })
      assert.strictEqual(peer.logs.filter((line) => line.includes("WARN")).length, 4)
    }).pipe(withLogs)
  )

  it.scoped("a 4 MB line in 64 KB chunks arrives whole", () =>
    Effect.gen(function* () {
      const peer = yield* fakePeer()
      const big = "x".repeat(4 * 1024 * 1024)
      const line = `${JSON.stringify({ method: "item/agentMessage/delta", params: { delta: big } })}\n`
      for (let i = 0; i < line.length; i += 64 * 1024) yield* peer.say(line.slice(i, i + 64 * 1024))
      const next = yield* Queue.take(peer.notifications)
      assert.strictEqual((next.params as { delta: string }).delta.length, big.length)
    })
  )

  it.scoped("a server request is handed over and answered later by its id", () =>
    Effect.gen(function* () {
      const peer = yield* fakePeer()
      yield* peer.say({ id: 0, method: "item/commandExecution/requestApproval", params: { itemId: "c1" } })
      yield* peer.say({ id: "s-1", method: "item/tool/requestUserInput", params: {} })
      const request = yield* Queue.take(peer.requests)
      assert.deepStrictEqual(request, {
        id: 0,
        method: "item/commandExecution/requestApproval",
        params: { itemId: "c1" }
      })
      const second = yield* Queue.take(peer.requests)
      yield* peer.client.respondError(second.id, -32601, "unsupported")
      yield* peer.client.respond(request.id, { decision: "accept" })
      assert.deepStrictEqual(yield* peer.heard, {
        jsonrpc: "2.0",
        id: "s-1",
        error: { code: -32601, message: "unsupported" }
      })
      assert.deepStrictEqual(yield* peer.heard, { jsonrpc: "2.0", id: 0, result: { decision: "accept" } })
    })
  )

  it.scoped("peer EOF fails pending and later requests with BackendExited", () =>
    Effect.gen(function* () {
      const peer = yield* fakePeer()
      const call = yield* Effect.fork(peer.client.request("turn/start"))
      yield* peer.heard
      yield* peer.say('{"method":"turn/started","params":{}}') // an unterminated last line still counts
      yield* peer.eof
      const exit = yield* Fiber.await(call)
      assert.isTrue(Exit.isFailure(exit))
      const error = yield* Effect.flip(Fiber.join(call))
      assert.instanceOf(error, BackendExited)
      assert.strictEqual(error.code, 3)
      assert.strictEqual((yield* Queue.take(peer.notifications)).method, "turn/started")
      assert.strictEqual((yield* peer.client.closed).code, 3)
      assert.isTrue(peer.client.isClosed())
      const late = yield* Effect.flip(peer.client.request("thread/start"))
      assert.instanceOf(late, BackendExited)
    })
  )

  it.scoped("a handler that dies does not stop the reader", () =>
    Effect.gen(function* () {
      const seen = yield* Queue.unbounded<string>()
      const peer = yield* fakePeer({
        onNotification: (method) => (method === "boom" ? Effect.die("bug") : Queue.offer(seen, method))
      })
      yield* peer.say({ method: "boom" })
      yield* peer.say({ method: "after" })
      assert.strictEqual(yield* Queue.take(seen), "after")
    })
  )
})
