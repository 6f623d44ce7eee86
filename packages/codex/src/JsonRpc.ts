/**
 * A JSON-RPC 2.0 client over a peer's line-delimited stdio (Codex's `app-server`). It owns one reader
 * fiber in the caller's scope and a map of pending requests. Every incoming line is decoded with zod;
 * bad lines are logged and skipped, never fatal. When the peer's output ends, every pending request
 * (and every later one) fails with BackendExited, so nothing waits forever.
 */
import { Mailboxes } from "@deputy/core"
import { Deferred, Effect, type Mailbox, type Scope } from "effect"
import { z } from "zod"
import { BackendExited, JsonRpcError } from "./errors.js"
import { LineTooLong, lineSplitter } from "./internal/lines.js"

/** A JSON-RPC request id. Ours are integers; the server's may be integers or strings. */
export const RequestId = z.union([z.number().int(), z.string()])
/** A JSON-RPC request id. */
export type RequestId = z.output<typeof RequestId>

// Codex omits `"jsonrpc"` (reference §1); accept it present or absent.
const jsonrpc = z.literal("2.0").optional()
const ServerRequest = z.object({ jsonrpc, id: RequestId, method: z.string().min(1), params: z.unknown().optional() })
const ServerNotification = z.object({ jsonrpc, method: z.string().min(1), params: z.unknown().optional() })
const SuccessResponse = z.object({ jsonrpc, id: RequestId, result: z.unknown() })
const ErrorResponse = z.object({
  jsonrpc,
  id: RequestId.nullable(),
  error: z.object({ code: z.number().int(), message: z.string(), data: z.unknown().optional() })
})

/** A request the server sent us; answer it with `respond` or `respondError` and the same id. */
export interface IncomingRequest {
  readonly id: RequestId
  readonly method: string
  readonly params: unknown
}

/** The other end: its output as text chunks, a way to write one line to it, and how it ended. */
export interface Peer {
  /** The peer's output (stdout) in chunks of any size; ends when the peer closes it. */
  readonly output: Mailbox.ReadonlyMailbox<string, unknown>
  /** Writes one line (a newline is appended). Never fails: a closed peer drops it. */
  readonly write: (line: string) => Effect.Effect<void>
  /** After `output` ended: the error pending requests fail with (waits for the exit code if need be). */
  readonly exited: Effect.Effect<BackendExited>
}

/** What the client does with the server's messages. Handlers run one at a time, in arrival order. */
export interface Handlers {
  readonly onNotification: (method: string, params: unknown) => Effect.Effect<void>
  readonly onRequest: (request: IncomingRequest) => Effect.Effect<void>
}

/** A connected client. */
export interface JsonRpcClient {
  /** Sends a request and waits for its response; fails with JsonRpcError, or BackendExited when the peer ends first. */
  readonly request: (method: string, params?: unknown) => Effect.Effect<unknown, JsonRpcError | BackendExited>
  /** Sends a notification. */
  readonly notify: (method: string, params?: unknown) => Effect.Effect<void>
  /** Answers a server request. */
  readonly respond: (id: RequestId, result: unknown) => Effect.Effect<void>
  /** Answers a server request with an error. */
  readonly respondError: (id: RequestId, code: number, message: string) => Effect.Effect<void>
  /** Waits until the peer's output ended; yields why. */
  readonly closed: Effect.Effect<BackendExited>
  /** True once the peer's output ended. */
  readonly isClosed: () => boolean
}

interface Pending {
  readonly method: string
  readonly slot: Deferred.Deferred<unknown, JsonRpcError | BackendExited>
}

/** How the client reads its peer. */
export interface ClientOptions {
  /**
   * The longest line the peer may send, in characters (§36). Default 64 MiB. A longer one stops the
   * reader: the client closes with BackendExited naming the bound (so every thread on it ends with an
   * error), and memory stays bounded.
   */
  readonly maxLineLength?: number
}

/**
 * Starts reading `peer` in the caller's scope. Closing the scope stops the reader and fails pending
 * requests.
 */
export const make = (
  peer: Peer,
  handlers: Handlers,
  backend = "peer",
  options: ClientOptions = {}
): Effect.Effect<JsonRpcClient, never, Scope.Scope> =>
  Effect.gen(function* () {
    const pending = new Map<number, Pending>()
    const closed = yield* Deferred.make<BackendExited>()
    let nextId = 1
    let closedWith: BackendExited | undefined

    const send = (message: Record<string, unknown>) => peer.write(JSON.stringify({ jsonrpc: "2.0", ...message }))

    const closeWith = (reason: BackendExited) =>
      Effect.suspend(() => {
        if (closedWith !== undefined) return Effect.void
        closedWith = reason
        const slots = [...pending.values()].map((p) => p.slot)
        pending.clear()
        return Effect.forEach(slots, (slot) => Deferred.fail(slot, reason), { discard: true }).pipe(
          Effect.zipRight(Deferred.succeed(closed, reason))
        )
      })

    const handleLine = (line: string): Effect.Effect<void> => {
      if (line.trim() === "") return Effect.void
      let json: unknown
      try {
        json = JSON.parse(line)
      } catch {
        return Effect.logWarning(`${backend}: skipped a line that is not JSON`, preview(line))
      }
      if (typeof json !== "object" || json === null || Array.isArray(json)) {
        return Effect.logWarning(`${backend}: skipped a message that is not an object`, preview(line))
      }
      if ("method" in json) {
        if ("id" in json) {
          const request = ServerRequest.safeParse(json)
          if (!request.success) return Effect.logWarning(`${backend}: skipped a malformed request`, preview(line))
          const { id, method, params } = request.data
          return handlers.onRequest({ id, method, params })
        }
        const notification = ServerNotification.safeParse(json)
        if (!notification.success)
          return Effect.logWarning(`${backend}: skipped a malformed notification`, preview(line))
        return handlers.onNotification(notification.data.method, notification.data.params)
      }
      if ("error" in json) {
        const response = ErrorResponse.safeParse(json)
        if (!response.success) return Effect.logWarning(`${backend}: skipped a malformed error response`, preview(line))
        const { id, error } = response.data
        const waiter = typeof id === "number" ? take(id) : undefined
        if (waiter === undefined) return Effect.logWarning(`${backend}: error response to unknown id ${id}`, error)
        return Deferred.fail(
          waiter.slot,
          new JsonRpcError({
            code: error.code,
            message: error.message,
            method: waiter.method,
            ...(error.data === undefined ? {} : { data: error.data })
          })
        )
      }
      if ("result" in json) {
        const response = SuccessResponse.safeParse(json)
        if (!response.success) return Effect.logWarning(`${backend}: skipped a malformed response`, preview(line))
        const { id, result } = response.data
        const waiter = typeof id === "number" ? take(id) : undefined
        if (waiter === undefined) return Effect.logWarning(`${backend}: response to unknown id ${id}`)
        return Deferred.succeed(waiter.slot, result)
      }
      return Effect.logWarning(`${backend}: skipped a message of unknown shape`, preview(line))
    }

    const take = (id: number): Pending | undefined => {
      const waiter = pending.get(id)
      pending.delete(id)
      return waiter
    }

    // A handler that dies must not stop the reader: the next line still gets read.
    const handleSafely = (line: string) =>
      handleLine(line).pipe(
        Effect.catchAllCause((cause) => Effect.logWarning(`${backend}: handling a message failed`, cause))
      )

    const splitter = lineSplitter({
      ...(options.maxLineLength === undefined ? {} : { maxLength: options.maxLineLength }),
      source: `${backend} stdout`
    })
    const reader = Effect.gen(function* () {
      const overflow = yield* Effect.gen(function* () {
        while (true) {
          const [chunks, done] = yield* Mailboxes.takeAll(peer.output)
          for (const chunk of chunks) {
            const lines = splitter.push(chunk)
            if (lines instanceof LineTooLong) return lines
            // The chunk may have completed lines before the one past the bound: handle them, then stop.
            for (const line of lines) yield* handleSafely(line)
            const failed = splitter.failure()
            if (failed !== undefined) return failed
          }
          if (done) return splitter.failure() // a line past the bound in the last chunk
        }
      }).pipe(
        Effect.catchAllCause((cause) =>
          Effect.as(Effect.logWarning(`${backend}: reading output failed`, cause), undefined)
        )
      )
      if (overflow !== undefined) {
        // §36: stop reading (the peer's pipe fills and holds it) and end everything waiting on it now.
        yield* Effect.logError(`${backend}: ${overflow.message}`)
        return yield* closeWith(new BackendExited({ backend, code: null, reason: overflow.message }))
      }
      const last = splitter.end()
      if (last !== undefined) yield* handleSafely(last)
      yield* Effect.flatMap(peer.exited, closeWith)
    })
    yield* Effect.forkScoped(reader)
    yield* Effect.addFinalizer(() => closeWith(new BackendExited({ backend, code: null })))

    const request = (method: string, params?: unknown) =>
      Effect.gen(function* () {
        if (closedWith !== undefined) return yield* closedWith
        const id = nextId++
        const slot = yield* Deferred.make<unknown, JsonRpcError | BackendExited>()
        pending.set(id, { method, slot })
        yield* send({ id, method, ...(params === undefined ? {} : { params }) })
        // An interrupted request leaves the map: a late response to it is then logged as unknown.
        return yield* Deferred.await(slot).pipe(Effect.ensuring(Effect.sync(() => pending.delete(id))))
      })

    return {
      request,
      notify: (method, params) => send({ method, ...(params === undefined ? {} : { params }) }),
      respond: (id, result) => send({ id, result }),
      respondError: (id, code, message) => send({ id, error: { code, message } }),
      closed: Deferred.await(closed),
      isClosed: () => closedWith !== undefined
    }
  })

const preview = (line: string): string => (line.length > 200 ? `${line.slice(0, 200)}… (${line.length} chars)` : line)
