/**
 * deputy in a real pseudo-terminal (util-linux `script`, present on the machine; no install): inline
 * approvals answered by typing, and Ctrl-C typed while an approval waits.
 */
import { existsSync } from "node:fs"
import { join } from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "vitest"
import { build, inPty, scratch, waitFor } from "./support.js"

let box: Awaited<ReturnType<typeof scratch>>
beforeAll(async () => {
  await build()
  box = await scratch({
    "two.yaml":
      "turns:\n  - steps:\n      - { type: exec, command: [touch, first] }\n      - { type: exec, command: [touch, second] }\n      - { type: message, text: done }\n",
    "guarded.yaml": "turns:\n  - steps:\n      - { type: exec, command: [touch, never] }\n"
  })
}, 120_000)
afterAll(() => box.remove())

describe("deputy run in a terminal", () => {
  it("asks inline (command, cwd, which sub-agent); `y` then `n` decide as typed", async () => {
    const pty = inPty(["run", "--script", "two.yaml", "go"], { cwd: box.dir, env: box.env })
    await waitFor(pty.child, pty.out, /sub-agent \w+ asks to run `touch first` in \S+\. Allow\?/)
    pty.type("y\r")
    await waitFor(pty.child, pty.out, /asks to run `touch second`/)
    pty.type("n\r")
    assert.strictEqual(await pty.done, 0, pty.out())
    assert.include(pty.out(), "$ touch first: approved by you")
    assert.include(pty.out(), "$ touch second: denied by you")
    assert.isTrue(existsSync(join(box.dir, "first")))
    assert.isFalse(existsSync(join(box.dir, "second")))
  })

  it("Ctrl-C while an approval waits: the command never runs, exit 130", async () => {
    const pty = inPty(["run", "--script", "guarded.yaml", "again"], { cwd: box.dir, env: box.env })
    await waitFor(pty.child, pty.out, /asks to run `touch never`/)
    pty.type("\u0003")
    assert.strictEqual(await pty.done, 130, pty.out())
    assert.include(pty.out(), "deputy: cancelled")
    assert.include(pty.out(), "$ touch never: withdrawn")
    assert.isFalse(existsSync(join(box.dir, "never")))
    assert.notInclude(pty.out(), "warning")
  })
})
