/**
 * A raw, hand-written JSON-RPC client of `codex app-server` (the Codex bench's baseline for the
 * app-server backend): one child process spawned directly, newline-delimited JSON on stdio,
 * `initialize` / `initialized`, `thread/start`, then per turn `turn/start` and a wait for that thread's
 * `turn/completed`. No validation, no routing table, no watchdog: the least work a client can do.
 * `initialize` asks for what the backend asks for (`capabilities`), so both read the same messages.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process"
import { createInterface } from "node:readline"

/** A started app-server with one thread. */
export interface RawThread {
  /** Runs one turn of `text`; resolves at its `turn/completed`. */
  readonly turn: (text: string) => Promise<void>
  /** Ends the process (stdin closed, then SIGKILL if it lingers). */
  readonly close: () => Promise<void>
}

/** Starts `binary app-server` in `cwd` with exactly `env`, initializes it (with `capabilities`) and starts one thread. */
export const startRawThread = async (
  binary: string,
  cwd: string,
  env: Record<string, string>,
  thread: Record<string, unknown>,
  capabilities: Record<string, unknown> = {}
): Promise<RawThread> => {
  const child: ChildProcessWithoutNullStreams = spawn(binary, ["app-server"], { cwd, env, stdio: "pipe" })
  child.stderr.resume()
  let nextId = 1
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  const turnWaiters: Array<() => void> = []
  let exited = false
  child.on("exit", () => {
    exited = true
    for (const p of pending.values()) p.reject(new Error("app-server exited"))
  })
  createInterface({ input: child.stdout }).on("line", (line) => {
    const message = JSON.parse(line) as { id?: number; method?: string; result?: unknown; error?: { message: string } }
    if (message.method === undefined && message.id !== undefined) {
      const waiter = pending.get(message.id)
      pending.delete(message.id)
      if (message.error !== undefined) waiter?.reject(new Error(message.error.message))
      else waiter?.resolve(message.result)
    } else if (message.method === "turn/completed") {
      turnWaiters.shift()?.()
    } else if (message.method !== undefined && message.id !== undefined) {
      // A server request (none expected with approvals `never`): refuse it so nothing hangs.
      child.stdin.write(`${JSON.stringify({ id: message.id, error: { code: -32601, message: "unsupported" } })}\n`)
    }
  })
  const request = (method: string, params: unknown) =>
    new Promise<unknown>((resolve, reject) => {
      const id = nextId++
      pending.set(id, { resolve, reject })
      child.stdin.write(`${JSON.stringify({ id, method, params })}\n`)
    })
  await request("initialize", { clientInfo: { name: "raw", title: "raw", version: "0.0.0" }, capabilities })
  child.stdin.write(`${JSON.stringify({ method: "initialized" })}\n`)
  const started = (await request("thread/start", { cwd, ...thread })) as { thread: { id: string } }
  const threadId = started.thread.id
  return {
    turn: async (text) => {
      const completed = new Promise<void>((resolve) => turnWaiters.push(resolve))
      await request("turn/start", { threadId, input: [{ type: "text", text, text_elements: [] }] })
      await completed
    },
    close: () =>
      new Promise<void>((resolve) => {
        if (exited) return resolve()
        child.once("exit", () => resolve())
        child.stdin.end()
        setTimeout(() => child.kill("SIGKILL"), 2_000).unref()
      })
  }
}
