/**
 * Finds the Codex CLI to run. The npm package `@openai/codex` is a small node wrapper (`bin/codex.js`)
 * that picks the native binary from its per-platform optional dependency
 * (`@openai/codex-<platform>-<arch>/vendor/<target triple>/bin/codex`); running that binary directly
 * saves the wrapper's ~50 ms and one process between us and Codex.
 */
import { existsSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"

/** What to spawn: `file`, then `prefix` before the Codex arguments (the wrapper's path when node runs it). */
export interface CodexCommand {
  readonly file: string
  readonly prefix: ReadonlyArray<string>
}

const TRIPLES: Readonly<Record<string, string>> = {
  "linux-x64": "x86_64-unknown-linux-musl",
  "linux-arm64": "aarch64-unknown-linux-musl",
  "darwin-x64": "x86_64-apple-darwin",
  "darwin-arm64": "aarch64-apple-darwin",
  "win32-x64": "x86_64-pc-windows-msvc",
  "win32-arm64": "aarch64-pc-windows-msvc"
}

/**
 * The command that runs Codex: `explicit` when given; else the native binary of `@openai/codex`
 * resolved from `from` (default: this module); else its node wrapper; else `codex` on PATH.
 */
export const resolveCodexCommand = (explicit?: string, from: string = import.meta.url): CodexCommand => {
  if (explicit !== undefined) return { file: explicit, prefix: [] }
  let wrapperPackage: string
  try {
    wrapperPackage = createRequire(from).resolve("@openai/codex/package.json")
  } catch {
    return { file: "codex", prefix: [] }
  }
  const target = `${process.platform}-${process.arch}`
  const triple = TRIPLES[target]
  if (triple !== undefined) {
    try {
      const platformPackage = createRequire(wrapperPackage).resolve(`@openai/codex-${target}/package.json`)
      const exe = process.platform === "win32" ? "codex.exe" : "codex"
      const file = join(dirname(platformPackage), "vendor", triple, "bin", exe)
      if (existsSync(file)) return { file, prefix: [] }
    } catch {
      // no platform package: fall back to the wrapper
    }
  }
  return { file: process.execPath, prefix: [join(dirname(wrapperPackage), "bin", "codex.js")] }
}
