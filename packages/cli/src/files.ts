/**
 * Reading the files a command is given: policies and pipelines (YAML, or JSON, which YAML reads too)
 * and scripts. A bad file is one CliError line naming the file, the line and the field; the `yaml`
 * document API (with a LineCounter) says where each field is.
 */
import { readFile } from "node:fs/promises"
import { decodePolicy, Policy } from "@deputy/sdk/core"
import { Effect, Either } from "effect"
import { type Document, LineCounter, parseDocument } from "yaml"
import { usage } from "./errors.js"

/** The text of `path`, or a usage error naming the option it came from and what is wrong. */
export const readText = async (path: string, what: string): Promise<string> => {
  try {
    return await readFile(path, "utf8")
  } catch (error) {
    const code = (error as { code?: string }).code
    const why = code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a folder, not a file" : String(code)
    throw usage(`${what} ${path}: ${why}`)
  }
}

/** A parsed YAML/JSON file and where each of its fields is. */
export interface YamlFile {
  readonly path: string
  readonly value: unknown
  /** `path:line` of the field at `fieldPath` (dotted, `steps.2.prompt`), or of its closest existing parent. */
  readonly where: (fieldPath: string) => string
}

/** Parses `text` (YAML or JSON) from `path`; a syntax error is a usage error with its line and column. */
export const parseYaml = (path: string, text: string): YamlFile => {
  const lineCounter = new LineCounter()
  let document: Document
  try {
    document = parseDocument(text, { lineCounter, prettyErrors: false })
  } catch (error) {
    throw usage(`${path}: not YAML or JSON (${error instanceof Error ? error.message : String(error)})`)
  }
  const first = document.errors[0]
  if (first !== undefined) {
    const at = lineCounter.linePos(first.pos[0])
    throw usage(`${path}:${at.line}:${at.col}: ${first.message.split("\n")[0]}`)
  }
  let value: unknown
  try {
    value = document.toJS({ maxAliasCount: 100 })
  } catch (error) {
    throw usage(`${path}: ${error instanceof Error ? error.message : String(error)}`)
  }
  const where = (fieldPath: string): string => {
    const parts: Array<string | number> = fieldPath === "" || fieldPath === "(root)" ? [] : fieldPath.split(".")
    while (parts.length > 0) {
      const node = document.getIn(
        parts.map((p) => (typeof p === "string" && /^\d+$/.test(p) ? Number(p) : p)),
        true
      ) as { range?: [number, number, number] } | undefined
      if (node?.range !== undefined) return `${path}:${lineCounter.linePos(node.range[0]).line}`
      parts.pop()
    }
    const root = document.contents as { range?: [number, number, number] } | null
    return `${path}:${root?.range === undefined ? 1 : lineCounter.linePos(root.range[0]).line}`
  }
  return { path, value, where }
}

/**
 * One usage error for the first of `issues` (`field.path: message` lines, as core's decoders give
 * them), located in `file`: `policy.yaml:4: field exec.0.decision: …`. More issues are counted.
 */
export const issueError = (file: YamlFile, issues: ReadonlyArray<string>, prefix = "") => {
  const first = issues[0] ?? "(root): invalid"
  const split = first.indexOf(": ")
  const inner = split < 0 ? "(root)" : first.slice(0, split)
  const field = prefix === "" ? inner : inner === "(root)" ? prefix : `${prefix}.${inner}`
  const message = split < 0 ? first : first.slice(split + 2)
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : ""
  let got: unknown = file.value
  for (const key of field === "(root)" ? [] : field.split(".")) {
    got = typeof got === "object" && got !== null ? (got as Record<string, unknown>)[key] : undefined
  }
  const value = got === undefined || typeof got === "object" ? "" : ` (got ${JSON.stringify(got)})`
  return usage(`${file.where(field)}: field ${field}: ${message}${value}${more}`)
}

/** Decodes a policy value with core's `decodePolicy`; a bad one is a usage error located in `file`. */
export const decodePolicyIn = (file: YamlFile, value: unknown, prefix = ""): Policy => {
  const result = Effect.runSync(Effect.either(decodePolicy(value, file.path)))
  if (Either.isLeft(result)) {
    const precise = Policy.safeParse(value)
    throw issueError(file, precise.success ? result.left.issues : preciseIssues(precise.error.issues), prefix)
  }
  return result.right
}

interface Issue {
  readonly code?: string
  readonly path: ReadonlyArray<PropertyKey>
  readonly message: string
  readonly errors?: ReadonlyArray<ReadonlyArray<Issue>>
}

/**
 * `path: message` lines, where a union's "Invalid input" is replaced by the issues of the branch that
 * came closest (fewest issues, then deepest): `exec.1.decision: Invalid option: expected one of …`.
 */
const preciseIssues = (issues: ReadonlyArray<Issue>, prefix: ReadonlyArray<PropertyKey> = []): Array<string> =>
  issues.flatMap((issue) => {
    const path = [...prefix, ...issue.path]
    if (issue.code === "invalid_union" && issue.errors !== undefined && issue.errors.length > 0) {
      const depth = (branch: ReadonlyArray<Issue>) => Math.max(0, ...branch.map((i) => i.path.length))
      const best = [...issue.errors].sort((a, b) => a.length - b.length || depth(b) - depth(a))[0] ?? []
      if (best.length > 0) return preciseIssues(best, path)
    }
    return [`${path.map(String).join(".") || "(root)"}: ${issue.message}`]
  })

/** Reads and validates the policy file at `path` (`--policy`). */
export const loadPolicyFile = async (path: string): Promise<Policy> => {
  const file = parseYaml(path, await readText(path, "--policy"))
  return decodePolicyIn(file, file.value ?? {})
}
