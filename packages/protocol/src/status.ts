/** An agent's lifecycle status, as a watcher sees it. */
import { z } from "zod"

/** Where an agent is in its life: starting, idle between turns, in a turn, failed, or shut down. */
export const AgentStatus = z.discriminatedUnion("type", [
  z.object({ type: z.literal("pending_init") }),
  z.object({ type: z.literal("idle") }),
  z.object({ type: z.literal("running"), turnId: z.string() }),
  z.object({ type: z.literal("errored"), message: z.string() }),
  z.object({ type: z.literal("shutdown") })
])
/** Where an agent is in its life. */
export type AgentStatus = z.output<typeof AgentStatus>
