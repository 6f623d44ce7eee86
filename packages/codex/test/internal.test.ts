import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { childEnvironment } from "@deputy/core"
import { Effect, Exit, Fiber, Option, Scope } from "effect"
import { describe, expect, it } from "vitest"
import { HeldScheduler } from "../../core/test/fixtures/HeldScheduler.js"
import { spawnChild } from "../src/internal/childProcess.js"
import { LineTooLong, lineSplitter } from "../src/internal/lines.js"
import { shellWords } from "../src/internal/shellWords.js"

describe("codex internals", () => {
  it("shellWords splits a shell string the way a shell would", () => {
    expect(shellWords("/bin/bash -lc 'printf deputy > out.txt'")).toEqual([
      "/bin/bash",
      "-lc",
      "printf deputy > out.txt"
    ])
    expect(shellWords(`echo "a \\"b\\"" c\\ d ''`)).toEqual(["echo", 'a "b"', "c d", ""])
    expect(shellWords("echo 'unbalanced")).toEqual(["echo 'unbalanced"])
    expect(shellWords("   ")).toEqual([])
  })

  it("childEnvironment passes only the allowlist plus what the caller adds", () => {
    const parent = { PATH: "/bin", HOME: "/h", LC_ALL: "C", OPENAI_API_KEY: "secret", AWS_SECRET: "x" }
    expect(childEnvironment({ CODEX_HOME: "/c", EXTRA: "1", HOME: undefined }, parent)).toEqual({
      PATH: "/bin",
      LC_ALL: "C",
      CODEX_HOME: "/c",
      EXTRA: "1"
    })
  })

  it("lineSplitter joins lines cut across chunks and keeps an unterminated tail", () => {
    const split = lineSplitter()
    expect(split.push("a\r\nb")).toEqual(["a"])
    expect(split.push("c\n\nd")).toEqual(["bc", ""])
    expect(split.end()).toBe("d")
  })

  it("§36 lineSplitter fails with LineTooLong once a line, across chunks or whole, passes the bound", () => {
    const split = lineSplitter({ maxLength: 10, source: "test stdout" })
    expect(split.push("0123456789\r\n")).toEqual(["0123456789"]) // exactly the bound is fine
    expect(split.push("012345")).toEqual([])
    const error = split.push("6789XY") // 12: past the bound and its slack for a trailing CR
    expect(error).toBeInstanceOf(LineTooLong)
    expect((error as LineTooLong).message).toContain("test stdout is longer than 10 characters")
    expect(split.push("\nfine\n")).toBe(error) // it stays failed
    const whole = lineSplitter({ maxLength: 10 })
    expect(whole.push(`${"y".repeat(12)}\n`)).toBeInstanceOf(LineTooLong)
  })

  it("a child node refuses to start (a NUL byte in its environment) is a SpawnError, not a defect", async () => {
    const exit = await Effect.runPromiseExit(
      Effect.scoped(spawnChild({ file: "true", args: [], cwd: "/", env: { BAD: "a\u0000b" }, grace: "1 second" }))
    )
    expect(Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error.reason : exit).toContain("null bytes")
  })

  it("a child that exits before its starting fiber runs again still has its exit seen", async () => {
    const dir = mkdtempSync(join(tmpdir(), "deputy-exit-"))
    const pidFile = join(dir, "pid")
    const held = new HeldScheduler()
    const scope = Effect.runSync(Scope.make())
    try {
      const starting = Effect.runFork(
        spawnChild({
          file: "sh",
          args: ["-c", `echo $$ > ${pidFile}; exit 3`],
          cwd: dir,
          env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
          grace: "1 second"
        }).pipe(Scope.extend(scope), Effect.withScheduler(held)),
        { immediate: true }
      )
      // The spawn ran in the fork's first steps; what follows it waits until the child is gone.
      held.hold()
      const until = async (done: () => boolean) => {
        for (let i = 0; i < 1000 && !done(); i++) await new Promise((resolve) => setTimeout(resolve, 5))
        expect(done()).toBe(true)
      }
      await until(() => existsSync(pidFile) && readFileSync(pidFile, "utf8").endsWith("\n"))
      const pid = Number(readFileSync(pidFile, "utf8"))
      // Reaped by Node (and its exit event emitted) once the pid is free.
      await until(() => {
        try {
          process.kill(pid, 0)
          return false
        } catch {
          return true
        }
      })
      held.release()
      const child = await Effect.runPromise(Fiber.join(starting))
      const exit = await Effect.runPromise(Effect.timeoutOption(child.exit, "2 seconds"))
      expect(Option.getOrUndefined(exit)).toEqual({ code: 3, signal: null })
    } finally {
      await Effect.runPromise(Scope.close(scope, Exit.void))
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
