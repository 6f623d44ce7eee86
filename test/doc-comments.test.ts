/**
 * Every exported name of every package has a doc comment: the names each package's index.ts exports,
 * and the members of the namespaces it exports (`export * as Delegate`), read with the TypeScript
 * compiler over the same sources TypeDoc documents (`pnpm run docs`); and TypeDoc itself builds them
 * with its warnings as errors (it also sees what the compiler walk does not: generated members).
 */
import { execFile } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import ts from "typescript"
import { assert, describe, it } from "vitest"

const repo = fileURLToPath(new URL("..", import.meta.url))
const packages = readdirSync(join(repo, "packages")).sort()

const hasDoc = (declaration: ts.Node): boolean =>
  ts.getJSDocCommentsAndTags(declaration).length > 0 ||
  // `/** … */ type Foo,` inside an export list: the comment sits before the specifier.
  (ts.getLeadingCommentRanges(declaration.getSourceFile().text, declaration.getFullStart()) ?? []).some((range) =>
    declaration.getSourceFile().text.startsWith("/**", range.pos)
  )

/** A module's own doc: its file opens with a /** comment. */
const moduleDoc = (file: ts.SourceFile) => file.text.trimStart().startsWith("/**")

/** Names exported by `moduleSymbol` (recursing into namespaces) that have no doc comment. */
const undocumented = (checker: ts.TypeChecker, moduleSymbol: ts.Symbol, prefix: string, seen: Set<ts.Symbol>) => {
  const missing: Array<string> = []
  for (const exported of checker.getExportsOfModule(moduleSymbol)) {
    const name = `${prefix}${exported.getName()}`
    const target = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported
    const declarations = [...(exported.declarations ?? []), ...(target.declarations ?? [])]
    const namespaceFile = target.declarations?.find(ts.isSourceFile)
    const documented = declarations.some(hasDoc) || (namespaceFile !== undefined && moduleDoc(namespaceFile))
    if (!documented) missing.push(name)
    if (namespaceFile !== undefined && !seen.has(target)) {
      seen.add(target)
      missing.push(...undocumented(checker, target, `${name}.`, seen))
    }
  }
  return missing
}

describe("doc comments", () => {
  it("every exported name of every package has one", () => {
    const config = ts.getParsedCommandLineOfConfigFile(
      join(repo, "tsconfig.docs.json"),
      {},
      {
        ...ts.sys,
        onUnRecoverableConfigFileDiagnostic: (d) => assert.fail(ts.flattenDiagnosticMessageText(d.messageText, "\n"))
      }
    )
    assert.isDefined(config)
    // Each package's public entry, as its package.json names it for the source condition.
    const entries = packages.map((name) => {
      const manifest = JSON.parse(readFileSync(join(repo, "packages", name, "package.json"), "utf8"))
      return join(repo, "packages", name, manifest.exports["."]["@deputy/source"])
    })
    const program = ts.createProgram({ rootNames: entries, options: config?.options ?? {} })
    const checker = program.getTypeChecker()
    const missing = entries.flatMap((entry, i) => {
      const file = program.getSourceFile(entry)
      const symbol = file === undefined ? undefined : checker.getSymbolAtLocation(file)
      assert.isDefined(symbol, entry)
      return symbol === undefined ? [] : undocumented(checker, symbol, `@deputy/${packages[i]}: `, new Set())
    })
    assert.deepStrictEqual(missing, [])
  }, 120_000)

  it("pnpm run docs passes: TypeDoc finds nothing undocumented, unexported or broken", async () => {
    const typedoc = join(repo, "node_modules/typedoc/bin/typedoc")
    const ran = await promisify(execFile)(process.execPath, [typedoc, "--emit", "none"], {
      cwd: repo,
      timeout: 170_000
    }).catch((error: { stdout?: string; stderr?: string; code?: number }) => error)
    assert.strictEqual("code" in ran ? ran.code : 0, 0, `${ran.stdout ?? ""}${ran.stderr ?? ""}`)
  }, 180_000)
})
