/**
 * Backends as values: `scripted(yamlOrObject)`, `codex({ … })`, `codexExec({ … })`. A value is
 * inert until a thread starts on it; what it does then lives in a module-private WeakMap, so the
 * public type carries no Effect type.
 */
import { existsSync } from "node:fs"
import { createRequire } from "node:module"
import { delimiter, join } from "node:path"
import { CodexAppServer, CodexExec } from "@deputy/codex"
import { type Backend, decode, type Policy } from "@deputy/core"
import { Script, type ScriptInput } from "@deputy/protocol"
import { parseScript, Scripted } from "@deputy/scripted"
import type { NodeContext } from "@effect/platform-node"
import { Effect, Either } from "effect"
import { DeputyError, fromFailure } from "./errors.js"

/** A way to make sub-agents, made by `scripted`, `codex` or `codexExec`. Pass it to `deputy.startThread`. */
export interface DeputyBackend {
  /** The backend's name, as rollouts record it: `scripted`, `codex`, `codex-exec`. */
  readonly name: string
}

/** @internal What a backend is given when a thread starts on it. */
export interface BackendContext {
  readonly policy: Policy
  readonly home: string | undefined
}

type Make = (context: BackendContext) => Effect.Effect<Backend<NodeContext.NodeContext>, DeputyError>

const makers = new WeakMap<DeputyBackend, Make>()

const define = (name: string, make: Make): DeputyBackend => {
  const backend: DeputyBackend = Object.freeze({ name })
  makers.set(backend, make)
  return backend
}

/** @internal The Effect backend behind a value; fails when the value was not made by this module. */
export const backendOf = (
  value: DeputyBackend,
  context: BackendContext
): Effect.Effect<Backend<NodeContext.NodeContext>, DeputyError> => {
  const make = makers.get(value)
  return make === undefined
    ? Effect.fail(
        new DeputyError(
          "InvalidBackend",
          `backend ${JSON.stringify(value?.name)} was not made by scripted(), codex() or codexExec() of @deputy/sdk`
        )
      )
    : make(context)
}

/** Settings of the scripted backend. */
export interface ScriptedOptions {
  /** The working directory of its commands and patches when the thread names none. Default `process.cwd()`. */
  readonly cwd?: string
  /** Capacity of each agent's events buffer. Default 1024. */
  readonly eventsCapacity?: number
}

/**
 * The in-process scripted backend playing `script`: YAML or JSON text, or an object whose defaults
 * may be left out. Throws a DeputyError tagged `InvalidInput`, naming each bad field, on a bad script.
 */
export const scripted = (script: string | ScriptInput, options: ScriptedOptions = {}): DeputyBackend => {
  const parsed =
    typeof script === "string" ? parseScript(script, "script") : decode(Script, "script")(script as unknown)
  const result = Effect.runSync(Effect.either(parsed))
  if (Either.isLeft(result)) throw fromFailure(result.left)
  const backend = Scripted.backend(result.right, {
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    ...(options.eventsCapacity === undefined ? {} : { eventsCapacity: options.eventsCapacity })
  })
  return define(Scripted.name, () => Effect.succeed(backend))
}

/** Settings of the Codex app-server backend (one `codex app-server` per thread). */
export interface CodexOptions {
  /** The Codex binary. Default: the installed `@openai/codex`, else `codex` on PATH. */
  readonly codexPath?: string
  /** Extra arguments after `app-server`. */
  readonly args?: ReadonlyArray<string>
  /** Added to Codex's otherwise allowlisted environment (e.g. an API key). */
  readonly env?: Readonly<Record<string, string | undefined>>
  /** Codex's working directory, and its threads' default cwd. */
  readonly cwd?: string
  /** The model, when not Codex's configured one. */
  readonly model?: string
  /** When Codex asks: `untrusted`, `on-request` (its default) or `never`. */
  readonly approvalPolicy?: "untrusted" | "on-request" | "never"
  /** Codex's sandbox for commands. */
  readonly sandbox?: "read-only" | "workspace-write" | "danger-full-access"
  /** Per-thread config overrides, dotted keys. */
  readonly config?: Readonly<Record<string, unknown>>
  /** Instructions added for the developer role. */
  readonly developerInstructions?: string
}

/** Settings of the Codex exec backend (one `codex exec --json` per turn; it cannot ask for approvals). */
export interface CodexExecOptions {
  /** The Codex binary. Default: the installed `@openai/codex`, else `codex` on PATH. */
  readonly codexPath?: string
  /** Codex's sandbox for commands. Default `read-only`. */
  readonly sandbox?: "read-only" | "workspace-write" | "danger-full-access"
  /** The model, when not Codex's configured one. */
  readonly model?: string
  /** More `-c key=value` overrides. */
  readonly config?: Readonly<Record<string, string | number | boolean>>
  /** CODEX_HOME for the child. */
  readonly codexHome?: string
  /** Added to Codex's otherwise allowlisted environment. */
  readonly env?: Readonly<Record<string, string | undefined>>
  /** The working directory when the thread names none. */
  readonly cwd?: string
}

const onPath = (command: string) =>
  (process.env.PATH ?? "").split(delimiter).some((dir) => dir !== "" && existsSync(join(dir, command)))

/** `@openai/codex` is an optional peer: missing (and no `codex` on PATH), the start fails naming it. */
const requireCodex = (explicit: string | undefined): Effect.Effect<void, DeputyError> =>
  Effect.suspend(() => {
    if (explicit !== undefined) return Effect.void
    try {
      createRequire(import.meta.url).resolve("@openai/codex/package.json")
      return Effect.void
    } catch {
      if (onPath(process.platform === "win32" ? "codex.exe" : "codex")) return Effect.void
      return Effect.fail(
        new DeputyError(
          "CodexNotInstalled",
          "the Codex backends need the Codex CLI: run `npm install @openai/codex` (an optional peer dependency of @deputy/codex), put `codex` on PATH, or pass codexPath"
        )
      )
    }
  })

/** `value` without its undefined fields (options are exact: absent, never undefined). */
const defined = <T extends object>(value: T): { [K in keyof T]: Exclude<T[K], undefined> } =>
  Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as {
    [K in keyof T]: Exclude<T[K], undefined>
  }

/** The Codex app-server backend: each thread gets its own `codex app-server`; approvals reach your onApproval. */
export const codex = (options: CodexOptions = {}): DeputyBackend =>
  define(CodexAppServer.name, () =>
    Effect.as(requireCodex(options.codexPath), CodexAppServer.backend(defined({ ...options })))
  )

/**
 * The Codex exec backend: one `codex exec --json` per turn. Codex never asks, so the deputy's policy
 * must approve everything and have no onApproval; otherwise the start fails with `ApprovalsUnsupported`.
 */
export const codexExec = (options: CodexExecOptions = {}): DeputyBackend =>
  define(CodexExec.name, (context) =>
    requireCodex(options.codexPath).pipe(
      Effect.zipRight(
        CodexExec.backend(
          defined({
            approvalMode: "never-ask" as const,
            policy: context.policy,
            home: context.home,
            binary: options.codexPath,
            sandbox: options.sandbox,
            model: options.model,
            config: options.config,
            codexHome: options.codexHome,
            env: options.env,
            cwd: options.cwd
          })
        )
      ),
      Effect.mapError(fromFailure)
    )
  )
