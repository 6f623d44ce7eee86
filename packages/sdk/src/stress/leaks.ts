/**
 * What could outlive a run, taken before it and looked for after it: this process's child processes
 * (and its process supervisor's), and its active handles and requests (timers, files, pipes). Child
 * processes are read from /proc, so only on Linux.
 */
import { ProcessSupervisor } from "@deputy/core"
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { Effect } from "effect"

/**
 * Pids of this process's live children and of its process supervisor's (which spawns the scripted
 * `exec` commands), Linux /proc; empty elsewhere.
 */
const childPids = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  const pids = new Set<string>()
  const supervisor = ProcessSupervisor.processId()
  const entries = yield* fs.readDirectory("/proc").pipe(Effect.orElseSucceed(() => [] as Array<string>))
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue
    const stat = yield* fs.readFileString(`/proc/${entry}/stat`).pipe(Effect.orElseSucceed(() => ""))
    // Field 2 (the name, in parentheses) may hold spaces: split after it. Then state, parent pid.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // deputy's process supervisor lives as long as this process: not a leftover; its children are.
    const parent = Number(fields[1])
    if ((parent === process.pid || parent === supervisor) && fields[0] !== "Z" && Number(entry) !== supervisor)
      pids.add(entry)
  }
  return pids
}).pipe(Effect.provide(NodeContext.layer))

/** Active handles and requests by type, the harness's own measuring excluded. */
const activeResources = (): Map<string, number> => {
  const counts = new Map<string, number>()
  for (const type of process.getActiveResourcesInfo()) counts.set(type, (counts.get(type) ?? 0) + 1)
  return counts
}

/** What grew from `before` to `after`, as "type before → after". */
const grown = (before: Map<string, number>, after: Map<string, number>) =>
  [...after]
    .filter(([type, n]) => n > (before.get(type) ?? 0))
    .map(([type, n]) => `${type} ${before.get(type) ?? 0} → ${n}`)

/** The child processes and active resources before a run. */
export interface Baseline {
  readonly children: ReadonlySet<string>
  readonly resources: Map<string, number>
}

/** Takes the baseline, before the run starts anything. */
export const baseline = async (): Promise<Baseline> => {
  const children = await Effect.runPromise(childPids)
  return { children, resources: activeResources() }
}

/**
 * Child processes and active resources found after the run that the baseline did not have. Closing
 * handles and reaping children finishes on later turns of the loop: it looks again for up to a second.
 */
export const leftovers = async (
  before: Baseline
): Promise<{ readonly children: Array<string>; readonly resourceGrowth: Array<string> }> => {
  let resourceGrowth: Array<string> = []
  let children: Array<string> = []
  for (let attempt = 0; attempt < 40; attempt++) {
    resourceGrowth = grown(before.resources, activeResources())
    const now = await Effect.runPromise(childPids)
    children = [...now].filter((pid) => !before.children.has(pid))
    if (children.length === 0 && resourceGrowth.length === 0) break
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  return { children, resourceGrowth }
}
