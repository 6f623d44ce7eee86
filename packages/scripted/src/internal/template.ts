/**
 * `{{answer.<questionId>}}` in a step's strings (§24): replaced, when the step runs, by the first
 * answer given to that question earlier in the thread, or by nothing.
 */

const PATTERN = /\{\{answer\.([^}]*)\}\}/g

/** True when some string in `value` (keys included) uses an answer; such steps are filled before they run. */
export const hasTemplate = (value: unknown): boolean => JSON.stringify(value).includes("{{answer.")

const fillString = (text: string, answers: ReadonlyMap<string, string>) =>
  text.replace(PATTERN, (_, id: string) => answers.get(id) ?? "")

const fillValue = (value: unknown, answers: ReadonlyMap<string, string>): unknown => {
  if (typeof value === "string") return fillString(value, answers)
  if (Array.isArray(value)) return value.map((item) => fillValue(item, answers))
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [fillString(key, answers), fillValue(item, answers)])
    )
  }
  return value
}

/** `value` with every template in its strings replaced; the shape is unchanged. */
export const fill = <A>(value: A, answers: ReadonlyMap<string, string>): A => fillValue(value, answers) as A
