/**
 * The packages install like packages: every workspace package is packed with `pnpm pack` (which
 * builds it first and rewrites `workspace:*`), the tarballs are installed with npm into a fresh
 * project (`"type": "module"`, NodeNext, strict) next to the peer dependencies, and a consumer
 * using both the Promise API and the Effect API is type-checked and run with plain `node`.
 */
import { execFile } from "node:child_process"
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { afterAll, assert, beforeAll, describe, it } from "vitest"

const run = promisify(execFile)
const repo = fileURLToPath(new URL("..", import.meta.url))
const PEERS = ["effect@3.22.4", "@effect/platform@0.97.2", "@effect/platform-node@0.108.2", "zod@4.1.12"]

/** pnpm as the suite was started with (`pnpm test`), else the pinned one through npx. */
const pnpm = (args: ReadonlyArray<string>) => {
  const execPath = process.env.npm_execpath
  return execPath?.includes("pnpm")
    ? run(process.execPath, [execPath, ...args], { cwd: repo, maxBuffer: 64 * 1024 * 1024 })
    : run("npx", ["-y", "pnpm@10.34.9", ...args], { cwd: repo, maxBuffer: 64 * 1024 * 1024 })
}

let root: string
let project: string
let tarballs: Array<string>

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "deputy-pack-"))
  const packed = join(root, "tarballs")
  await pnpm(["-r", "pack", "--pack-destination", packed])
  tarballs = (await readdir(packed)).filter((f) => f.endsWith(".tgz")).map((f) => join(packed, f))
  project = join(root, "consumer")
  await mkdir(join(project, "src"), { recursive: true })
  await writeFile(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }))
  await writeFile(
    join(project, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        target: "ES2022",
        lib: ["ES2022", "ESNext.Disposable"],
        module: "NodeNext",
        moduleResolution: "NodeNext",
        strict: true,
        skipLibCheck: true,
        types: ["node"],
        rootDir: "src",
        outDir: "dist"
      },
      include: ["src"]
    })
  )
  await copyFile(join(repo, "test/pack-install/consumer.ts"), join(project, "src/consumer.ts"))
  // --prefer-offline: the npm cache answers when it can; @openai/codex (an optional peer) is not installed.
  await run(
    "npm",
    [
      "install",
      "--prefer-offline",
      "--no-audit",
      "--no-fund",
      "--loglevel=error",
      ...tarballs,
      ...PEERS,
      "@types/node@20.19.25"
    ],
    { cwd: project, maxBuffer: 64 * 1024 * 1024 }
  )
}, 240_000)

afterAll(async () => {
  if (root !== undefined) await rm(root, { recursive: true, force: true })
})

describe("pack and install", () => {
  it("every package packs with dist, types and no workspace: ranges; tests and build info stay out", async () => {
    const names = tarballs.map((t) => t.split("/").at(-1)).sort()
    assert.deepStrictEqual(names, [
      "deputy-cli-0.1.0.tgz",
      "deputy-codex-0.1.0.tgz",
      "deputy-core-0.1.0.tgz",
      "deputy-mock-model-0.1.0.tgz",
      "deputy-protocol-0.1.0.tgz",
      "deputy-scripted-0.1.0.tgz",
      "deputy-sdk-0.1.0.tgz"
    ])
    for (const name of ["sdk", "core", "protocol", "scripted", "codex"]) {
      const dir = join(project, "node_modules/@deputy", name)
      const pkg = JSON.parse(await readFile(join(dir, "package.json"), "utf8"))
      assert.strictEqual(pkg.types, "./dist/index.d.ts", name)
      assert.strictEqual(pkg.main, "./dist/index.js", name)
      assert.notMatch(JSON.stringify(pkg.dependencies ?? {}), /workspace:/, name)
      assert.isUndefined(pkg.dependencies?.effect, `${name}: effect is a peer`)
      const files = await readdir(join(dir, "dist"), { recursive: true })
      assert.include(files, "index.d.ts", name)
      assert.notInclude(files, ".tsbuildinfo", name)
      assert.isFalse((await readdir(dir)).includes("test"), `${name}: tests are not packed`)
    }
    const codex = JSON.parse(await readFile(join(project, "node_modules/@deputy/codex/package.json"), "utf8"))
    assert.deepStrictEqual(codex.peerDependenciesMeta["@openai/codex"], { optional: true })
    assert.isFalse((await readdir(join(project, "node_modules"))).includes("@openai"), "no Codex binary pulled in")
  })

  it("a project on the old moduleResolution node (no exports map) still finds the Promise API's types", async () => {
    await mkdir(join(project, "legacy"), { recursive: true })
    await writeFile(
      join(project, "legacy/check.ts"),
      [
        'import { Deputy, scripted, type RunResult } from "@deputy/sdk"',
        "export const run = async (): Promise<RunResult> => {",
        '  const thread = await new Deputy().startThread({ backend: scripted("turns: []") })',
        '  return thread.run("go")',
        "}",
        ""
      ].join("\n")
    )
    await writeFile(
      join(project, "tsconfig.legacy.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          lib: ["ES2022", "ESNext.Disposable"],
          module: "ES2022",
          moduleResolution: "node10",
          strict: true,
          skipLibCheck: true,
          noEmit: true,
          types: ["node"]
        },
        include: ["legacy"]
      })
    )
    await run(process.execPath, [join(repo, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.legacy.json"], {
      cwd: project
    }).catch((error: { stdout?: string }) => Promise.reject(new Error(`tsc failed:\n${error.stdout}`)))
  }, 60_000)

  it("a consumer type-checks (NodeNext, strict) and runs with plain node: approve, deny, cancel, clean up", async () => {
    await run(process.execPath, [join(repo, "node_modules/typescript/bin/tsc"), "-p", project], {
      cwd: project
    }).catch((error: { stdout?: string }) => Promise.reject(new Error(`tsc failed:\n${error.stdout}`)))
    const home = join(root, "home")
    const { stdout } = await run(process.execPath, [join(project, "dist/consumer.js"), home], {
      cwd: project,
      // Only node's own folder on PATH: no `codex` there for the optional-peer check.
      env: { ...process.env, PATH: dirname(process.execPath) },
      timeout: 60_000
    })
    const seen = JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}")
    assert.deepStrictEqual(seen.oneShot, {
      finalResponse: "review done",
      decisions: ["approved by policy", "denied by policy"],
      ran: ["approved command ran"]
    })
    assert.deepStrictEqual(seen.cancel, {
      error: "RunAborted",
      isDeputyError: true,
      callbackSignalAborted: true,
      commandRan: false,
      withdrawn: 1
    })
    assert.deepStrictEqual(seen.codexMissing, { tag: "CodexNotInstalled", namesPackage: true })
    assert.strictEqual(seen.effect, "from the Effect API")
    assert.deepStrictEqual(seen.left, [])
  }, 120_000)

  it("the deputy bin of the installed @deputy/cli tarball runs: a shebang'd dist, --version, a run with its exit code", async () => {
    const bin = join(project, "node_modules/.bin/deputy")
    const version = await run(bin, ["--version"], { cwd: project, timeout: 60_000 })
    assert.strictEqual(version.stdout.trim(), "0.1.0")
    await writeFile(
      join(project, "script.yaml"),
      "turns:\n  - steps:\n      - { type: exec, command: [echo, hi] }\n      - { type: message, text: from the tarball }\n"
    )
    const ran = await run(bin, ["run", "--script", "script.yaml", "hello"], {
      cwd: project,
      env: { ...process.env, DEPUTY_HOME: join(root, "cli-home") },
      timeout: 60_000
    })
    assert.strictEqual(ran.stdout, "from the tarball\n")
    assert.include(ran.stderr, "$ echo hi: denied by the policy's default")
    const bad = await run(bin, ["run", "--backend", "nope", "x"], { cwd: project, timeout: 60_000 }).then(
      () => undefined,
      (error: { code?: number; stderr?: string }) => error
    )
    assert.strictEqual(bad?.code, 2)
  }, 120_000)
})
