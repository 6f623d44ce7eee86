import { childEnvironment } from "@deputy/core"
import { describe, expect, it } from "vitest"
import { lineSplitter } from "../src/internal/lines.js"
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
})
