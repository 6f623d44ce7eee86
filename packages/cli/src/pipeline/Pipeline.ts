/**
 * Pipeline files: named steps, each a sub-agent (backend, prompt, script), with `needs` (steps whose
 * outputs it waits for and may use as `{{steps.<name>.output}}` in its prompt), a timeout and a
 * policy; a shared policy and a concurrency limit on top. Decoded with zod, then checked as a graph
 * (needs exist, no cycles, placeholders name a need). Every error names the file, line and field.
 *
 * ```yaml
 * concurrency: 3
 * policy: { exec: [{ prefix: [echo], decision: approved }] }
 * steps:
 *   plan: { script: planner.yaml, prompt: "plan the release" }
 *   build: { script: builder.yaml, needs: [plan], timeout: 30s, prompt: "build: {{steps.plan.output}}" }
 * ```
 */
import { dirname, resolve } from "node:path"
import { DeputyError, scripted } from "@deputy/sdk"
import type { Policy } from "@deputy/sdk/core"
import { z } from "zod"
import { BACKENDS, type BackendName, loadScript } from "../backends.js"
import { usage } from "../errors.js"
import { decodePolicyIn, issueError, parseYaml, readText, type YamlFile } from "../files.js"
import { parseDuration } from "../session.js"

const duration = z.union([z.string().min(1), z.number().positive()])

const StepSchema = z.strictObject({
  backend: z.enum(BACKENDS).default("scripted"),
  prompt: z.string().min(1),
  script: z.union([z.string().min(1), z.record(z.string(), z.unknown())]).optional(),
  needs: z.array(z.string().min(1)).default([]),
  timeout: duration.optional(),
  /** An optional step may fail or time out without failing the pipeline (its dependents still do not run). */
  optional: z.boolean().default(false),
  policy: z.unknown().optional(),
  cwd: z.string().min(1).optional()
})

const PipelineSchema = z.strictObject({
  concurrency: z.number().int().min(1).max(64).default(4),
  policy: z.unknown().optional(),
  steps: z
    .record(z.string().regex(/^[A-Za-z0-9_-]+$/, "step names are letters, digits, - and _"), StepSchema)
    .refine((steps) => Object.keys(steps).length > 0, "a pipeline needs at least one step")
})

/** One step, ready to run. */
export interface Step {
  readonly name: string
  readonly backend: BackendName
  readonly prompt: string
  readonly script: unknown
  readonly needs: ReadonlyArray<string>
  readonly timeoutMs: number | undefined
  readonly timeout: string | undefined
  /** Its failure does not fail the pipeline. */
  readonly optional: boolean
  readonly policy: Policy
  readonly cwd: string | undefined
}

/** A pipeline, ready to run: steps in file order. */
export interface Pipeline {
  readonly path: string
  readonly concurrency: number
  readonly steps: ReadonlyArray<Step>
}

const PLACEHOLDER = /\{\{\s*([^}]*?)\s*\}\}/g
const OUTPUT = /^steps\.([A-Za-z0-9_-]+)\.output$/

/** Fills `{{steps.<name>.output}}` in `prompt` from `outputs`. */
export const substitute = (prompt: string, outputs: ReadonlyMap<string, string>): string =>
  prompt.replace(PLACEHOLDER, (_, inner: string) => outputs.get(OUTPUT.exec(inner)?.[1] ?? "") ?? "")

const DENY_ALL: Policy = { exec: [], patch: [], answers: {}, default: "denied" }

/** Reads and checks the pipeline file at `path`. Every problem is a usage error naming file, line and field. */
export const loadPipeline = async (path: string): Promise<Pipeline> => {
  const file: YamlFile = parseYaml(path, await readText(path, "pipeline file"))
  const decoded = PipelineSchema.safeParse(file.value ?? {})
  if (!decoded.success) {
    throw issueError(
      file,
      decoded.error.issues.map((i) => {
        // An unknown key is named by its own path, so its line is the one reported.
        const path = i.code === "unrecognized_keys" ? [...i.path, i.keys[0] ?? ""] : i.path
        return `${path.map(String).join(".") || "(root)"}: ${i.message}`
      })
    )
  }
  const base = dirname(resolve(path))
  const shared = decoded.data.policy === undefined ? DENY_ALL : decodePolicyIn(file, decoded.data.policy, "policy")
  const names = Object.keys(decoded.data.steps)
  const steps: Array<Step> = []
  for (const [name, raw] of Object.entries(decoded.data.steps)) {
    const at = (field: string) => `${file.where(`steps.${name}.${field}`)}: field steps.${name}.${field}`
    for (const need of raw.needs) {
      if (!names.includes(need)) throw usage(`${at("needs")}: no step is named ${JSON.stringify(need)}`)
      if (need === name) throw usage(`${at("needs")}: a step cannot need itself`)
    }
    for (const match of raw.prompt.matchAll(PLACEHOLDER)) {
      const ref = OUTPUT.exec(match[1] ?? "")
      if (ref === null) {
        throw usage(`${at("prompt")}: ${match[0]} is not {{steps.<name>.output}}`)
      }
      if (!raw.needs.includes(ref[1] ?? "")) {
        throw usage(`${at("prompt")}: ${match[0]} names a step not in needs (add ${ref[1]} to needs)`)
      }
    }
    if (raw.backend === "scripted" && raw.script === undefined) {
      throw usage(`${at("script")}: a scripted step needs a script (a file path or an inline script)`)
    }
    if (raw.backend !== "scripted" && raw.script !== undefined) {
      throw usage(`${at("script")}: script is for backend scripted, not ${raw.backend}`)
    }
    let script: unknown
    if (typeof raw.script === "string") {
      script = await loadScript(resolve(base, raw.script), `${at("script")}:`)
    } else if (raw.script !== undefined) {
      script = raw.script
      // Validated now, by the scripted package's parser, so a bad inline script is found before anything runs.
      try {
        scripted(raw.script as Parameters<typeof scripted>[0])
      } catch (error) {
        const issues = error instanceof DeputyError ? (error.cause as { issues?: ReadonlyArray<string> }).issues : []
        throw issueError(file, issues ?? [`(root): ${String(error)}`], `steps.${name}.script`)
      }
    }
    let timeoutMs: number | undefined
    if (raw.timeout !== undefined) {
      timeoutMs = typeof raw.timeout === "number" ? raw.timeout * 1000 : parseDuration(raw.timeout, `${at("timeout")}:`)
    }
    steps.push({
      name,
      backend: raw.backend,
      prompt: raw.prompt,
      script,
      needs: raw.needs,
      timeoutMs,
      timeout: raw.timeout === undefined ? undefined : String(raw.timeout),
      optional: raw.optional,
      policy: raw.policy === undefined ? shared : decodePolicyIn(file, raw.policy, `steps.${name}.policy`),
      cwd: raw.cwd === undefined ? undefined : resolve(base, raw.cwd)
    })
  }
  const cycle = findCycle(steps)
  if (cycle !== undefined) {
    throw usage(
      `${file.where(`steps.${cycle[0]}.needs`)}: field steps.${cycle[0]}.needs: a cycle: ${cycle.join(" → ")}`
    )
  }
  return { path, concurrency: decoded.data.concurrency, steps }
}

/** A cycle of needs, as the names along it (first repeated last), if there is one. */
const findCycle = (steps: ReadonlyArray<Step>): ReadonlyArray<string> | undefined => {
  const needs = new Map(steps.map((s) => [s.name, s.needs]))
  const state = new Map<string, "visiting" | "done">()
  const visit = (name: string, path: ReadonlyArray<string>): ReadonlyArray<string> | undefined => {
    if (state.get(name) === "done") return undefined
    if (state.get(name) === "visiting") return [...path.slice(path.indexOf(name)), name]
    state.set(name, "visiting")
    for (const need of needs.get(name) ?? []) {
      const found = visit(need, [...path, name])
      if (found !== undefined) return found
    }
    state.set(name, "done")
    return undefined
  }
  for (const step of steps) {
    const found = visit(step.name, [])
    if (found !== undefined) return found
  }
  return undefined
}
