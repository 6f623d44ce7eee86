/**
 * Helpers for tests that run examples the way a user would: a TypeScript file run by `node` with
 * tsx in a process of its own, and `tsc` over files outside the workspace's projects.
 */
import { execFile } from "node:child_process"
import { mkdir, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { promisify } from "node:util"

const execFileAsync = promisify(execFile)

/** The repository's root folder. */
export const repoRoot = fileURLToPath(new URL("..", import.meta.url))

const tsxLoader = pathToFileURL(join(repoRoot, "node_modules/tsx/dist/loader.mjs")).href

/** Runs `file` with node + tsx (workspace sources, not dist) and resolves to its stdout; rejects on a non-zero exit. */
export const runTs = async (
  file: string,
  options: { readonly cwd: string; readonly env?: Readonly<Record<string, string>>; readonly timeout?: number }
): Promise<string> => {
  const { stdout } = await execFileAsync(
    process.execPath,
    ["--conditions=@deputy/source", "--import", tsxLoader, file],
    { cwd: options.cwd, env: { ...process.env, ...options.env }, timeout: options.timeout ?? 60_000 }
  )
  return stdout
}

/** Type-checks `files` as a strict NodeNext project of their own (types from the packages' dist). Rejects with tsc's output. */
export const typecheck = async (folder: string, files: ReadonlyArray<string>): Promise<void> => {
  await mkdir(folder, { recursive: true })
  const config = {
    compilerOptions: {
      target: "ES2022",
      lib: ["ES2022", "ESNext.Disposable"],
      module: "NodeNext",
      moduleResolution: "NodeNext",
      strict: true,
      skipLibCheck: true,
      noEmit: true,
      types: ["node"]
    },
    files
  }
  await writeFile(join(folder, "tsconfig.json"), JSON.stringify(config, null, 2))
  const tsc = join(repoRoot, "node_modules/typescript/bin/tsc")
  await execFileAsync(process.execPath, [tsc, "-p", join(folder, "tsconfig.json")], { timeout: 120_000 }).catch(
    (error: { stdout?: string }) => Promise.reject(new Error(`tsc failed:\n${error.stdout ?? String(error)}`))
  )
}
