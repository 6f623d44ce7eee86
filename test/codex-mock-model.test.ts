/**
 * The real Codex CLI (the root devDependency @openai/codex) against @deputy/mock-model, offline: each test gets a fresh
 * CODEX_HOME and cwd, and the child sees only PATH, HOME, CODEX_HOME and a dummy key.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { readdir, readFile } from "node:fs/promises"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { createInterface } from "node:readline"
import { describe, expect, it } from "vitest"
import { cleanups, keyName, type Sandbox, sandbox } from "./support/sandbox.js"

const require = createRequire(import.meta.url)

const triples: Record<string, string> = {
  "linux-x64": "x86_64-unknown-linux-musl",
  "linux-arm64": "aarch64-unknown-linux-musl",
  "darwin-x64": "x86_64-apple-darwin",
  "darwin-arm64": "aarch64-apple-darwin"
}

/** The native binary shipped by @openai/codex (skipping the node wrapper), else the wrapper run by node. */
const codexCommand = (): { readonly file: string; readonly prefix: ReadonlyArray<string> } => {
  const wrapperPackage = require.resolve("@openai/codex/package.json")
  const target = `${process.platform}-${process.arch}`
  const triple = triples[target]
  if (triple !== undefined) {
    try {
      const platformPackage = createRequire(wrapperPackage).resolve(`@openai/codex-${target}/package.json`)
      const file = join(dirname(platformPackage), "vendor", triple, "bin", "codex")
      if (existsSync(file)) return { file, prefix: [] }
    } catch {
      // fall through to the wrapper
    }
  }
  return { file: process.execPath, prefix: [join(dirname(wrapperPackage), "bin", "codex.js")] }
}

/** Spawns codex in its own process group with a minimal environment; the test's cleanup kills the group. */
const spawnCodex = (box: Sandbox, args: ReadonlyArray<string>): ChildProcessWithoutNullStreams => {
  const { file, prefix } = codexCommand()
  const child = spawn(file, [...prefix, ...args], {
    cwd: box.cwd,
    detached: true,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: box.home, CODEX_HOME: box.home, [keyName]: "dummy" }
  })
  // Pushed after the sandbox's own cleanups, so it runs before them: the group is gone before its home is removed.
  cleanups.push(async () => {
    if (child.pid === undefined) return
    const running = child.exitCode === null && child.signalCode === null
    const exited = running ? new Promise((resolve) => child.once("exit", resolve)) : Promise.resolve()
    try {
      process.kill(-child.pid, "SIGKILL") // the whole group, even when its leader has already exited
    } catch {
      // already gone
    }
    await exited
  })
  return child
}

const collect = (stream: NodeJS.ReadableStream): (() => string) => {
  let text = ""
  stream.setEncoding("utf8")
  stream.on("data", (chunk: string) => {
    text += chunk
  })
  return () => text
}

const exitOf = (child: ChildProcessWithoutNullStreams): Promise<number | null> =>
  new Promise((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode)
    else child.once("exit", (code) => resolve(code))
  })

type Json = Record<string, unknown>

/** A tiny JSON-RPC client over the app-server's stdio JSONL: requests, notifications, server requests. */
const rpcClient = (child: ChildProcessWithoutNullStreams, answer: (method: string, params: Json) => unknown) => {
  let nextId = 1
  const pending = new Map<number, { resolve: (v: Json) => void; reject: (e: Error) => void }>()
  const notifications: Array<{ method: string; params: Json }> = []
  const serverRequests: Array<{ method: string; params: Json }> = []
  const waiters: Array<{ method: string; resolve: (params: Json) => void }> = []
  const send = (message: Json) => child.stdin.write(`${JSON.stringify(message)}\n`)
  createInterface({ input: child.stdout }).on("line", (line) => {
    const message = JSON.parse(line) as Json
    const method = typeof message.method === "string" ? message.method : undefined
    const params = (message.params ?? {}) as Json
    if (method !== undefined && message.id !== undefined) {
      serverRequests.push({ method, params })
      send({ id: message.id, result: answer(method, params) })
    } else if (method !== undefined) {
      notifications.push({ method, params })
      for (const waiter of waiters.filter((w) => w.method === method)) {
        waiters.splice(waiters.indexOf(waiter), 1)
        waiter.resolve(params)
      }
    } else if (typeof message.id === "number") {
      const slot = pending.get(message.id)
      pending.delete(message.id)
      if (message.error !== undefined) slot?.reject(new Error(JSON.stringify(message.error)))
      else slot?.resolve(message.result as Json)
    }
  })
  return {
    notifications,
    serverRequests,
    request: (method: string, params: Json): Promise<Json> =>
      new Promise((resolve, reject) => {
        const id = nextId++
        pending.set(id, { resolve, reject })
        send({ id, method, params })
      }),
    notify: (method: string) => send({ method }),
    /** The next notification `method` (or an earlier one not yet waited for). */
    next: (method: string): Promise<Json> =>
      new Promise((resolve) => {
        const seen = notifications.find((n) => n.method === method)
        if (seen !== undefined) resolve(seen.params)
        else waiters.push({ method, resolve })
      })
  }
}

/** initialize → initialized → thread/start; resolves to the client and the thread id. */
const startThread = async (
  box: Sandbox,
  threadParams: Json,
  answer: (method: string, params: Json) => unknown = () => ({})
) => {
  const child = spawnCodex(box, ["app-server"])
  const stderr = collect(child.stderr)
  const rpc = rpcClient(child, answer)
  await rpc.request("initialize", {
    clientInfo: { name: "deputy-test", title: null, version: "0.0.0" },
    capabilities: { experimentalApi: true }
  })
  rpc.notify("initialized")
  const started = await rpc.request("thread/start", { cwd: box.cwd, ...threadParams })
  const thread = started.thread as Json
  return { child, rpc, stderr, threadId: String(thread.id) }
}

const textInput = (text: string) => [{ type: "text", text, text_elements: [] }]

/** Linux's syscall number of `read` on this architecture. */
const READ_SYSCALL: Readonly<Record<string, number>> = { x64: 0, arm64: 63 }

/** Resolves once a thread of `pid` is blocked reading its stdin (Linux: /proc/<pid>/task/<tid>/syscall); bounded. */
const untilReadingStdin = async (pid: number, bound = 30_000) => {
  const reading = `${READ_SYSCALL[process.arch]} 0x0 `
  const deadline = Date.now() + bound
  while (Date.now() < deadline) {
    const tasks = await readdir(`/proc/${pid}/task`).catch(() => [])
    for (const task of tasks) {
      const syscall = await readFile(`/proc/${pid}/task/${task}/syscall`, "utf8").catch(() => "")
      if (syscall.startsWith(reading)) return
    }
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  throw new Error(`process ${pid} did not read its stdin within ${bound} ms`)
}

describe("real Codex CLI against @deputy/mock-model", () => {
  it("codex exec --json: one turn answered with an assistant message", { timeout: 60_000 }, async () => {
    const box = await sandbox({
      responses: [{ steps: [{ type: "message", text: "Hello from the mock model", deltas: 3 }] }]
    })
    const child = spawnCodex(box, ["exec", "--json", "--skip-git-repo-check", "say hello"])
    child.stdin.end()
    const stdout = collect(child.stdout)
    const stderr = collect(child.stderr)
    const code = await exitOf(child)
    expect(code, stderr()).toBe(0)
    const events = stdout()
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => JSON.parse(line) as Json)
    const messages = events.flatMap((e) => {
      const item = e.item as Json | undefined
      return e.type === "item.completed" && item?.type === "agent_message" ? [item.text] : []
    })
    expect(messages).toEqual(["Hello from the mock model"])
    expect(events.map((e) => e.type)).toContain("turn.completed")
    const requests = box.model.requests()
    expect(requests).toHaveLength(1)
    expect(requests[0]).toMatchObject({
      method: "POST",
      path: "/v1/responses",
      response: "responses.0",
      lastUserMessage: "say hello"
    })
    expect(requests[0]?.headers.authorization).toBe("[redacted]")
    expect(requests[0]?.body).toMatchObject({ model: "mock-model", stream: true })
  })

  it("codex app-server: initialize, thread/start, turn/start, turn/completed", { timeout: 60_000 }, async () => {
    const box = await sandbox({
      responses: [
        {
          steps: [
            { type: "reasoning", summary: "Thinking about a greeting" },
            { type: "message", text: "Hello over app-server", deltas: 4 }
          ]
        }
      ]
    })
    const { rpc, stderr, threadId } = await startThread(box, { approvalPolicy: "never", sandbox: "read-only" })
    const turn = await rpc.request("turn/start", { threadId, input: textInput("greet me") })
    expect((turn.turn as Json).status).toBe("inProgress")
    const completed = await rpc.next("turn/completed")
    expect((completed.turn as Json).status, stderr()).toBe("completed")
    const agentMessages = rpc.notifications.flatMap((n) => {
      const item = n.params.item as Json | undefined
      return n.method === "item/completed" && item?.type === "agentMessage" ? [item.text] : []
    })
    expect(agentMessages).toEqual(["Hello over app-server"])
    const deltas = rpc.notifications.filter((n) => n.method === "item/agentMessage/delta").map((n) => n.params.delta)
    expect(deltas.join("")).toBe("Hello over app-server")
    expect(deltas.length).toBe(4)
    expect(box.model.requests().map((r) => r.lastUserMessage)).toEqual(["greet me"])
    // The written config.toml draws no warning (a host without bubblewrap gets one about the sandbox, not the config).
    const warnings = rpc.notifications.filter((n) => n.method === "configWarning")
    expect(warnings.filter((n) => !String(n.params.summary).includes("bubblewrap"))).toEqual([])
  })

  it("codex app-server: an exec_command approval answered accept really runs", { timeout: 60_000 }, async () => {
    const box = await sandbox({
      responses: [
        {
          name: "run",
          steps: [{ type: "exec_command", callId: "call-touch", cmd: "printf deputy > made-by-codex.txt" }]
        },
        {
          name: "after",
          match: { callOutput: "call-touch" },
          steps: [{ type: "message", text: "The file is written." }]
        }
      ]
    })
    const { rpc, stderr, threadId } = await startThread(
      box,
      { approvalPolicy: "untrusted", sandbox: "workspace-write" },
      (method) => (method === "item/commandExecution/requestApproval" ? { decision: "accept" } : {})
    )
    await rpc.request("turn/start", { threadId, input: textInput("write the file") })
    const completed = await rpc.next("turn/completed")
    expect((completed.turn as Json).status, stderr()).toBe("completed")
    expect(rpc.serverRequests.map((r) => r.method)).toEqual(["item/commandExecution/requestApproval"])
    expect(rpc.serverRequests[0]?.params).toMatchObject({ threadId, itemId: "call-touch" })
    expect(await readFile(join(box.cwd, "made-by-codex.txt"), "utf8")).toBe("deputy")
    const requests = box.model.requests()
    expect(requests.map((r) => r.response)).toEqual(["run", "after"])
    expect(requests[1]?.callOutputs.map((o) => o.callId)).toEqual(["call-touch"])
  })

  it(
    "codex exec --json: response.failed and an unmatched request fail the turn with the mock's message",
    {
      timeout: 60_000
    },
    async () => {
      const box = await sandbox({
        responses: [
          {
            match: { lastUserMessageContains: "fail" },
            steps: [{ type: "fail", code: "server_error", message: "boom" }]
          }
        ]
      })
      const run = async (prompt: string) => {
        const child = spawnCodex(box, ["exec", "--json", "--skip-git-repo-check", prompt])
        child.stdin.end()
        const stdout = collect(child.stdout)
        const code = await exitOf(child)
        const failed = stdout()
          .split("\n")
          .filter((line) => line.includes('"turn.failed"'))
          .map((line) => JSON.parse(line) as { error: { message: string } })
        return { code, messages: failed.map((f) => f.error.message) }
      }
      const failed = await run("please fail")
      expect(failed.code).toBe(1)
      expect(failed.messages).toHaveLength(1)
      expect(failed.messages[0]).toContain("boom")
      const unmatched = await run("nothing matches this")
      expect(unmatched.code).toBe(1)
      expect(unmatched.messages[0]).toContain("no scenario response matches request #1")
      expect(box.model.requests().map((r) => r.response)).toEqual(["responses.0", null])
    }
  )

  it(
    "codex app-server: turn/interrupt during a long delay ends the turn interrupted",
    { timeout: 60_000 },
    async () => {
      const box = await sandbox({
        responses: [
          {
            steps: [
              { type: "delay", ms: 30_000 },
              { type: "message", text: "too late" }
            ]
          }
        ]
      })
      const { rpc, stderr, threadId } = await startThread(box, { approvalPolicy: "never", sandbox: "read-only" })
      const started = await rpc.request("turn/start", { threadId, input: textInput("take your time") })
      const turnId = String((started.turn as Json).id)
      while (box.model.requests().length === 0) await new Promise((resolve) => setTimeout(resolve, 10))
      expect(await rpc.request("turn/interrupt", { threadId, turnId })).toEqual({})
      const completed = await rpc.next("turn/completed")
      expect((completed.turn as Json).status, stderr()).toBe("interrupted")
      while (box.model.requests()[0]?.clientClosedEarly !== true) {
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    }
  )

  it(
    "codex app-server: a custom apply_patch call asks for file-change approval and edits the file",
    {
      timeout: 60_000
    },
    async () => {
      const patch = "*** Begin Patch\n*** Add File: added.txt\n+from the mock\n*** End Patch"
      const box = await sandbox(
        {
          responses: [
            { name: "patch", steps: [{ type: "apply_patch", callId: "call-patch", patch }] },
            { name: "after", match: { callOutput: "call-patch" }, steps: [{ type: "message", text: "patched" }] }
          ]
        },
        { applyPatchTool: true }
      )
      const { rpc, stderr, threadId } = await startThread(
        box,
        { approvalPolicy: "untrusted", sandbox: "read-only" },
        (method) => (method === "item/fileChange/requestApproval" ? { decision: "accept" } : {})
      )
      await rpc.request("turn/start", { threadId, input: textInput("add a file") })
      const completed = await rpc.next("turn/completed")
      expect((completed.turn as Json).status, stderr()).toBe("completed")
      expect(rpc.serverRequests.map((r) => r.method)).toEqual(["item/fileChange/requestApproval"])
      expect(await readFile(join(box.cwd, "added.txt"), "utf8")).toBe("from the mock\n")
      const tools = (box.model.requests()[0]?.body as { tools: Array<{ type: string; name?: string }> }).tools
      expect(tools).toContainEqual(expect.objectContaining({ type: "custom", name: "apply_patch" }))
      expect(box.model.requests().map((r) => r.response)).toEqual(["patch", "after"])
    }
  )

  it(
    "codex app-server: request_user_input reaches the client and the answer reaches the model",
    {
      timeout: 60_000
    },
    async () => {
      const box = await sandbox(
        {
          responses: [
            {
              name: "ask",
              steps: [
                {
                  type: "request_user_input",
                  callId: "call-ask",
                  questions: [
                    {
                      id: "color",
                      header: "Color",
                      question: "Which color?",
                      options: [
                        { label: "Red", description: "warm" },
                        { label: "Blue", description: "cool" }
                      ]
                    }
                  ]
                }
              ]
            },
            {
              name: "answered",
              match: { callOutput: "call-ask", callOutputContains: "Blue" },
              steps: [{ type: "message", text: "Blue it is" }]
            }
          ]
        },
        { requestUserInput: true }
      )
      const { rpc, stderr, threadId } = await startThread(
        box,
        { approvalPolicy: "never", sandbox: "read-only" },
        (method) => (method === "item/tool/requestUserInput" ? { answers: { color: { answers: ["Blue"] } } } : {})
      )
      await rpc.request("turn/start", { threadId, input: textInput("ask me") })
      const completed = await rpc.next("turn/completed")
      expect((completed.turn as Json).status, stderr()).toBe("completed")
      expect(rpc.serverRequests.map((r) => r.method)).toEqual(["item/tool/requestUserInput"])
      expect(rpc.serverRequests[0]?.params).toMatchObject({ questions: [{ id: "color", question: "Which color?" }] })
      expect(box.model.requests().map((r) => r.response)).toEqual(["ask", "answered"])
      const warnings = rpc.notifications.filter((n) => n.method === "configWarning")
      expect(warnings.filter((n) => !String(n.params.summary).includes("bubblewrap"))).toEqual([])
    }
  )

  it(
    "the mock's config keeps Codex off the network: no curated-plugin sync from github.com",
    { timeout: 60_000 },
    async () => {
      // At start-up Codex syncs its curated plugins (`/usr/bin/git ls-remote https://github.com/openai/plugins`:
      // a DNS query and a connection out), holding `<CODEX_HOME>/.tmp/plugins.sync.lock` meanwhile. With
      // plugins turned back on, the lock shows the sync ran (so its absence means something).
      const syncs = async (args: ReadonlyArray<string>) => {
        const box = await sandbox({ responses: [{ steps: [{ type: "message", text: "ok" }] }] })
        const child = spawnCodex(box, ["exec", "--json", "--skip-git-repo-check", ...args, "say hello"])
        child.stdin.end()
        const stderr = collect(child.stderr)
        expect(await exitOf(child), stderr()).toBe(0)
        return existsSync(join(box.home, ".tmp", "plugins.sync.lock"))
      }
      expect(await syncs(["-c", "features.plugins=true"])).toBe(true)
      expect(await syncs([])).toBe(false)
    }
  )

  it.skipIf(process.platform !== "linux" || READ_SYSCALL[process.arch] === undefined)(
    "codex exec reads its prompt before it opens a thread: `exec resume` held at its stdin sees a turn that ended meanwhile",
    { timeout: 90_000 },
    async () => {
      // What lets @deputy/codex start a turn's child before the last one has exited (one writer per thread).
      const answer = (question: string, text: string) => ({
        name: question,
        match: { lastUserMessageContains: question },
        steps: [{ type: "message" as const, text }]
      })
      const box = await sandbox({
        responses: [
          answer("first question", "first answer"),
          answer("second question", "second answer"),
          answer("third question", "third answer")
        ]
      })
      const flags = ["--json", "--skip-git-repo-check"]
      const first = spawnCodex(box, ["exec", ...flags, "first question"])
      first.stdin.end()
      const firstOut = collect(first.stdout)
      expect(await exitOf(first)).toBe(0)
      const threadId = (JSON.parse(firstOut().split("\n")[0] ?? "") as Json).thread_id as string

      const held = spawnCodex(box, ["exec", "resume", threadId, ...flags, "-"])
      const heldErr = collect(held.stderr)
      await untilReadingStdin(held.pid ?? 0)
      const second = spawnCodex(box, ["exec", "resume", threadId, ...flags, "second question"])
      second.stdin.end()
      expect(await exitOf(second)).toBe(0)
      held.stdin.end("third question")
      expect(await exitOf(held), heldErr()).toBe(0)

      const requests = box.model.requests()
      expect(requests.map((r) => r.response)).toEqual(["first question", "second question", "third question"])
      const history = JSON.stringify((requests[2]?.body as { input: unknown }).input)
      expect(history).toContain("first answer")
      expect(history).toContain("second answer")
    }
  )
})
