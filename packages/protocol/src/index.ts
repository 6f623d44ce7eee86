/** @deputy/protocol: the zod schemas deputy speaks, and their types. */
export * from "./approvals.js"
export * from "./events.js"
export * from "./ids.js"
export * from "./jsonSchemas.js"
export * from "./ops.js"
export * from "./rollout.js"
export * from "./script.js"
export * from "./status.js"
