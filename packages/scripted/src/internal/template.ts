/**
 * Templates in a step's strings (§24), replaced when the step runs: `{{answer.<questionId>}}` by the
 * first answer given to that question earlier in the thread, `{{child.<name>}}` by the last message
 * of the thread's sub-agent of that name; by nothing when there is none. A `spawn` step fills only
 * its children's inputs: their scripts fill their own templates when they run.
 */
import type { ScriptStep } from "@deputy/protocol"

/** What templates read: answers by question id, children's last messages by name. */
export interface Memory {
  readonly answers: ReadonlyMap<string, string>
  readonly children: ReadonlyMap<string, string>
}

const PATTERN = /\{\{(answer|child)\.([^}]*)\}\}/g

const templated = (step: ScriptStep): unknown => (step.type === "spawn" ? step.agents.map((a) => a.input) : step)

/** True when some string of `step` that `fill` replaces in (keys included) holds a template; only such steps are filled. */
export const hasTemplate = (step: ScriptStep): boolean => {
  const text = JSON.stringify(templated(step))
  return text.includes("{{answer.") || text.includes("{{child.")
}

const fillString = (text: string, memory: Memory) =>
  text.replace(
    PATTERN,
    (_, kind: string, key: string) => (kind === "answer" ? memory.answers : memory.children).get(key) ?? ""
  )

const fillValue = (value: unknown, memory: Memory): unknown => {
  if (typeof value === "string") return fillString(value, memory)
  if (Array.isArray(value)) return value.map((item) => fillValue(item, memory))
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [fillString(key, memory), fillValue(item, memory)])
    )
  }
  return value
}

/** `step` with every template replaced; the shape is unchanged. */
export const fill = (step: ScriptStep, memory: Memory): ScriptStep =>
  step.type === "spawn"
    ? { ...step, agents: step.agents.map((agent) => ({ ...agent, input: fillString(agent.input, memory) })) }
    : (fillValue(step, memory) as ScriptStep)
