// The gate against a scripted sub-agent, tried as an attacker would (§28, §29, §32). Each case failed on
// main before the fix: the file outside was written, the caller's own approval ran the command, or the
// command saw the parent's secrets.
import { existsSync, mkdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Delegate, Parent } from "@deputy/core"
import { type FileChanges, Script, userText } from "@deputy/protocol"
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect, Stream } from "effect"
import type { z } from "zod"
import { Scripted } from "../src/index.js"
import { answerAll, messagesOf, playTurn, THREAD, takeUntil, types } from "./fixtures/harness.js"

const script = (input: z.input<typeof Script>) => Script.parse(input)

layer(NodeContext.layer, { excludeTestServices: true })("the gate, scripted", (it) => {
  /** A workspace `ws` and a folder `outside` beside it, both real paths. */
  const sandbox = Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const root = realpathSync(yield* fs.makeTempDirectoryScoped({ prefix: "deputy-scripted-gate-" }))
    const cwd = join(root, "ws")
    const outside = join(root, "outside")
    mkdirSync(cwd)
    mkdirSync(outside)
    writeFileSync(join(cwd, "notes.md"), "a\n")
    return { cwd, outside }
  })

  const update = (movePath?: string): FileChanges[string] => ({
    type: "update",
    unifiedDiff: "@@ -1 +1 @@\n-a\n+b\n",
    ...(movePath === undefined ? {} : { movePath })
  })

  it.scoped("§28 a patch that lands outside the workspace is refused unasked, even when everything is approved", () =>
    Effect.gen(function* () {
      const { cwd, outside } = yield* sandbox
      symlinkSync(outside, join(cwd, "escape"))
      const attacks: ReadonlyArray<[string, FileChanges, string]> = [
        ["absolute", { [join(outside, "abs.md")]: { type: "add", content: "x" } }, "abs.md"],
        ["../", { "../outside/up.md": { type: "add", content: "x" } }, "up.md"],
        ["symlink", { "escape/link.md": { type: "add", content: "x" } }, "link.md"],
        ["movePath", { "notes.md": update(join(outside, "moved.md")) }, "moved.md"]
      ]
      for (const [name, changes, landed] of attacks) {
        const agent = yield* Scripted.spawn(script({ turns: [{ steps: [{ type: "patch", changes }] }] }), {
          threadId: THREAD,
          cwd
        })
        yield* takeUntil(agent, (event) => event.msg.type === "session_configured")
        const events = yield* playTurn(agent, "t1", answerAll("approved"))
        assert.deepStrictEqual(types(events), ["turn_started", "warning", "turn_complete"], name)
        assert.include(messagesOf(events, "warning")[0]?.message ?? "", landed, name)
        assert.isFalse(existsSync(join(outside, landed)), `${name}: written outside`)
      }
      assert.strictEqual(readFileSync(join(cwd, "notes.md"), "utf8"), "a\n")
    })
  )

  it.scoped("§28 approved_for_session for notes.md does not approve notes.md moved elsewhere", () =>
    Effect.gen(function* () {
      const { cwd } = yield* sandbox
      const agent = yield* Scripted.spawn(
        script({
          turns: [
            {
              steps: [
                { type: "patch", changes: { "notes.md": update() } },
                { type: "patch", changes: { "notes.md": { type: "update", unifiedDiff: "@@ -1 +1 @@\n-b\n+c\n" } } },
                {
                  type: "patch",
                  changes: { "notes.md": { type: "update", unifiedDiff: "@@ -1 +1 @@\n-c\n+d\n", movePath: "x.md" } }
                }
              ]
            }
          ]
        }),
        { threadId: THREAD, cwd }
      )
      yield* takeUntil(agent, (event) => event.msg.type === "session_configured")
      const events = yield* playTurn(agent, "t1", answerAll("approved_for_session"))
      // Asked for the first and the third (a new set of paths), not the second (the same set).
      assert.deepStrictEqual(
        messagesOf(events, "apply_patch_approval_request").map((m) => m.callId),
        ["call-0-0", "call-0-2"]
      )
      assert.deepStrictEqual(
        messagesOf(events, "patch_apply_begin").map((m) => m.autoApproved),
        [false, true, false]
      )
      assert.strictEqual(readFileSync(join(cwd, "x.md"), "utf8"), "d\n")
    })
  )

  it.scoped("§32 a command sees only the allowlisted environment, plus what the backend adds", () =>
    Effect.gen(function* () {
      const { cwd } = yield* sandbox
      process.env.AWS_SECRET_ACCESS_KEY = "leaked-if-you-see-this"
      yield* Effect.addFinalizer(() => Effect.sync(() => delete process.env.AWS_SECRET_ACCESS_KEY))
      const agent = yield* Scripted.spawn(script({ turns: [{ steps: [{ type: "exec", command: ["env"] }] }] }), {
        threadId: THREAD,
        cwd,
        env: { GIVEN_ON_PURPOSE: "yes" }
      })
      yield* takeUntil(agent, (event) => event.msg.type === "session_configured")
      const events = yield* playTurn(agent, "t1", answerAll("approved"))
      const output = messagesOf(events, "exec_command_end")[0]?.stdout ?? ""
      const names = output
        .split("\n")
        .filter((line) => line.includes("="))
        .map((line) => line.slice(0, line.indexOf("=")))
      assert.notInclude(output, "leaked-if-you-see-this")
      assert.include(names, "PATH")
      assert.include(names, "GIVEN_ON_PURPOSE")
      for (const name of names) {
        assert.isTrue(
          ["PATH", "HOME", "CODEX_HOME", "LANG", "TMPDIR", "GIVEN_ON_PURPOSE", "PWD", "SHLVL", "_"].includes(name) ||
            name.startsWith("LC_") ||
            name.startsWith("DEPUTY_"),
          `${name} leaked into the child`
        )
      }
    })
  )

  it.scoped("§29 a caller approving its own sub-agent's command is refused; the parent's denial stands", () =>
    Effect.gen(function* () {
      const { cwd } = yield* sandbox
      let asked = 0
      let deny: (decision: string) => void = () => {}
      let onAsked: () => void = () => {}
      const wasAsked = new Promise<void>((resolve) => {
        onAsked = resolve
      })
      const backend = Scripted.backend(
        script({
          turns: [
            {
              steps: [
                { type: "exec", command: ["touch", "pwned"] },
                { type: "message", text: "done" }
              ]
            }
          ]
        }),
        { cwd }
      )
      const delegate = yield* Delegate.interactive(backend.spawn({ threadId: THREAD })).pipe(
        Effect.provide(
          Parent.layerCallbacks({
            // The parent takes its time (until the forgery was tried), then denies.
            execApproval: () => {
              asked++
              onAsked()
              return new Promise((resolve) => {
                deny = resolve
              })
            }
          })
        )
      )
      yield* delegate.submit(userText("go"), "t1")
      yield* Effect.promise(() => wasAsked)
      // The attack: the caller answers the request it can guess the id of, while the parent thinks.
      const forged = yield* Effect.flip(
        delegate.submit({ type: "exec_approval", id: "call-0-0", turnId: "t1", decision: "approved" })
      )
      deny("denied")
      assert.strictEqual(forged._tag, "CallerCannotAnswer")
      const seen = yield* Stream.runCollect(
        delegate.events.pipe(Stream.takeUntil((event) => event.msg.type === "turn_complete"))
      )
      assert.notInclude(
        [...seen].map((event) => event.msg.type),
        "exec_command_begin"
      )
      assert.strictEqual(asked, 1)
      assert.isFalse(existsSync(join(cwd, "pwned")))
    })
  )
})
