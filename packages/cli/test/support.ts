/**
 * Runs the BUILT `deputy` (packages/cli/bin/deputy.cjs over dist) as a child process, the way a user
 * does: `build()` in a beforeAll, then `deputy(args)` or `spawnDeputy(args)`; `inPty` runs it inside a
 * pseudo-terminal made by util-linux `script`.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { mkdir, mkdtemp, readdir, readFile, readlink, realpath, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"

const execFileAsync = promisify(execFile)

/** The repository's root folder. */
export const repoRoot = fileURLToPath(new URL("../../..", import.meta.url))
/** The built bin. */
export const bin = join(repoRoot, "packages/cli/bin/deputy.cjs")

/** Builds the CLI and what it needs (`tsc -b`; quick when nothing changed). */
export const build = async () => {
  // Test files run in parallel: one build at a time (a lock folder), so no two write dist together.
  const lock = join(repoRoot, ".tsbuild/cli-test-build.lock")
  await mkdir(join(repoRoot, ".tsbuild"), { recursive: true })
  for (let i = 0; ; i++) {
    try {
      await mkdir(lock)
      break
    } catch (error) {
      if ((error as { code?: string }).code !== "EEXIST" || i > 1200) throw error
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  try {
    await execFileAsync(process.execPath, [join(repoRoot, "node_modules/typescript/bin/tsc"), "-b", "packages/cli"], {
      cwd: repoRoot,
      timeout: 120_000
    })
  } finally {
    await rm(lock, { recursive: true, force: true })
  }
}

/** A scratch folder with `files` written in it, and DEPUTY_HOME inside it. */
export const scratch = async (files: Readonly<Record<string, string>> = {}) => {
  const dir = await mkdtemp(join(tmpdir(), "deputy-cli-"))
  await Promise.all(Object.entries(files).map(([name, text]) => writeFile(join(dir, name), text)))
  return {
    dir,
    env: { DEPUTY_HOME: join(dir, "home") },
    remove: () => rm(dir, { recursive: true, force: true })
  }
}

/** How a run of deputy ended. */
export interface Ran {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Starts deputy with `args` (stdin a pipe, closed unless `stdin` is "keep"). */
export const spawnDeputy = (
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly env?: Record<string, string>; readonly input?: string }
) => {
  const child = spawn(process.execPath, [bin, ...args], {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ["pipe", "pipe", "pipe"]
  })
  let stdout = ""
  let stderr = ""
  child.stdout.setEncoding("utf8").on("data", (d: string) => {
    stdout += d
  })
  child.stderr.setEncoding("utf8").on("data", (d: string) => {
    stderr += d
  })
  if (options.input !== undefined) child.stdin.end(options.input)
  const done = new Promise<Ran>((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })))
  return { child, done, out: () => stdout, err: () => stderr }
}

/** Runs deputy to its end. */
export const deputy = (
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly env?: Record<string, string>; readonly input?: string }
): Promise<Ran> => spawnDeputy(args, { ...options, input: options.input ?? "" }).done

/** Resolves once `read()` matches `pattern` (polled on the child's output events, not on a timer). */
export const waitFor = (child: ChildProcess, read: () => string, pattern: RegExp | string): Promise<void> =>
  new Promise((resolve, reject) => {
    const check = () => {
      const text = read()
      if (typeof pattern === "string" ? text.includes(pattern) : pattern.test(text)) {
        cleanup()
        resolve()
      }
    }
    const onClose = () => {
      cleanup()
      reject(new Error(`deputy ended before printing ${String(pattern)}:\n${read()}`))
    }
    const cleanup = () => {
      child.stdout?.off("data", check)
      child.stderr?.off("data", check)
      child.off("close", onClose)
    }
    child.stdout?.on("data", check)
    child.stderr?.on("data", check)
    child.on("close", onClose)
    check()
  })

/**
 * The pids of live processes whose command line contains `marker` (and, given `cwd`, that run in that
 * folder: other test files run their own `sleep 30` in parallel workers, each in its own folder).
 */
export const processesWith = async (marker: string, cwd?: string): Promise<Array<number>> => {
  const pids = (await readdir("/proc")).filter((p) => /^\d+$/.test(p))
  const folder = cwd === undefined ? undefined : await realpath(cwd)
  const found: Array<number> = []
  for (const pid of pids) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")
    if (!cmdline.split("\0").includes(marker)) continue
    if (folder !== undefined && (await readlink(`/proc/${pid}/cwd`).catch(() => undefined)) !== folder) continue
    found.push(Number(pid))
  }
  return found
}

/** The pid of the deputy process under `script` (its command line holds the bin path and `marker`). */
export const deputyPid = async (marker: string): Promise<number | undefined> => {
  const pids = (await readdir("/proc")).filter((p) => /^\d+$/.test(p))
  for (const pid of pids) {
    const args = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).split("\0")
    if (args[0] === process.execPath && args[1] === bin && args.includes(marker)) return Number(pid)
  }
  return undefined
}

/**
 * Runs deputy inside a pseudo-terminal (util-linux `script -qfec`, no install needed): what it draws
 * comes back on `out()`, keys go in with `type`. The exit code is deputy's (`-e`).
 */
export const inPty = (
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly env?: Record<string, string>; readonly columns?: number }
) => {
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`
  const command = [process.execPath, bin, ...args].map(quote).join(" ")
  const stty = `stty cols ${options.columns ?? 100} rows 40 2>/dev/null; exec ${command}`
  const child = spawn("script", ["-qfec", stty, "/dev/null"], {
    cwd: options.cwd,
    env: { ...process.env, ...options.env, TERM: "xterm-256color" },
    stdio: ["pipe", "pipe", "pipe"]
  })
  let out = ""
  child.stdout.setEncoding("utf8").on("data", (d: string) => {
    out += d
  })
  child.stderr.setEncoding("utf8").on("data", (d: string) => {
    out += d
  })
  const done = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)))
  return {
    child,
    done,
    out: () => out,
    type: (keys: string) => child.stdin.write(keys)
  }
}
