/**
 * Who decides an approval the policy leaves open, and the record of who did. The Deputy is given the
 * user's rules with `default: "ask"`, so whatever no rule decides reaches `decide` here: a person at
 * the terminal when there is one (y / n / a = always for this session), else the policy's own default
 * (denied unless the file says otherwise). Every settled request is reported once with its decider:
 * `policy` (a rule), `person`, `callback` (a program's answer), or `default`.
 */
import { createInterface } from "node:readline"
import type {
  ApprovalRecord,
  ApprovalRequest,
  Decision,
  DeputyOptions,
  UserInputRequest,
  UserInputResponse
} from "@deputy/sdk"
import type { Policy } from "@deputy/sdk/core"

/** Who settled a request. */
export type Decider = "policy" | "person" | "callback" | "default" | "withdrawn"

/** One settled request, as the CLI reports it (`{"type":"approval",…}` in `--json`). */
export interface ApprovalLine {
  readonly type: "approval"
  readonly requestId: string
  readonly threadId: string
  readonly kind: "exec" | "patch" | "user_input"
  readonly command?: ReadonlyArray<string>
  readonly paths?: ReadonlyArray<string>
  readonly cwd?: string
  readonly agent?: string
  readonly path: ReadonlyArray<string>
  readonly decision?: Decision
  readonly by: Decider
}

/** Asks a person one question and resolves to the line they typed; rejects when the question is withdrawn. */
export type Ask = (question: string, signal: AbortSignal) => Promise<string>

/** How the approver is set up. */
export interface ApproverOptions {
  /** The user's policy (decoded). */
  readonly policy: Policy
  /** Asks a person; absent when nobody is at a terminal (then the default decides). */
  readonly ask?: Ask
  /** Sees each settled request. */
  readonly onSettled: (line: ApprovalLine) => void
  /** Told while a request waits for a person, and when it stops waiting (`undefined`). */
  readonly onWaiting?: (threadId: string, request: ApprovalRequest | undefined) => void
}

/** What a request is, in a few words: the command, or the paths of a patch. */
export const describe = (request: ApprovalRequest): string =>
  request.kind === "exec" ? request.command.join(" ") : `patch ${request.paths.join(", ")}`

/** The options a Deputy needs for `options`' approvals. */
export const approver = (
  options: ApproverOptions
): Pick<DeputyOptions, "policy" | "onApproval" | "onUserInput" | "onApprovalSettled"> => {
  const fallback: Decision = options.policy.default === "ask" ? "denied" : options.policy.default
  // Who decided each request the callback settled, by id: the callback itself cannot say.
  const deciders = new Map<string, Decider>()
  // Commands and patches a person approved "always" in this session.
  const always = new Set<string>()

  const onApproval = async (request: ApprovalRequest, { signal }: { signal: AbortSignal }): Promise<Decision> => {
    const key = `${request.kind}:${describe(request)}`
    if (always.has(key)) {
      deciders.set(request.requestId, "person")
      return "approved_for_session"
    }
    if (options.ask === undefined) {
      deciders.set(request.requestId, "default")
      return fallback
    }
    const who = `sub-agent ${request.agentName ?? request.threadId.slice(0, 8)}`
    const tree = request.path.length > 1 ? ` (sub-agent ${request.path.length - 1} deep)` : ""
    const what =
      request.kind === "exec"
        ? `run \`${request.command.join(" ")}\` in ${request.cwd}`
        : `apply a patch to ${request.paths.join(", ")} in ${request.cwd}`
    options.onWaiting?.(request.threadId, request)
    try {
      for (;;) {
        const typed = await options
          .ask(`${who}${tree} asks to ${what}. Allow? [y]es / [n]o / [a]lways: `, signal)
          .catch(() => undefined)
        // Withdrawn while asking (the run was cancelled): the request is gone, any answer is moot.
        if (typed === undefined) return "denied"
        const answer = typed.trim().toLowerCase()
        const decision: Decision | undefined =
          answer === "y" || answer === "yes"
            ? "approved"
            : answer === "n" || answer === "no"
              ? "denied"
              : answer === "a" || answer === "always"
                ? "approved_for_session"
                : undefined
        if (decision === undefined) continue
        if (decision === "approved_for_session") always.add(key)
        deciders.set(request.requestId, "person")
        return decision
      }
    } finally {
      options.onWaiting?.(request.threadId, undefined)
    }
  }

  // Questions the policy has no answers for get none: a person is asked only about commands and patches.
  const onUserInput = (request: UserInputRequest): UserInputResponse => {
    deciders.set(request.requestId, "default")
    return { answers: {} }
  }

  const onApprovalSettled = (record: ApprovalRecord) => {
    const request = record.request
    const by: Decider =
      record.by === "callback"
        ? (deciders.get(request.requestId) ?? "callback")
        : record.by === "answer"
          ? "callback"
          : record.by
    deciders.delete(request.requestId)
    options.onSettled({
      type: "approval",
      requestId: request.requestId,
      threadId: request.threadId,
      kind: request.kind,
      ...(request.kind === "exec" ? { command: request.command, cwd: request.cwd } : {}),
      ...(request.kind === "patch" ? { paths: request.paths, cwd: request.cwd } : {}),
      ...(request.agentName === undefined ? {} : { agent: request.agentName }),
      path: request.path,
      ...(record.decision === undefined ? {} : { decision: record.decision }),
      by
    })
  }

  return { policy: { ...options.policy, default: "ask" }, onApproval, onUserInput, onApprovalSettled }
}

/**
 * Asks on the terminal: the question on stderr, the answer from stdin. Ctrl-C while asking is passed
 * to `onInterrupt` (the terminal is in raw mode, so it is no signal).
 */
export const terminalAsk =
  (onInterrupt: () => void): Ask =>
  (question, signal) =>
    new Promise<string>((resolve, reject) => {
      const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true })
      const done = () => {
        signal.removeEventListener("abort", onAbort)
        rl.close()
      }
      const onAbort = () => {
        done()
        process.stderr.write("\n")
        reject(new Error("the request was withdrawn"))
      }
      signal.addEventListener("abort", onAbort, { once: true })
      rl.on("SIGINT", () => onInterrupt())
      rl.question(question, (answer) => {
        done()
        resolve(answer)
      })
    })
