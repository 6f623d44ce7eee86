/**
 * What a run shows. `--json`: one JSON object per line on stdout, each caller-visible event as the
 * protocol's EventMsg and each settled approval as `{"type":"approval",…}`. Otherwise: the agent's
 * messages on stdout, what it runs and who decided on stderr.
 */
import type { ThreadEvent } from "@deputy/sdk"
import type { ApprovalLine } from "./approvals.js"

/** Where a run's events and approvals go. */
export interface Printer {
  readonly event: (event: ThreadEvent) => void
  readonly approval: (line: ApprovalLine) => void
}

/** JSON lines on stdout. */
export const jsonPrinter = (extra: Record<string, unknown> = {}): Printer => ({
  event: (event) => process.stdout.write(`${JSON.stringify({ ...event, ...extra })}\n`),
  approval: (line) => process.stdout.write(`${JSON.stringify({ ...line, ...extra })}\n`)
})

/** Who decided, in words. */
export const decidedBy = (line: ApprovalLine) =>
  line.by === "withdrawn"
    ? "withdrawn (cancelled while waiting)"
    : `${line.decision ?? "no answer"} by ${line.by === "person" ? "you" : line.by === "default" ? "the policy's default" : line.by}`

/** Readable lines: messages on stdout, the rest on stderr. */
export const humanPrinter = (): Printer => ({
  event: (event) => {
    switch (event.type) {
      case "agent_message":
        process.stdout.write(`${event.message}\n`)
        return
      case "exec_command_begin":
        process.stderr.write(`  running: ${event.command.join(" ")}\n`)
        return
      case "exec_command_end":
        process.stderr.write(`  exit ${event.exitCode ?? "killed"}\n`)
        return
      case "error":
        process.stderr.write(`  error: ${event.message}\n`)
        return
      case "warning":
        process.stderr.write(`  warning: ${event.message}\n`)
        return
      case "turn_aborted":
        process.stderr.write(`  turn aborted (${event.reason})\n`)
        return
      default:
        return
    }
  },
  approval: (line) => {
    const what =
      line.kind === "exec" ? `$ ${(line.command ?? []).join(" ")}` : `${line.kind} ${(line.paths ?? []).join(", ")}`
    process.stderr.write(`  ${what}: ${decidedBy(line)}\n`)
  }
})
