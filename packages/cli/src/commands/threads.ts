/** `deputy threads list|show|archive|unarchive|fork|resume`: the rollout store from a terminal. */
import { readFile } from "node:fs/promises"
import { Deputy } from "@deputy/sdk"
import { RolloutStore } from "@deputy/sdk/core"
import { Args, Command, Options } from "@effect/cli"
import { NodeContext } from "@effect/platform-node"
import { Cause, Effect, Exit, Layer, Option } from "effect"
import { loadScript, makeBackend } from "../backends.js"
import { CliError, ExitCode, oneLine, usage } from "../errors.js"
import { listenForInterrupts } from "../interrupt.js"
import { humanPrinter, jsonPrinter } from "../output.js"
import { armTimeout, openSession, runTurn } from "../session.js"
import { transcript } from "../transcript.js"
import {
  backendOption,
  body,
  cwdOption,
  get,
  jsonOption,
  policyOption,
  scriptOption,
  timeoutOption,
  verboseOption
} from "./shared.js"

const store = RolloutStore.layer().pipe(Layer.provide(NodeContext.layer))

/** Runs a rollout-store effect; a missing thread or a bad id is a usage error naming it. */
const withStore = async <A>(
  use: (s: RolloutStore["Type"]) => Effect.Effect<A, { readonly _tag: string }>
): Promise<A> => {
  const exit = await Effect.runPromiseExit(Effect.flatMap(RolloutStore, use).pipe(Effect.provide(store)))
  if (Exit.isSuccess(exit)) return exit.value
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) throw new CliError({ code: ExitCode.failed, message: oneLine(Cause.squash(exit.cause)) })
  const error = failure.value
  throw error._tag === "RolloutNotFound" || error._tag === "InvalidInput"
    ? usage(`${oneLine(error)} (see deputy threads list; DEPUTY_HOME selects the home)`)
    : new CliError({ code: ExitCode.failed, message: oneLine(error), cause: error })
}

const id = Args.text({ name: "thread-id" }).pipe(Args.withDescription("the thread's id (deputy threads list)"))

const list = Command.make(
  "list",
  {
    json: jsonOption,
    limit: Options.integer("limit").pipe(Options.withDefault(50), Options.withDescription("at most this many"))
  },
  (args) =>
    body(async () => {
      const page = await withStore((s) => s.list({ limit: args.limit }))
      for (const item of page.items) {
        const meta = Option.getOrUndefined(item.meta)
        if (args.json) {
          process.stdout.write(`${JSON.stringify({ threadId: item.threadId, path: item.path, meta })}\n`)
        } else {
          const about = meta === undefined ? "(unreadable)" : `${meta.createdAt}  ${meta.backend}  ${meta.cwd}`
          process.stdout.write(`${item.threadId}  ${about}${meta?.name === undefined ? "" : `  ${meta.name}`}\n`)
        }
      }
    })
).pipe(
  Command.withDescription(
    "List the live (not archived) threads, newest first.\nExample: deputy threads list --limit 10"
  )
)

const show = Command.make("show", { id, json: jsonOption }, (args) =>
  body(async () => {
    const location = await withStore((s) => s.findById(args.id))
    if (args.json) {
      process.stdout.write(await readFile(location.path, "utf8"))
      return
    }
    const contents = await withStore((s) => s.read(location.path))
    for (const line of transcript(contents.meta, contents.lines)) process.stdout.write(`${line}\n`)
    for (const warning of contents.warnings) process.stderr.write(`deputy: warning: ${JSON.stringify(warning)}\n`)
  })
).pipe(
  Command.withDescription(
    "Show a thread's transcript: who asked what, who decided, how it ended (--json: the rollout's raw lines).\nExample: deputy threads show 0b7c…"
  )
)

const archive = Command.make("archive", { id }, (args) =>
  body(async () => {
    process.stdout.write(`${await withStore((s) => s.archive(args.id))}\n`)
  })
).pipe(Command.withDescription("Move a thread's rollout to the archive.\nExample: deputy threads archive 0b7c…"))

const unarchive = Command.make("unarchive", { id }, (args) =>
  body(async () => {
    process.stdout.write(`${await withStore((s) => s.unarchive(args.id))}\n`)
  })
).pipe(
  Command.withDescription("Move a thread's rollout back from the archive.\nExample: deputy threads unarchive 0b7c…")
)

const fork = Command.make(
  "fork",
  {
    id,
    backend: backendOption,
    script: scriptOption,
    cwd: cwdOption,
    before: Options.integer("before").pipe(
      Options.withDescription("keep the history before the Nth user message (0-based); default: all of it"),
      Options.optional
    )
  },
  (args) =>
    body(async () => {
      const scriptPath = get(args.script)
      const script = scriptPath === undefined ? undefined : await loadScript(scriptPath)
      const cwd = get(args.cwd)
      const backend = makeBackend({
        backend: args.backend,
        ...(script === undefined ? {} : { script }),
        ...(cwd === undefined ? {} : { cwd })
      })
      const before = get(args.before)
      const deputy = new Deputy({ backend })
      try {
        const thread = await deputy.forkThread(
          args.id,
          before === undefined ? { type: "interrupted" } : { type: "truncate_before_nth_user_message", n: before },
          cwd === undefined ? {} : { cwd }
        )
        process.stdout.write(`${thread.id}\n`)
      } finally {
        await deputy.close().catch(() => undefined)
      }
    })
).pipe(
  Command.withDescription(
    "Fork a thread into a new one (printed) from its history.\nExample: deputy threads fork 0b7c… --script reviewer.yaml --before 1"
  )
)

const resume = Command.make(
  "resume",
  {
    id,
    prompt: Args.text({ name: "prompt" }).pipe(Args.withDescription("the next turn's prompt")),
    backend: backendOption,
    script: scriptOption,
    cwd: cwdOption,
    policy: policyOption,
    json: jsonOption,
    timeout: timeoutOption,
    verbose: verboseOption
  },
  (args) =>
    body(async () => {
      const printer = args.json ? jsonPrinter() : humanPrinter()
      const interrupts = listenForInterrupts()
      const disarm = armTimeout(interrupts, get(args.timeout))
      try {
        const { deputy, thread } = await openSession(
          {
            backend: args.backend,
            script: get(args.script),
            cwd: get(args.cwd),
            thread: args.id,
            policy: get(args.policy),
            interactive: process.stdin.isTTY === true,
            resumeOnly: true
          },
          interrupts,
          printer
        )
        try {
          await runTurn(thread, args.prompt, printer, interrupts, get(args.timeout))
        } finally {
          await deputy.close().catch(() => undefined)
        }
      } finally {
        disarm()
        interrupts.dispose()
      }
    })
).pipe(
  Command.withDescription(
    "Resume a thread from its rollout and run one more turn (no fallback: a missing rollout is an error).\nExample: deputy threads resume 0b7c… --script review.yaml 'and now the tests'"
  )
)

/** The `threads` command. */
export const threads = Command.make("threads").pipe(
  Command.withDescription(
    "The threads in the rollout store (DEPUTY_HOME, else ~/.deputy).\nExample: deputy threads list"
  ),
  Command.withSubcommands([list, show, archive, unarchive, fork, resume])
)
