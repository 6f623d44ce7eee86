/** The one bridge from zod into Effect: decode at the edge, then trust the types. */
import { Effect } from "effect"
import type { z } from "zod"
import { InvalidInput } from "../errors.js"

/** The issues of a zod error as `path: message` lines. */
export const formatIssues = (error: z.ZodError): ReadonlyArray<string> =>
  error.issues.map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`)

/** Decodes `input` with `schema`, failing with InvalidInput that names `source` and every bad field. */
export const decode =
  <S extends z.ZodType>(schema: S, source: string) =>
  (input: unknown): Effect.Effect<z.output<S>, InvalidInput> =>
    Effect.suspend(() => {
      const result = schema.safeParse(input)
      return result.success
        ? Effect.succeed(result.data)
        : Effect.fail(new InvalidInput({ source, issues: formatIssues(result.error) }))
    })
