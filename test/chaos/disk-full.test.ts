/**
 * Chaos for the disk (issue 13): a deputy process (test/chaos/fixtures/disk-full-child.ts) writes a
 * rollout that cannot fit, part-way through a thread's turns. Either the disk is full — a 64 KiB tmpfs,
 * which needs root to mount — or the file may not grow: a 64 KiB file-size limit (`ulimit -f`, with
 * SIGXFSZ ignored so the write fails with EFBIG instead of killing the process), which needs nothing.
 * The first case takes the tmpfs when root and the limit otherwise; the second always takes the limit.
 * Either way every turn still ends (nothing hangs: the process exits on its own, within a bound), the
 * caller is told why the rollout could not be written, and every line that reached the disk stays
 * readable, in order, a prefix of what the caller saw.
 * A failed flush at close (the disk refusing every write) is covered in packages/core/test/Crashes.test.ts.
 */
import { execFileSync, spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { RolloutStore } from "@deputy/core"
import type { Event } from "@deputy/protocol"
import { NodeContext } from "@effect/platform-node"
import { Effect } from "effect"
import { afterEach, describe, expect, it } from "vitest"

const CHILD = join(import.meta.dirname, "fixtures", "disk-full-child.ts")
const TSX = join(import.meta.dirname, "..", "..", "node_modules", "tsx", "dist", "cli.mjs")
const TURNS = 8
const PER_TURN = 10
const SIZE = 2000 // 8 turns × 10 × 2 KB: about 160 KB of rollout for 64 KiB of room
/** `ulimit -f` counts 512-byte blocks (POSIX sh): 64 KiB. */
const LIMIT_BLOCKS = 128
const isRoot = process.getuid?.() === 0

const dirs: Array<() => void> = []
afterEach(() => {
  for (const remove of dirs.splice(0).reverse()) remove()
})

/** A fresh directory with a deputy home in it; on a 64 KiB tmpfs when `tmpfs`. */
const scratch = (tmpfs: boolean) => {
  const dir = mkdtempSync(join(tmpdir(), "deputy-chaos-disk-"))
  const home = join(dir, "home")
  mkdirSync(home)
  dirs.push(() => rmSync(dir, { recursive: true, force: true }))
  if (tmpfs) {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", home])
    dirs.push(() => execFileSync("umount", [home]))
  }
  return { dir, home }
}

/** Runs the child (under the file-size limit when `limitBlocks` is given); it must exit 0 within 30 s. */
const runChild = (home: string, cwd: string, limitBlocks?: number) =>
  new Promise<{ seen: Array<Event>; rolloutPath: string }>((resolve, reject) => {
    const node = [process.execPath, TSX, "--conditions=@deputy/source", CHILD, home, cwd, TURNS, PER_TURN, SIZE]
    const quoted = node.map((word) => `'${String(word).replaceAll("'", "'\\''")}'`).join(" ")
    // SIGXFSZ ignored before exec stays ignored in node: a write past the limit fails with EFBIG.
    const script =
      limitBlocks === undefined ? `exec ${quoted}` : `trap '' XFSZ; ulimit -f ${limitBlocks}; exec ${quoted}`
    const child = spawn("sh", ["-c", script], { stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk
    })
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk
    })
    const hung = setTimeout(() => child.kill("SIGKILL"), 30_000)
    child.on("close", (code, signal) => {
      clearTimeout(hung)
      if (code !== 0) return reject(new Error(`the child exited ${code ?? signal}: ${stderr}${stdout}`))
      const last = stdout.trim().split("\n").at(-1) ?? ""
      resolve(JSON.parse(last) as { seen: Array<Event>; rolloutPath: string })
    })
  })

const readRollout = (home: string, path: string) =>
  Effect.runPromise(
    Effect.flatMap(RolloutStore, (store) => store.read(path)).pipe(
      Effect.provide(RolloutStore.layer({ home })),
      Effect.provide(NodeContext.layer)
    )
  )

/** Every turn ended, the caller was told `reason`, and the disk holds a readable in-order prefix of what it saw. */
const expectKeptAndTold = async (home: string, run: { seen: Array<Event>; rolloutPath: string }, reason: RegExp) => {
  const { seen } = run
  expect(seen.filter((e) => e.msg.type === "turn_complete")).toHaveLength(TURNS)
  const told = seen.flatMap((e) => (e.msg.type === "error" || e.msg.type === "warning" ? [e.msg.message] : []))
  expect(told.length).toBeGreaterThan(0)
  // Only the disk went wrong: every error names the rollout and the reason.
  for (const message of told) expect(message).toMatch(reason)
  const said = seen.flatMap((e) => (e.msg.type === "agent_message" ? [e.msg.message] : []))
  expect(said).toHaveLength(TURNS * PER_TURN)
  const rollout = await readRollout(home, run.rolloutPath)
  const written = rollout.lines.flatMap((l) =>
    l.type === "event" && l.event.msg.type === "agent_message" ? [l.event.msg.message] : []
  )
  expect(written.length).toBeGreaterThan(0)
  expect(written.length).toBeLessThan(said.length) // the disk did fill
  expect(said.slice(0, written.length)).toEqual(written)
}

describe("chaos: the disk fills while a rollout is written", () => {
  it(
    `§20 ${isRoot ? "a 64 KiB tmpfs (root)" : "a 64 KiB file-size limit (not root)"}: the thread ends, the caller hears of it, every line on disk is kept in order`,
    { timeout: 60_000 },
    async () => {
      const { dir, home } = scratch(isRoot)
      const run = await runChild(home, dir, isRoot ? undefined : LIMIT_BLOCKS)
      await expectKeptAndTold(home, run, isRoot ? /rollout .*(ENOSPC|no space)/i : /rollout .*(EFBIG|file too large)/i)
    }
  )

  it(
    "§20 a 64 KiB file-size limit (ulimit -f, SIGXFSZ ignored): the write fails with EFBIG, the thread ends, the lines on disk are kept in order",
    { timeout: 60_000 },
    async () => {
      const { dir, home } = scratch(false)
      const run = await runChild(home, dir, LIMIT_BLOCKS)
      await expectKeptAndTold(home, run, /rollout append failed .*EFBIG: file too large/)
    }
  )
})
