import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Exit } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import {
  InvalidScenario,
  loadScenarioFile,
  MockModel,
  type MockModel as Model,
  type ScenarioInput,
  startMockModel
} from "../src/index.js"

const running: Array<Model> = []
afterEach(async () => {
  for (const model of running.splice(0)) await model.close()
})

const start = async (scenario: ScenarioInput): Promise<Model> => {
  const model = await startMockModel(scenario)
  running.push(model)
  return model
}

const userMessage = (text: string) => ({ type: "message", role: "user", content: [{ type: "input_text", text }] })

const post = (model: Model, input: ReadonlyArray<unknown>, headers: Record<string, string> = {}) =>
  fetch(`${model.url}/responses`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ model: "mock-model", stream: true, input })
  })

/** The `data:` payloads of an SSE body, in order. */
const events = async (response: Response): Promise<ReadonlyArray<Record<string, unknown>>> => {
  const text = await response.text()
  return text
    .split("\n\n")
    .filter((block) => block.trim() !== "")
    .map((block) => {
      const lines = block.split("\n")
      const event = lines.find((l) => l.startsWith("event: "))?.slice(7)
      const data = JSON.parse(lines.find((l) => l.startsWith("data: "))?.slice(6) ?? "null") as Record<string, unknown>
      expect(data.type).toBe(event)
      return data
    })
}

const types = (list: ReadonlyArray<Record<string, unknown>>) => list.map((e) => e.type)

const invalid = async (scenario: unknown): Promise<InvalidScenario> => {
  const error = await startMockModel(scenario as ScenarioInput).then(
    () => undefined,
    (e: unknown) => e
  )
  expect(error).toBeInstanceOf(InvalidScenario)
  return error as InvalidScenario
}

describe("MockModel", () => {
  it("listens on 127.0.0.1 only, on a free port", async () => {
    const model = await start({ responses: [] })
    expect(model.url).toBe(`http://127.0.0.1:${model.port}/v1`)
    expect(model.port).toBeGreaterThan(0)
  })

  it("answers responses without match in order, streaming message deltas and usage", async () => {
    const model = await start({
      responses: [
        { steps: [{ type: "message", text: "Hello world", deltas: 3 }] },
        { usage: null, steps: [{ type: "message", text: "second" }] }
      ]
    })
    const first = await post(model, [userMessage("one")])
    expect(first.status).toBe(200)
    expect(first.headers.get("content-type")).toBe("text/event-stream")
    const list = await events(first)
    expect(types(list)).toEqual([
      "response.created",
      "response.output_item.added",
      "response.output_text.delta",
      "response.output_text.delta",
      "response.output_text.delta",
      "response.output_item.done",
      "response.completed"
    ])
    expect(
      list
        .filter((e) => e.type === "response.output_text.delta")
        .map((e) => e.delta)
        .join("")
    ).toBe("Hello world")
    expect(list[5]).toMatchObject({
      item: { type: "message", role: "assistant", content: [{ type: "output_text", text: "Hello world" }] }
    })
    expect(list[6]).toMatchObject({
      response: { usage: { input_tokens: 100, output_tokens: 10, input_tokens_details: { cached_tokens: 0 } } }
    })
    const second = await events(await post(model, [userMessage("two")]))
    expect(second[second.length - 1]).toEqual({ type: "response.completed", response: expect.any(Object) })
    expect((second[second.length - 1]?.response as Record<string, unknown>).usage).toBeUndefined()
  })

  it("prefers a response whose match holds: last user message, call output", async () => {
    const model = await start({
      responses: [
        { name: "fallback", steps: [{ type: "message", text: "in order" }] },
        {
          name: "tool",
          match: { callOutput: "c1", callOutputContains: "exit 0" },
          steps: [{ type: "message", text: "saw c1" }]
        },
        {
          name: "greet",
          match: { lastUserMessageContains: "hello" },
          steps: [{ type: "exec_command", callId: "c1", cmd: "ls", sandboxPermissions: "require_escalated" }]
        }
      ]
    })
    const greet = await events(await post(model, [userMessage("<env/>"), userMessage("say hello")]))
    const call = greet.find((e) => e.type === "response.output_item.done")
    expect(call?.item).toEqual({
      type: "function_call",
      call_id: "c1",
      name: "exec_command",
      arguments: JSON.stringify({ cmd: "ls", sandbox_permissions: "require_escalated" })
    })
    const output = { type: "function_call_output", call_id: "c1", output: "exit 0" }
    await events(await post(model, [userMessage("say hello"), output]))
    await events(await post(model, [userMessage("anything")]))
    expect(model.requests().map((r) => r.response)).toEqual(["greet", "tool", "fallback"])
    expect(model.requests()[1]?.callOutputs).toEqual([{ callId: "c1", output: "exit 0" }])
  })

  it("renders reasoning, apply_patch (custom and exec) and request_user_input", async () => {
    const patch = "*** Begin Patch\n*** Add File: a.txt\n+a\n*** End Patch"
    const model = await start({
      responses: [
        {
          steps: [
            { type: "reasoning", summary: "sum", text: "raw" },
            { type: "apply_patch", callId: "p1", patch },
            { type: "apply_patch", callId: "p2", patch, form: "exec" },
            {
              type: "request_user_input",
              callId: "q1",
              questions: [{ id: "color", question: "Which?", options: [{ label: "Red" }] }]
            },
            { type: "function_call", name: "spawn_agent", namespace: "multi_agent_v1", arguments: { message: "x" } }
          ]
        }
      ]
    })
    const list = await events(await post(model, [userMessage("go")]))
    const done = list.filter((e) => e.type === "response.output_item.done").map((e) => e.item)
    expect(done).toEqual([
      {
        type: "reasoning",
        id: "rs_0_0",
        summary: [{ type: "summary_text", text: "sum" }],
        content: [{ type: "reasoning_text", text: "raw" }]
      },
      { type: "custom_tool_call", call_id: "p1", name: "apply_patch", input: `${patch}\n` },
      {
        type: "function_call",
        call_id: "p2",
        name: "exec_command",
        arguments: JSON.stringify({ cmd: `apply_patch <<'EOF'\n${patch}\nEOF\n` })
      },
      {
        type: "function_call",
        call_id: "q1",
        name: "request_user_input",
        arguments: JSON.stringify({
          questions: [{ id: "color", header: "", question: "Which?", options: [{ label: "Red", description: "" }] }]
        })
      },
      {
        type: "function_call",
        call_id: "call_0_4",
        name: "spawn_agent",
        namespace: "multi_agent_v1",
        arguments: '{"message":"x"}'
      }
    ])
    expect(types(list)).toContain("response.reasoning_summary_text.delta")
    expect(types(list)).toContain("response.reasoning_text.delta")
  })

  it("answers error responses: HTTP status, response.failed, response.incomplete", async () => {
    const model = await start({
      responses: [
        { steps: [{ type: "http_error", status: 429, body: "slow down" }] },
        {
          steps: [
            { type: "message", text: "partial" },
            { type: "fail", code: "rate_limit_exceeded", message: "no" }
          ]
        },
        { steps: [{ type: "incomplete", reason: "max_output_tokens" }] }
      ]
    })
    const http = await post(model, [userMessage("1")])
    expect(http.status).toBe(429)
    expect(await http.text()).toBe("slow down")
    const failed = await events(await post(model, [userMessage("2")]))
    expect(failed[failed.length - 1]).toMatchObject({
      type: "response.failed",
      response: { error: { code: "rate_limit_exceeded", message: "no" } }
    })
    expect(types(failed)).not.toContain("response.completed")
    const incomplete = await events(await post(model, [userMessage("3")]))
    expect(incomplete[incomplete.length - 1]).toMatchObject({
      type: "response.incomplete",
      response: { incomplete_details: { reason: "max_output_tokens" } }
    })
  })

  it("delays before the headers and between deltas", async () => {
    const model = await start({
      responses: [
        {
          steps: [
            { type: "delay", ms: 150 },
            { type: "message", text: "abcd", deltas: 2, deltaDelayMs: 100 }
          ]
        }
      ]
    })
    const started = Date.now()
    const response = await post(model, [userMessage("slow")])
    expect(Date.now() - started).toBeGreaterThanOrEqual(140)
    await response.text()
    expect(Date.now() - started).toBeGreaterThanOrEqual(240)
  })

  it("records a client that hangs up during a delay", async () => {
    const model = await start({
      responses: [
        {
          steps: [
            { type: "delay", ms: 60_000 },
            { type: "message", text: "late" }
          ]
        }
      ]
    })
    const abort = new AbortController()
    const pending = fetch(`${model.url}/responses`, {
      method: "POST",
      body: JSON.stringify({ input: [userMessage("cut")] }),
      signal: abort.signal
    }).catch(() => "aborted")
    while (model.requests().length === 0) await new Promise((resolve) => setTimeout(resolve, 10))
    abort.abort()
    expect(await pending).toBe("aborted")
    while (model.requests()[0]?.clientClosedEarly !== true) await new Promise((resolve) => setTimeout(resolve, 10))
    expect(model.requests()[0]?.response).toBe("responses.0")
  })

  it("answers an unmatched request with a clear error, and records it", async () => {
    const model = await start({
      responses: [{ match: { lastUserMessageContains: "never" }, steps: [{ type: "message", text: "x" }] }]
    })
    const response = await post(model, [userMessage("something else")])
    expect(response.status).toBe(400)
    const body = (await response.json()) as { error: { message: string; type: string } }
    expect(body.error.type).toBe("mock_unmatched")
    expect(body.error.message).toContain('no scenario response matches request #0 (last user message: "something else"')
    const other = await fetch(`${model.url}/models`)
    expect(other.status).toBe(404)
    expect(model.requests().map((r) => [r.method, r.path, r.response])).toEqual([
      ["POST", "/v1/responses", null],
      ["GET", "/v1/models", null]
    ])
  })

  it("records method, path, headers (secrets redacted) and the parsed body", async () => {
    const model = await start({ responses: [{ steps: [{ type: "message", text: "ok" }] }] })
    await (await post(model, [userMessage("log me")], { authorization: "Bearer secret", originator: "test" })).text()
    const [request] = model.requests()
    expect(request).toMatchObject({
      index: 0,
      method: "POST",
      path: "/v1/responses",
      response: "responses.0",
      lastUserMessage: "log me",
      clientClosedEarly: false,
      body: { model: "mock-model", stream: true, input: [userMessage("log me")] }
    })
    expect(request?.headers.authorization).toBe("[redacted]")
    expect(request?.headers.originator).toBe("test")
  })

  it("rejects a bad scenario with InvalidScenario naming each bad field", async () => {
    const tooLong = await invalid({ responses: [{ steps: [{ type: "delay", ms: 999_999_999 }] }] })
    expect(tooLong.issues).toHaveLength(1)
    expect(tooLong.issues[0]).toMatch(/^responses\.0\.steps\.0\.ms: /)
    expect(tooLong.message).toContain("responses.0.steps.0.ms")
    const typo = await invalid({ responses: [{ steps: [{ type: "message", text: "x", delta: 2 }] }] })
    expect(typo.issues[0]).toMatch(/^responses\.0\.steps\.0: Unrecognized key: "delta"/)
    const order = await invalid({ responses: [{ steps: [{ type: "fail" }, { type: "message", text: "x" }] }] })
    expect(order.issues).toEqual(["responses.0.steps.0.type: fail must be the last step"])
    const unknown = await invalid({ responses: [{ steps: [{ type: "shout" }] }] })
    expect(unknown.issues[0]).toMatch(/^responses\.0\.steps\.0\.type: /)
  })

  it("loads YAML scenario files, naming the file in errors", async () => {
    const dir = await mkdtemp(join(tmpdir(), "deputy-mock-scenario-"))
    try {
      const good = join(dir, "good.yaml")
      await writeFile(good, "responses:\n  - steps:\n      - type: message\n        text: from yaml\n")
      expect((await loadScenarioFile(good)).responses[0]?.steps[0]).toMatchObject({ text: "from yaml" })
      const bad = join(dir, "bad.yaml")
      await writeFile(bad, "responses:\n  - steps: []\n")
      const error = await loadScenarioFile(bad).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(InvalidScenario)
      expect((error as InvalidScenario).source).toBe(bad)
      expect((error as InvalidScenario).issues[0]).toMatch(/^responses\.0\.steps: /)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it("writes a config.toml that points Codex at the mock, offline", async () => {
    const model = await start({ responses: [] })
    const home = await mkdtemp(join(tmpdir(), "deputy-mock-home-"))
    try {
      const path = await model.writeCodexConfig(home, { envKey: "MOCK_KEY", applyPatchTool: true })
      expect(path).toBe(join(home, "config.toml"))
      const toml = await readFile(path, "utf8")
      expect(toml).toContain('model = "mock-model"')
      expect(toml).toContain('model_provider = "deputy_mock"')
      expect(toml).toContain(`model_catalog_json = ${JSON.stringify(join(home, "model_catalog.json"))}`)
      expect(toml).toContain('web_search = "disabled"')
      expect(toml).toContain("check_for_update_on_startup = false")
      expect(toml).toContain("[analytics]\nenabled = false")
      expect(toml).toContain("[features]\nplugins = false")
      expect(toml).toContain(
        [
          "[model_providers.deputy_mock]",
          'name = "deputy mock model"',
          `base_url = "${model.url}"`,
          'wire_api = "responses"',
          'env_key = "MOCK_KEY"',
          "request_max_retries = 0",
          "stream_max_retries = 0"
        ].join("\n")
      )
      const catalog = JSON.parse(await readFile(join(home, "model_catalog.json"), "utf8")) as {
        models: Array<Record<string, unknown>>
      }
      expect(catalog.models[0]).toMatchObject({ slug: "mock-model", apply_patch_tool_type: "freeform" })
    } finally {
      await rm(home, { recursive: true, force: true })
    }
  })

  it("MockModel.scoped closes the server when the scope ends", async () => {
    let url = ""
    await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const model = yield* MockModel.scoped({ responses: [{ steps: [{ type: "message", text: "hi" }] }] })
          url = model.url
          const response = yield* Effect.promise(() => post(model, [userMessage("x")]))
          expect(response.status).toBe(200)
          yield* Effect.promise(() => response.text())
        })
      )
    )
    await expect(fetch(`${url}/responses`, { method: "POST" })).rejects.toThrow()
    const exit = await Effect.runPromiseExit(Effect.scoped(MockModel.scoped({ responses: [{ steps: [] }] })))
    expect(Exit.isFailure(exit)).toBe(true)
    if (Exit.isFailure(exit)) expect(JSON.stringify(exit.cause)).toContain("InvalidScenario")
  })
})
