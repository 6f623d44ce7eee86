// The gate as an attacker tries it (§28–§30): a caller answering for the parent, a backend reusing a
// pending request's id, and patches that write outside the workspace. Each failed on main before the fix.
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { FileChanges, Op, ReviewDecision, Submission } from "@deputy/protocol"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Layer, Queue, Stream } from "effect"
import { ApprovalRegistry, Delegate, ParentLog, policy } from "../src/index.js"
import { Parent, type PatchApprovalRequest } from "../src/Parent.js"
import { confinePatch } from "../src/Workspace.js"
import { makeFakeAgent, THREAD, takeUntil } from "./fixtures/FakeAgent.js"
import { makeManualParent } from "./fixtures/ManualParent.js"

/** A temp folder with a workspace inside it and a sibling folder outside it; removed with the scope. */
const sandbox = Effect.acquireRelease(
  Effect.sync(() => {
    const root = realpathSync(mkdtempSync(join(tmpdir(), "deputy-gate-")))
    const cwd = join(root, "ws")
    const outside = join(root, "outside")
    mkdirSync(join(cwd, "docs"), { recursive: true })
    mkdirSync(outside)
    return { root, cwd, outside }
  }),
  ({ root }) => Effect.sync(() => rmSync(root, { recursive: true, force: true }))
)

const answersOf = (subs: ReadonlyArray<Submission>) =>
  subs.filter((s) => s.op.type === "patch_approval" || s.op.type === "exec_approval").map((s) => s.op)

const recordingPolicy = (input: Parameters<typeof policy>[0]) =>
  Layer.provide(Parent.layerRecording, Parent.layerPolicy(policy(input)))

describe("§29 only the parent answers", () => {
  const answers: ReadonlyArray<Op> = [
    { type: "exec_approval", id: "call-0-0", decision: "approved" },
    { type: "patch_approval", id: "call-0-1", decision: "approved_for_session" },
    { type: "user_input_answer", id: "t1", response: { answers: { q: { answers: ["yes"] } } } }
  ]

  it.scoped("a caller submitting its sub-agent's approval gets CallerCannotAnswer; the agent never sees it", () =>
    Effect.gen(function* () {
      const manual = yield* makeManualParent
      const fake = yield* makeFakeAgent()
      const delegate = yield* Delegate.interactive(Effect.succeed(fake.agent)).pipe(Effect.provide(manual.layer))
      yield* fake.emit("t1", {
        type: "exec_approval_request",
        callId: "call-0-0",
        turnId: "t1",
        command: ["rm", "-rf", "/important"],
        cwd: "/work"
      })
      const asked = yield* Queue.take(manual.requests)
      for (const op of answers) {
        const refused = yield* Effect.flip(delegate.submit(op))
        assert.strictEqual(refused._tag, "CallerCannotAnswer")
        assert.include(refused.message, op.type)
      }
      // The parent's answer is the one the agent gets.
      yield* manual.answer(asked.requestId, "denied")
      const received = yield* takeUntil(fake.submissions, "exec_approval")
      assert.deepStrictEqual(answersOf(received), [
        { type: "exec_approval", id: "call-0-0", turnId: "t1", decision: "denied" }
      ])
    })
  )
})

describe("§30 one request, one answer", () => {
  it.scoped("a second pending request under the same id is never asked nor answered with the first's decision", () =>
    Effect.gen(function* () {
      const fake = yield* makeFakeAgent()
      const delegate = yield* Delegate.interactive(Effect.succeed(fake.agent))
      const request = (command: Array<string>) => ({
        type: "exec_approval_request" as const,
        callId: "item-1",
        turnId: "t1",
        command,
        cwd: "/work"
      })
      yield* fake.emit("t1", request(["ls"]))
      yield* fake.emit("t1", request(["rm", "-rf", "/important"]))
      const warned = yield* delegate.take
      assert.strictEqual(warned.msg.type, "error")
      assert.include(warned.msg.type === "error" ? warned.msg.message : "", "exec:item-1")
      const received = yield* takeUntil(fake.submissions, "exec_approval")
      assert.deepStrictEqual(answersOf(received), [
        { type: "exec_approval", id: "item-1", turnId: "t1", decision: "approved" }
      ])
      const log = yield* (yield* ParentLog).entries
      assert.deepStrictEqual(
        log.map((entry) => (entry.request.kind === "exec" ? entry.request.command : [])),
        [["ls"]]
      )
    }).pipe(Effect.provide(recordingPolicy({ exec: [{ prefix: ["ls"], decision: "approved" }] })))
  )

  it.scoped("the registry refuses a request whose id is already pending and keeps listing the first", () =>
    Effect.gen(function* () {
      const registry = yield* ApprovalRegistry
      const parent = yield* Parent
      const exec = (command: Array<string>) => ({
        kind: "exec" as const,
        requestId: `${THREAD}:item-1`,
        threadId: THREAD,
        turnId: "t1",
        path: [THREAD],
        command,
        cwd: "/work"
      })
      const first = yield* Effect.fork(parent.requestExecApproval(exec(["ls"])))
      yield* registry.changes.pipe(
        Stream.filter((list) => list.length > 0),
        Stream.take(1),
        Stream.runDrain
      )
      const second = yield* Effect.flip(parent.requestExecApproval(exec(["rm", "-rf", "/important"])))
      assert.strictEqual(second._tag, "ParentFailed")
      const pending = yield* registry.pending
      assert.deepStrictEqual(
        pending.map((p) => (p.request.kind === "exec" ? p.request.command : [])),
        [["ls"]]
      )
      yield* registry.decide(`${THREAD}:item-1`, "approved")
      assert.strictEqual(yield* first.await.pipe(Effect.flatten), "approved")
    }).pipe(Effect.provide(Layer.provide(ApprovalRegistry.layer, Parent.layerCallbacks({}))))
  )
})

describe("§28 patches are confined to the workspace", () => {
  const add = (content = "x"): FileChanges[string] => ({ type: "add", content })
  const update = (movePath?: string): FileChanges[string] => ({
    type: "update",
    unifiedDiff: "@@ -1 +1 @@\n-a\n+b\n",
    ...(movePath === undefined ? {} : { movePath })
  })

  /** Plays one patch request through a delegate under a `**` policy; returns the agent's answer and the caller's events. */
  const attempt = (cwd: string, changes: FileChanges) =>
    Effect.gen(function* () {
      const fake = yield* makeFakeAgent({ workspace: { cwd } })
      const delegate = yield* Delegate.interactive(Effect.succeed(fake.agent))
      yield* fake.emit("t1", { type: "apply_patch_approval_request", callId: "p1", turnId: "t1", changes })
      const answer = answersOf(yield* takeUntil(fake.submissions, "patch_approval"))[0]
      yield* fake.emit("t1", { type: "turn_complete", turnId: "t1" })
      const seen = yield* delegate.take
      return { answer, seen, asked: (yield* (yield* ParentLog).entries).length }
    }).pipe(Effect.provide(recordingPolicy({ patch: [{ glob: "**", decision: "approved" }] })))

  const outsideCases = (cwd: string, outside: string): ReadonlyArray<[string, FileChanges]> => [
    ["an absolute path", { [join(outside, "evil.md")]: add() }],
    ["a ../ path", { "../outside/evil.md": add() }],
    ["a path through a symlink pointing out", { "escape/evil.md": add() }],
    ["a movePath outside", { "docs/notes.md": update(join(outside, "bashrc")) }],
    ["a relative movePath climbing out", { "docs/notes.md": update("docs/../../outside/x") }],
    ["a dangling symlink", { dangling: add() }],
    ["the cwd itself", { [cwd]: add() }],
    // A `..` after a symlink: the kernel climbs from where the link points, a normalising writer from
    // the link's folder. Denied when either reading lands outside, whichever way the path is written.
    ["a `..` after a link out (the kernel lands outside)", { "deep-out/../evil.md": add() }],
    ["the same, absolute", { [`${cwd}/deep-out/../evil.md`]: add() }],
    ["a `..` after a link deeper in (a normalising writer lands outside)", { [`${cwd}/deep-in/../../evil.md`]: add() }],
    ["the same, relative", { "deep-in/../../evil.md": add() }]
  ]

  it.scoped("every path that lands outside is denied before the parent is asked, naming the path", () =>
    Effect.gen(function* () {
      const { cwd, outside } = yield* sandbox
      symlinkSync(outside, join(cwd, "escape"))
      symlinkSync(join(outside, "not-yet"), join(cwd, "dangling"))
      mkdirSync(join(outside, "deep"))
      symlinkSync(join(outside, "deep"), join(cwd, "deep-out"))
      mkdirSync(join(cwd, "a", "b"), { recursive: true })
      symlinkSync(join(cwd, "a", "b"), join(cwd, "deep-in"))
      for (const [name, changes] of outsideCases(cwd, outside)) {
        const { answer, seen, asked } = yield* Effect.scoped(attempt(cwd, changes))
        assert.deepStrictEqual(answer, { type: "patch_approval", id: "p1", decision: "denied" }, name)
        assert.strictEqual(asked, 0, `${name}: the parent was asked`)
        assert.strictEqual(seen.msg.type, "warning", name)
        const path = Object.entries(changes).flatMap(([p, c]) =>
          c.type === "update" && c.movePath ? [c.movePath] : [p]
        )
        assert.include(seen.msg.type === "warning" ? seen.msg.message : "", path[0]!, name)
      }
    })
  )

  it.scoped("a path inside is asked, and globs see it relative to the real cwd", () =>
    Effect.gen(function* () {
      const { cwd } = yield* sandbox
      const asked: Array<PatchApprovalRequest> = []
      const fake = yield* makeFakeAgent({ workspace: { cwd } })
      yield* Delegate.interactive(Effect.succeed(fake.agent)).pipe(
        Effect.provide(
          Parent.layerCallbacks({
            patchApproval: (request) => {
              asked.push(request)
              return "approved"
            }
          })
        )
      )
      yield* fake.emit("t1", {
        type: "apply_patch_approval_request",
        callId: "p1",
        turnId: "t1",
        changes: { [join(cwd, "docs/a.md")]: add(), "docs/./b.md": update("c.md") }
      })
      const answer = answersOf(yield* takeUntil(fake.submissions, "patch_approval"))
      assert.deepStrictEqual(answer, [{ type: "patch_approval", id: "p1", decision: "approved" }])
      assert.deepStrictEqual(asked[0]?.paths, ["c.md", "docs/a.md", "docs/b.md"])
      assert.strictEqual(asked[0]?.cwd, cwd)
    })
  )

  it.effect("a glob like **/*.md never sees an absolute path outside: it is denied first", () =>
    Effect.gen(function* () {
      const { cwd } = yield* sandbox
      const error = yield* Effect.flip(confinePatch({ cwd }, { "/etc/cron.d/evil.md": add() }))
      assert.strictEqual(error._tag, "OutsideWorkspace")
      assert.strictEqual(error.resolved, "/etc/cron.d/evil.md")
      // An added root is inside; its paths stay absolute so a cwd-relative glob does not match them by accident.
      const { outside } = yield* sandbox
      const confined = yield* confinePatch({ cwd, writableRoots: [outside] }, { [join(outside, "x.md")]: add() })
      assert.deepStrictEqual(confined.relative, [join(outside, "x.md")])
    }).pipe(Effect.scoped)
  )

  it.scoped("approved_for_session covers the exact set of resolved paths: a new movePath is asked again", () =>
    Effect.gen(function* () {
      const { cwd, outside } = yield* sandbox
      const decisions: Array<ReviewDecision> = ["approved_for_session", "denied"]
      const asked: Array<ReadonlyArray<string>> = []
      const fake = yield* makeFakeAgent({ workspace: { cwd } })
      yield* Delegate.interactive(Effect.succeed(fake.agent)).pipe(
        Effect.provide(
          Parent.layerCallbacks({
            patchApproval: (request) => {
              asked.push(request.paths)
              return decisions[asked.length - 1]
            }
          })
        )
      )
      const patch = (callId: string, changes: FileChanges) =>
        fake
          .emit("t1", { type: "apply_patch_approval_request", callId, turnId: "t1", changes })
          .pipe(Effect.zipRight(takeUntil(fake.submissions, "patch_approval")), Effect.map(answersOf))
      assert.deepStrictEqual(yield* patch("p1", { "notes.md": update() }), [
        { type: "patch_approval", id: "p1", decision: "approved_for_session" }
      ])
      // The same file again: remembered.
      assert.deepStrictEqual(yield* patch("p2", { "./notes.md": update() }), [
        { type: "patch_approval", id: "p2", decision: "approved_for_session" }
      ])
      // The same file moved somewhere else in the workspace: a different set, so asked (and denied).
      assert.deepStrictEqual(yield* patch("p3", { "notes.md": update("moved.md") }), [
        { type: "patch_approval", id: "p3", decision: "denied" }
      ])
      // The same file moved out of the workspace: denied before asking.
      assert.deepStrictEqual(yield* patch("p4", { "notes.md": update(join(outside, ".bashrc")) }), [
        { type: "patch_approval", id: "p4", decision: "denied" }
      ])
      assert.deepStrictEqual(asked, [["notes.md"], ["moved.md", "notes.md"]])
      assert.isTrue(Chunk.isEmpty(yield* Queue.takeAll(fake.submissions)))
    })
  )
})
