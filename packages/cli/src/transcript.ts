/**
 * A rollout as a readable transcript: who asked what (the caller's prompts, the agent's requests),
 * who decided (the parent's answers), what ran, and how the thread ended.
 */
import type { RolloutItem, RolloutMeta } from "@deputy/sdk/protocol"

const clip = (text: string, max = 400) => (text.length > max ? `${text.slice(0, max - 1)}…` : text)

/** The transcript of a thread's rollout, as lines. */
export const transcript = (meta: RolloutMeta, lines: ReadonlyArray<RolloutItem>): ReadonlyArray<string> => {
  const out: Array<string> = []
  const source =
    meta.source.type === "top_level"
      ? "top-level"
      : `sub-agent of ${meta.source.parentThreadId} (depth ${meta.source.depth})`
  out.push(
    `thread ${meta.threadId}${meta.name === undefined ? "" : ` (${meta.name})`}: ${meta.backend}, ${source}, in ${meta.cwd}, created ${meta.createdAt}`
  )
  if (meta.forkedFromId !== undefined) out.push(`forked from ${meta.forkedFromId}`)
  let ended: string | undefined
  for (const item of lines) {
    if (item.type === "terminal") {
      ended = `${item.state}${item.reason === undefined ? "" : ` (${item.reason})`}`
      out.push(`${item.at}  ended: ${ended}`)
      continue
    }
    if (item.type === "submission") {
      const op = item.submission.op
      if (op.type === "user_input") {
        const text = op.items.map((i) => (i.type === "text" ? i.text : `[${i.type}]`)).join(" ")
        out.push(`${item.at}  caller asked: ${clip(text)}`)
      } else if (op.type === "exec_approval" || op.type === "patch_approval") {
        out.push(`${item.at}  parent decided: ${op.decision}`)
      } else if (op.type === "user_input_answer") {
        out.push(`${item.at}  parent answered: ${JSON.stringify(op.response.answers)}`)
      } else {
        out.push(`${item.at}  caller sent: ${op.type}`)
      }
      continue
    }
    const msg = item.event.msg
    switch (msg.type) {
      case "agent_message":
        out.push(`${item.at}  agent said: ${clip(msg.message)}`)
        break
      case "exec_approval_request":
        out.push(`${item.at}  agent asked to run: ${msg.command.join(" ")} (in ${msg.cwd})`)
        break
      case "apply_patch_approval_request":
        out.push(`${item.at}  agent asked to change: ${Object.keys(msg.changes).join(", ")}`)
        break
      case "request_user_input":
        out.push(`${item.at}  agent asked: ${msg.questions.map((q) => q.question).join(" / ")}`)
        break
      case "exec_command_end":
        out.push(`${item.at}  command ended: exit ${msg.exitCode ?? "killed"}`)
        break
      case "patch_apply_end":
        out.push(`${item.at}  patch ${msg.success ? "applied" : "failed"}`)
        break
      case "turn_complete":
        out.push(`${item.at}  turn completed`)
        break
      case "turn_aborted":
        out.push(`${item.at}  turn aborted: ${msg.reason}`)
        break
      case "error":
        out.push(`${item.at}  error: ${msg.message}`)
        break
      case "sub_agent_started":
        out.push(`${item.at}  started a sub-agent: ${msg.threadId}`)
        break
      default:
        break
    }
  }
  out.push(
    ended === undefined ? "state: not ended (live, or its process died before the next start)" : `state: ${ended}`
  )
  return out
}
