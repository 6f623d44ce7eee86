/**
 * The mock model server: `POST /v1/responses` on 127.0.0.1 (a free port), answered from a scenario with server-sent
 * events. It owns one `node:http` server and every stream it has open; they live until `close()` (or the scope).
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { gunzipSync, inflateSync } from "node:zlib"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { z } from "zod"
import { type CodexConfigOptions, writeCodexConfigFile } from "./codexConfig.js"
import { InvalidScenario, MockModelFailed } from "./errors.js"
import { type CallOutput, callOutputs, lastUserMessage } from "./internal/requestBody.js"
import { type Action, completed, frame, stepActions } from "./internal/sse.js"
import { type Match, type MockResponse, Scenario, type ScenarioInput } from "./Scenario.js"

/** One request the mock received, as tests see it. */
export interface RecordedRequest {
  /** 0-based arrival order. */
  readonly index: number
  readonly method: string
  /** Path with query, e.g. `/v1/responses`. */
  readonly path: string
  /** Lower-cased headers; `authorization` and `cookie` values are replaced by `[redacted]`. */
  readonly headers: Readonly<Record<string, string>>
  /** The parsed JSON body; `null` when there was none or it was not JSON. */
  readonly body: unknown
  /** Name of the scenario response that answered it; `null` when none matched (or not `POST /v1/responses`). */
  readonly response: string | null
  /** The text of the last user message in `input`. */
  readonly lastUserMessage: string | undefined
  /** The tool results in `input` (`function_call_output` / `custom_tool_call_output`). */
  readonly callOutputs: ReadonlyArray<CallOutput>
  /** The client hung up before the response ended (e.g. Codex interrupted the turn). */
  readonly clientClosedEarly: boolean
  /** `Date.now()` at arrival. */
  readonly receivedAtMs: number
}

/** A running mock model. */
export interface MockModel {
  /** Base URL of the Responses API, `http://127.0.0.1:<port>/v1`. */
  readonly url: string
  readonly port: number
  /** A snapshot of every request received so far, in arrival order. */
  readonly requests: () => ReadonlyArray<RecordedRequest>
  /** Writes `<codexHome>/config.toml` pointing Codex at this mock; resolves to the file's path. */
  readonly writeCodexConfig: (codexHome: string, options?: CodexConfigOptions) => Promise<string>
  /** Stops listening and cuts every open stream. */
  readonly close: () => Promise<void>
}

/** Decodes a scenario, failing with InvalidScenario naming every bad field. */
export const decodeScenario = (input: unknown, source = "scenario"): Scenario => {
  const result = Scenario.safeParse(input)
  if (result.success) return result.data
  throw new InvalidScenario({ source, issues: formatIssues(result.error) })
}

const formatIssues = (error: z.ZodError): ReadonlyArray<string> =>
  error.issues.map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`)

const matches = (match: Match, body: unknown, bodyText: string): boolean => {
  const last = lastUserMessage(body)
  const outputs = callOutputs(body)
  return (
    (match.lastUserMessageContains === undefined || last?.includes(match.lastUserMessageContains) === true) &&
    (match.callOutput === undefined ||
      outputs.some(
        (o) =>
          o.callId === match.callOutput &&
          (match.callOutputContains === undefined || o.output.includes(match.callOutputContains))
      )) &&
    (match.bodyContains === undefined || bodyText.includes(match.bodyContains))
  )
}

const redacted = new Set(["authorization", "cookie", "x-api-key"])

const headersOf = (req: IncomingMessage): Record<string, string> =>
  Object.fromEntries(
    Object.entries(req.headers).flatMap(([name, value]) =>
      value === undefined ? [] : [[name, redacted.has(name) ? "[redacted]" : String(value)]]
    )
  )

const readBody = (req: IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("error", reject)
    req.on("end", () => {
      const raw = Buffer.concat(chunks)
      const encoding = req.headers["content-encoding"]
      try {
        const plain = encoding === "gzip" ? gunzipSync(raw) : encoding === "deflate" ? inflateSync(raw) : raw
        resolve(plain.toString("utf8"))
      } catch (error) {
        reject(error)
      }
    })
  })

const parseJson = (text: string): unknown => {
  if (text.length === 0) return null
  try {
    return JSON.parse(text)
  } catch {
    return null
  }
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const timer = setTimeout(done, ms)
    function done() {
      clearTimeout(timer)
      signal.removeEventListener("abort", done)
      resolve()
    }
    signal.addEventListener("abort", done, { once: true })
  })

const sendJson = (res: ServerResponse, status: number, value: unknown): void => {
  res.writeHead(status, { "content-type": "application/json" })
  res.end(JSON.stringify(value))
}

/** Starts a mock model on 127.0.0.1 (free port). Rejects with InvalidScenario when the scenario does not decode. */
export const startMockModel = async (scenario: ScenarioInput | Scenario): Promise<MockModel> => {
  const script = decodeScenario(scenario, "startMockModel")
  const responses = script.responses.map((response, i) => ({
    name: response.name ?? `responses.${i}`,
    response,
    remaining: response.times
  }))
  type Entry = { -readonly [K in keyof RecordedRequest]: RecordedRequest[K] }
  const log: Array<Entry> = []
  const streams = new Set<AbortController>()

  // A `match` response that matches wins; else the next unused response without `match`, in order.
  const pick = (body: unknown, bodyText: string) => {
    const open = responses.filter((r) => r.remaining > 0)
    const chosen =
      open.find((r) => r.response.match !== undefined && matches(r.response.match, body, bodyText)) ??
      open.find((r) => r.response.match === undefined)
    if (chosen !== undefined) chosen.remaining -= 1
    return chosen
  }

  const stream = async (res: ServerResponse, response: MockResponse, index: number, signal: AbortSignal) => {
    const responseId = `resp_${index}`
    let step = 0
    const ids = { item: (prefix: string) => `${prefix}_${index}_${step}` }
    const send = (event: Record<string, unknown>) => {
      if (!signal.aborted) res.write(frame(event))
    }
    const run = async (actions: ReadonlyArray<Action>) => {
      for (const action of actions) {
        if (signal.aborted) return
        if ("sleepMs" in action) await sleep(action.sleepMs, signal)
        else send(action.event)
      }
    }
    // Headers wait for the first non-delay step, so a leading delay delays the whole answer (and http_error can follow).
    let started = false
    const start = () => {
      if (started) return
      started = true
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" })
      send({ type: "response.created", response: { id: responseId, status: "in_progress" } })
    }
    let outputIndex = 0
    for (const current of response.steps) {
      if (signal.aborted) return
      switch (current.type) {
        case "delay":
          await sleep(current.ms, signal)
          break
        case "http_error":
          res.writeHead(current.status, { "content-type": "application/json" })
          res.end(
            current.body ??
              JSON.stringify({ error: { message: `mock http error ${current.status}`, type: "mock_error" } })
          )
          return
        case "fail":
          start()
          send({
            type: "response.failed",
            response: { id: responseId, status: "failed", error: { code: current.code, message: current.message } }
          })
          res.end()
          return
        case "incomplete":
          start()
          send({
            type: "response.incomplete",
            response: { id: responseId, status: "incomplete", incomplete_details: { reason: current.reason } }
          })
          res.end()
          return
        case "disconnect":
          start()
          res.end()
          return
        default:
          start()
          await run(stepActions(current, outputIndex, ids))
          outputIndex += 1
      }
      step += 1
    }
    start()
    send(completed(responseId, response.usage))
    res.end()
  }

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const bodyText = await readBody(req)
    const body = parseJson(bodyText)
    const path = req.url ?? "/"
    const isResponses = req.method === "POST" && path.split("?")[0] === "/v1/responses"
    const chosen = isResponses ? pick(body, bodyText) : undefined
    const entry: Entry = {
      index: log.length,
      method: req.method ?? "GET",
      path,
      headers: headersOf(req),
      body,
      response: chosen?.name ?? null,
      lastUserMessage: lastUserMessage(body),
      callOutputs: callOutputs(body),
      clientClosedEarly: false,
      receivedAtMs: Date.now()
    }
    log.push(entry)
    if (!isResponses) {
      sendJson(res, 404, { error: { message: `mock model: no route ${req.method} ${path}`, type: "not_found" } })
      return
    }
    if (chosen === undefined) {
      const last = entry.lastUserMessage === undefined ? "none" : JSON.stringify(entry.lastUserMessage.slice(0, 200))
      const outputs = entry.callOutputs.map((o) => o.callId).join(", ") || "none"
      sendJson(res, script.unmatchedStatus, {
        error: {
          message: `deputy mock model: no scenario response matches request #${entry.index} (last user message: ${last}; call outputs: ${outputs})`,
          type: "mock_unmatched"
        }
      })
      return
    }
    const controller = new AbortController()
    streams.add(controller)
    res.on("close", () => {
      if (!res.writableFinished) entry.clientClosedEarly = true
      controller.abort()
    })
    try {
      await stream(res, chosen.response, entry.index, controller.signal)
    } finally {
      streams.delete(controller)
      if (!res.writableEnded) res.end()
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: { message: `mock model: ${String(error)}` } })
      else res.destroy()
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once("error", (cause) => reject(new MockModelFailed({ reason: "cannot listen on 127.0.0.1", cause })))
    // 127.0.0.1 only: never reachable from elsewhere.
    server.listen(0, "127.0.0.1", () => resolve())
  })
  const port = (server.address() as AddressInfo).port
  const url = `http://127.0.0.1:${port}/v1`
  let closing: Promise<void> | undefined

  return {
    url,
    port,
    requests: () => log.map((entry) => ({ ...entry })),
    writeCodexConfig: (codexHome, options) => writeCodexConfigFile(codexHome, url, options),
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        for (const controller of streams) controller.abort()
        server.close(() => resolve())
        server.closeAllConnections()
      })
      return closing
    }
  }
}

/** Effect constructors for the mock model. */
export const MockModel = {
  /** Starts a mock model for the life of the scope; the scope's end closes it. */
  scoped: (
    scenario: ScenarioInput | Scenario
  ): Effect.Effect<MockModel, InvalidScenario | MockModelFailed, Scope.Scope> =>
    Effect.acquireRelease(
      Effect.tryPromise({
        try: () => startMockModel(scenario),
        catch: (error) =>
          error instanceof InvalidScenario || error instanceof MockModelFailed
            ? error
            : new MockModelFailed({ reason: String(error), cause: error })
      }),
      (model) => Effect.promise(() => model.close())
    )
}
