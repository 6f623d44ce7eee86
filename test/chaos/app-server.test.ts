/**
 * Chaos for a real backend process (issue 13): a `codex app-server` (test/chaos/fixtures) that dies at
 * each point of the protocol, writes garbage, half a line then stalls, one endless line, ignores
 * SIGTERM, or leaves a grandchild in a session of its own — driven through the ThreadManager as a user
 * would. Each case ends within its bound with a clear error, loses nothing the caller already saw (the
 * rollout holds it, in order), and leaves no process running.
 *
 * Already covered elsewhere, not repeated here: garbage and unknown JSON-RPC lines at the JsonRpc level
 * (packages/codex/test/JsonRpc.test.ts), a line past the bound for `codex exec` (execProcess.test.ts),
 * SIGTERM-ignoring and group-leaving commands under the supervisor (packages/core/test/ProcessSupervisor.test.ts,
 * packages/scripted/test/noEscape.test.ts), a SIGKILLed deputy taking its app-server's group along
 * (packages/codex/test/AppServer.test.ts), and two deputy processes on one home (§34,
 * packages/core/test/Crashes.test.ts).
 */
import { existsSync, readFileSync } from "node:fs"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { CodexAppServer } from "@deputy/codex"
import { Parent, policy, type Thread, ThreadManager } from "@deputy/core"
import { type Event, userText } from "@deputy/protocol"
import { NodeContext } from "@effect/platform-node"
import { Duration, Effect, Layer, Option } from "effect"
import { afterEach, beforeEach, describe, expect, it } from "vitest"

const CHAOS = join(import.meta.dirname, "fixtures", "chaos-app-server.mjs")
const BOUND = Duration.seconds(10)

let dir = ""
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "deputy-chaos-"))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

const isAlive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    return !["Z", "X"].includes(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0] ?? "")
  } catch {
    return false
  }
}

/** The processes the chaos server started (itself, and any grandchild), once all are gone; else the living. */
const processesLeft = async (pidsFile: string) => {
  const pids = existsSync(pidsFile) ? readFileSync(pidsFile, "utf8").split("\n").filter(Boolean).map(Number) : []
  for (let i = 0; i < 100 && pids.some(isAlive); i++) await new Promise((resolve) => setTimeout(resolve, 20))
  return { pids, alive: pids.filter(isAlive) }
}

interface Run {
  readonly startError?: string
  readonly seen: ReadonlyArray<Event>
  readonly rollout: ReadonlyArray<Event>
  readonly cancelled: boolean
}

/**
 * Starts a thread on the chaos server in `mode`, sends one input and reads until the turn ends, the
 * events end, or `cancelWhen` says to cancel; everything within BOUND (a timeout fails the test).
 */
const chaos = (mode: string, cancelWhen?: (seen: ReadonlyArray<Event>) => boolean) =>
  Effect.gen(function* () {
    const manager = yield* ThreadManager
    const backend = CodexAppServer.backend({
      codexPath: CHAOS,
      cwd: dir,
      env: { CHAOS_MODE: mode, CHAOS_PIDS: join(dir, "pids") },
      shutdownGrace: "300 millis",
      approvalPolicy: "never",
      sandbox: "read-only"
    })
    const started = yield* Effect.either(manager.start({ backend, cwd: dir }))
    if (started._tag === "Left")
      return { startError: started.left.message, seen: [], rollout: [], cancelled: false } satisfies Run
    const thread: Thread = started.right
    const seen: Array<Event> = []
    let cancelled = false
    yield* Effect.ignore(thread.submit(userText("go")))
    while (true) {
      if (cancelWhen?.(seen) && !cancelled) {
        cancelled = true
        yield* Effect.ignore(manager.cancel(thread.threadId))
      }
      const next = yield* Effect.option(thread.delegate.take)
      if (Option.isNone(next)) break
      seen.push(next.value)
      if (next.value.msg.type === "turn_complete" || next.value.msg.type === "turn_aborted") break
    }
    yield* Effect.ignore(manager.remove(thread.threadId))
    yield* thread.delegate.awaitShutdown
    const path = yield* thread.rolloutPath
    const rollout = Option.isSome(path)
      ? readFileSync(path.value, "utf8")
          .split("\n")
          .filter(Boolean)
          .map((line) => JSON.parse(line) as { type: string; event?: Event })
          .flatMap((line) => (line.type === "event" && line.event ? [line.event] : []))
      : []
    return { seen, rollout, cancelled } satisfies Run
  }).pipe(
    Effect.timeoutFail({
      duration: BOUND,
      onTimeout: () => new Error(`chaos ${mode}: not over within ${Duration.format(BOUND)}`)
    })
  )

const run = (mode: string, cancelWhen?: (seen: ReadonlyArray<Event>) => boolean) =>
  Effect.runPromise(
    Effect.suspend(() => chaos(mode, cancelWhen)).pipe(
      Effect.provide(
        ThreadManager.layerHome({ home: join(dir, "home") }).pipe(
          Layer.provideMerge(Parent.layerPolicy(policy({}))),
          Layer.provideMerge(NodeContext.layer)
        )
      ),
      Effect.scoped
    )
  )

/** Nothing the caller saw is missing from the rollout, and it is there in the same order. */
const expectKept = (result: Run) => {
  const written = result.rollout.map((e) => JSON.stringify(e))
  let at = 0
  for (const event of result.seen) {
    const found = written.indexOf(JSON.stringify(event), at)
    expect(found, `${event.msg.type} is in the rollout, in order`).toBeGreaterThanOrEqual(0)
    at = found + 1
  }
}

const types = (events: ReadonlyArray<Event>) => events.map((e) => e.msg.type)
const errors = (events: ReadonlyArray<Event>) => events.flatMap((e) => (e.msg.type === "error" ? [e.msg.message] : []))

describe("chaos: the codex app-server process", () => {
  // The server dies on the n-th message it receives: initialize, initialized, thread/start, turn/start.
  for (const n of [0, 1, 2, 3]) {
    it(`§25 killed on message ${n}: a typed start error or an error and the turn's end, nothing left running`, async () => {
      const result = await run(`kill:${n}`)
      if (result.startError !== undefined) {
        expect(result.startError).toMatch(/codex|exited|start/i)
      } else {
        expect(errors(result.seen).join(" ")).toMatch(/exit|ended|died|closed|signal/i)
        expect(types(result.seen).at(-1)).toBe("turn_aborted")
        expectKept(result)
      }
      expect((await processesLeft(join(dir, "pids"))).alive).toEqual([])
    })
  }

  it("§25 killed mid-turn: what was said before is kept, then an error and turn_aborted", async () => {
    const result = await run("kill-mid")
    expect(result.startError).toBeUndefined()
    const said = result.seen.flatMap((e) => (e.msg.type === "agent_message" ? [e.msg.message] : []))
    expect(said).toContain("said before the fault")
    expect(errors(result.seen).length).toBeGreaterThan(0)
    expect(types(result.seen).at(-1)).toBe("turn_aborted")
    expectKept(result)
    expect((await processesLeft(join(dir, "pids"))).alive).toEqual([])
  })

  it("§36 garbage lines around every message are skipped: the turn completes", async () => {
    const result = await run("garbage")
    expect(types(result.seen)).toContain("agent_message")
    expect(types(result.seen).at(-1)).toBe("turn_complete")
    expectKept(result)
    expect((await processesLeft(join(dir, "pids"))).alive).toEqual([])
  })

  it("§8 half a line, then a stall: the cancel still ends the thread and the process", async () => {
    const result = await run("half-line", (seen) => types(seen).includes("turn_started"))
    expect(result.cancelled).toBe(true)
    expectKept(result)
    expect((await processesLeft(join(dir, "pids"))).alive).toEqual([])
  })

  it("§36 one endless line: a clear error naming the bound, the turn ends, the process is killed", async () => {
    const result = await run("endless-line")
    expect(errors(result.seen).join(" ")).toMatch(/line|long|bound|limit/i)
    expect(types(result.seen).at(-1)).toBe("turn_aborted")
    expectKept(result)
    expect((await processesLeft(join(dir, "pids"))).alive).toEqual([])
  })

  it("§33 a server ignoring SIGTERM is killed after the grace when its thread is cancelled", async () => {
    const result = await run("ignore-term", (seen) => types(seen).includes("agent_message"))
    expect(result.cancelled).toBe(true)
    expectKept(result)
    const { pids, alive } = await processesLeft(join(dir, "pids"))
    expect(pids.length).toBe(1)
    expect(alive).toEqual([])
  })

  it("§33 a grandchild that left the server's group and session ends with the thread", async () => {
    const result = await run("leave-group", (seen) => types(seen).includes("agent_message"))
    expect(result.cancelled).toBe(true)
    const { pids, alive } = await processesLeft(join(dir, "pids"))
    expect(pids.length).toBe(2)
    expect(alive).toEqual([])
  })
})
