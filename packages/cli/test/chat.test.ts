/**
 * `deputy chat`, the built bin: lines on stdin are turns of one thread (approvals denied by default
 * when nobody is at a terminal); in a pseudo-terminal, approvals are asked inline, Ctrl-C interrupts
 * a turn (its command's process gone, the thread resumed for the next prompt), Ctrl-C at the prompt
 * ends the session with 130.
 */
import { existsSync } from "node:fs"
import { join } from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "vitest"
import { build, deputy, inPty, processesWith, scratch, waitFor } from "./support.js"

let box: Awaited<ReturnType<typeof scratch>>
beforeAll(async () => {
  await build()
  box = await scratch({
    "chat.yaml": [
      "turns:",
      "  - steps:",
      "      - { type: message, text: hello there }",
      "  - steps:",
      "      - { type: exec, command: [touch, chatted] }",
      "      - { type: message, text: touched }",
      "  - steps:",
      "      - { type: exec, command: [sleep, '27.1828'] }",
      "  - steps:",
      "      - { type: message, text: after the interrupt }",
      ""
    ].join("\n"),
    "policy.yaml": "exec:\n  - prefix: [sleep]\n    decision: approved\n"
  })
}, 120_000)
afterAll(() => box.remove())

describe("deputy chat", () => {
  it("lines on stdin are turns of one thread; with no terminal the approval is denied; exit 0 at the end", async () => {
    const r = await deputy(["chat", "--script", "chat.yaml"], { cwd: box.dir, env: box.env, input: "hi\ntouch it\n" })
    assert.strictEqual(r.code, 0, r.stderr)
    assert.strictEqual(r.stdout, "hello there\ntouched\n")
    assert.include(r.stderr, "$ touch chatted: denied by the policy's default")
    assert.isFalse(existsSync(join(box.dir, "chatted")))
  })

  it("in a terminal: `y` approves inline, Ctrl-C interrupts a turn and the chat goes on, Ctrl-C at the prompt ends it", async () => {
    const pty = inPty(["chat", "--script", "chat.yaml", "--policy", "policy.yaml"], { cwd: box.dir, env: box.env })
    await waitFor(pty.child, pty.out, "> ")
    pty.type("hi\r")
    await waitFor(pty.child, pty.out, "hello there")
    pty.type("touch it\r")
    await waitFor(pty.child, pty.out, /asks to run `touch chatted`/)
    pty.type("y\r")
    await waitFor(pty.child, pty.out, "touched")
    assert.isTrue(existsSync(join(box.dir, "chatted")))
    pty.type("be slow\r")
    await waitFor(pty.child, pty.out, "running: sleep 27.1828")
    pty.type("\u0003")
    await waitFor(pty.child, pty.out, "turn interrupted; thread")
    assert.deepStrictEqual(await processesWith("27.1828"), [], "the interrupted turn's command is gone")
    pty.type("go on\r")
    await waitFor(pty.child, pty.out, "after the interrupt")
    await waitFor(pty.child, pty.out, /after the interrupt[\s\S]*> /)
    pty.type("\u0003")
    assert.strictEqual(await pty.done, 130, pty.out())
    assert.include(pty.out(), "deputy: session ended (Ctrl-C)")
  })
})
