/** JSON Schema documents generated from the zod schemas, for readers of deputy's JSONL who do not use TypeScript. */
import { z } from "zod"
import { FileChange, Question, ReviewDecision, UserInputResponse } from "./approvals.js"
import { Event, EventMsg } from "./events.js"
import { ThreadId, TurnId } from "./ids.js"
import { Op, Submission } from "./ops.js"
import { RolloutItem, RolloutLine, RolloutMeta } from "./rollout.js"
import { Script } from "./script.js"
import { AgentStatus } from "./status.js"

const published = {
  AgentStatus,
  Event,
  EventMsg,
  FileChange,
  Op,
  Question,
  ReviewDecision,
  RolloutItem,
  RolloutLine,
  RolloutMeta,
  Script,
  Submission,
  ThreadId,
  TurnId,
  UserInputResponse
} satisfies Record<string, z.ZodType>

/** Every published schema as JSON Schema (the input side: what a writer must produce), keyed by file name. */
export const jsonSchemas = (): Record<string, unknown> =>
  Object.fromEntries(
    Object.entries(published).map(([name, schema]) => [
      `${name}.schema.json`,
      { $id: `urn:deputy:schema:${name}`, title: name, ...z.toJSONSchema(schema, { io: "input" }) }
    ])
  )

/** The text a schema file must hold: pretty JSON with a final newline. */
export const jsonSchemaText = (schema: unknown): string => `${JSON.stringify(schema, null, 2)}\n`
