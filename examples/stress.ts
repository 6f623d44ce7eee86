/**
 * A stress run of trees of sub-agents: many scripted trees at once under one ThreadManager with a
 * per-tree cap, every leaf asking an approval the root policy answers, and a share of the trees
 * cancelled mid-flight. Afterwards it checks what must hold: no thread left, no request pending, no
 * child process left behind, every cancel reported. Prints throughput and the cancel reports.
 *
 *   pnpm stress --trees 50 --fanout 3 --depth 2 --cancel 0.3 --cap 4
 */
import { parseArgs } from "node:util"
import {
  ApprovalRegistry,
  type CancelReport,
  Parent,
  ProcessSupervisor,
  policy,
  RolloutStore,
  ThreadManager
} from "@deputy/core"
import type { Script } from "@deputy/protocol"
import { Scripted } from "@deputy/scripted"
import { FileSystem } from "@effect/platform"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Clock, Effect, Layer, Random } from "effect"

/** How big a run is. */
export interface StressOptions {
  /** Trees started at once. */
  readonly trees: number
  /** Children of every non-leaf thread. */
  readonly fanout: number
  /** Levels below each root (1: the root's children are leaves). */
  readonly depth: number
  /** Share of trees cancelled once their first sub-agent exists (0 to 1). */
  readonly cancel: number
  /** Live sub-agents per tree. */
  readonly cap: number
}

/** What a run did, and what it found left over. */
export interface StressResult {
  readonly threads: number
  /** Trees whose root turn completed with every sub-agent under it completed. */
  readonly completedTrees: number
  /** Trees whose root turn completed but saw an error or a sub-agent that failed (or could not start). */
  readonly failedTrees: number
  readonly cancelledTrees: number
  readonly cancelReports: ReadonlyArray<CancelReport>
  readonly seconds: number
  readonly leftThreads: number
  readonly leftPending: number
  readonly leftProcesses: number
}

/** A tree's script: `depth` levels of `fanout` children; the leaves run a real approved command. */
export const treeScript = (fanout: number, depth: number): Script => {
  if (depth === 0) {
    return {
      turns: [
        {
          repeat: 1,
          steps: [
            { type: "exec", command: ["true"], needsApproval: true },
            { type: "message", text: "leaf done" }
          ]
        }
      ]
    }
  }
  const child = treeScript(fanout, depth - 1)
  return {
    turns: [
      {
        repeat: 1,
        steps: [
          {
            type: "spawn",
            agents: Array.from({ length: fanout }, (_, i) => ({ name: `c${i}`, script: child, input: "work" }))
          },
          { type: "message", text: "all children done" }
        ]
      }
    ]
  }
}

/** Threads in one tree, the root included. */
const treeSize = (fanout: number, depth: number): number =>
  Array.from({ length: depth + 1 }, (_, level) => fanout ** level).reduce((a, b) => a + b, 0)

/** Pids of this process's live children (Linux /proc). */
const childProcesses = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  const pids = new Set<string>()
  for (const entry of yield* fs.readDirectory("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    const stat = yield* fs.readFileString(`/proc/${entry}/stat`).pipe(Effect.orElseSucceed(() => ""))
    // Field 4 is the parent pid; field 2 (the name in parentheses) may hold spaces, so split after it.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // deputy's process supervisor lives as long as this process: not a leftover.
    if (Number(fields[1]) === process.pid && fields[0] !== "Z" && Number(entry) !== ProcessSupervisor.processId())
      pids.add(entry)
  }
  return pids
})

/** Runs the stress and returns what it found; needs a ThreadManager, an ApprovalRegistry and the platform. */
export const stress = (
  options: StressOptions
): Effect.Effect<StressResult, unknown, ThreadManager | ApprovalRegistry | Parent | Scripted.Requirements> =>
  Effect.gen(function* () {
    const before = yield* childProcesses // e.g. a loader's own helper, which is not ours to count
    const manager = yield* ThreadManager
    const registry = yield* ApprovalRegistry
    const backend = Scripted.backend(treeScript(options.fanout, options.depth))
    const started = yield* Clock.currentTimeMillis
    const cancelReports: Array<CancelReport> = []
    let completedTrees = 0
    let failedTrees = 0

    const runTree = (cancelIt: boolean) =>
      Effect.gen(function* () {
        const root = yield* manager.start({ backend })
        yield* root.submit({ type: "user_input", items: [{ type: "text", text: "go" }] })
        let failed = false
        while (true) {
          const event = yield* root.delegate.take
          // A child's status already says whether anything under it failed (its own children included).
          if (
            event.msg.type === "error" ||
            (event.msg.type === "sub_agent_ended" && event.msg.status !== "completed")
          ) {
            failed = true
          }
          if (cancelIt && event.msg.type === "sub_agent_started") {
            cancelReports.push(yield* manager.cancel(root.threadId))
            return
          }
          if (event.msg.type === "turn_complete") {
            if (failed) failedTrees++
            else completedTrees++
            yield* manager.remove(root.threadId)
            return
          }
        }
      })

    const plan = yield* Effect.forEach(Array.from({ length: options.trees }), () =>
      Effect.map(Random.next, (r) => r < options.cancel)
    )
    yield* Effect.forEach(plan, runTree, { concurrency: "unbounded", discard: true })
    const seconds = ((yield* Clock.currentTimeMillis) - started) / 1000
    return {
      threads: options.trees * treeSize(options.fanout, options.depth),
      completedTrees,
      failedTrees,
      cancelledTrees: cancelReports.length,
      cancelReports,
      seconds,
      leftThreads: (yield* manager.list).length,
      leftPending: (yield* registry.pending).length,
      leftProcesses: [...(yield* childProcesses)].filter((pid) => !before.has(pid)).length
    } satisfies StressResult
  })

/** The layers a stress run needs, in a temporary home: the root policy approves `true` only. */
export const stressLayer = (cap: number) =>
  Layer.unwrapScoped(
    Effect.gen(function* () {
      const home = yield* (yield* FileSystem.FileSystem).makeTempDirectoryScoped({ prefix: "deputy-stress-" })
      return ThreadManager.layerWith({ limits: { perTree: cap } }).pipe(
        Layer.provideMerge(RolloutStore.layer({ home })),
        Layer.provideMerge(
          ApprovalRegistry.layer.pipe(
            Layer.provide(Parent.layerPolicy(policy({ exec: [{ prefix: ["true"], decision: "approved" }] })))
          )
        )
      )
    })
  ).pipe(Layer.provideMerge(NodeContext.layer))

if (import.meta.url === `file://${process.argv[1]}`) {
  // `npm run stress -- …` passes a leading `--` through; parseArgs would read it as the end of options.
  const argv = process.argv.slice(2)
  const { values } = parseArgs({
    args: argv[0] === "--" ? argv.slice(1) : argv,
    options: {
      trees: { type: "string", default: "20" },
      fanout: { type: "string", default: "3" },
      depth: { type: "string", default: "2" },
      cancel: { type: "string", default: "0.3" },
      cap: { type: "string", default: "4" }
    }
  })
  const options: StressOptions = {
    trees: Number(values.trees),
    fanout: Number(values.fanout),
    depth: Number(values.depth),
    cancel: Number(values.cancel),
    cap: Number(values.cap)
  }
  Effect.gen(function* () {
    const result = yield* stress(options)
    const withdrawn = result.cancelReports.reduce((n, r) => n + r.withdrawn.length, 0)
    const ended = result.cancelReports.flatMap((r) => r.threads.map((t) => t.outcome))
    console.log(`trees ${options.trees} × ${result.threads / options.trees} threads, cap ${options.cap} per tree`)
    console.log(`${result.threads} threads planned in ${result.seconds.toFixed(2)} s`)
    console.log(
      `completed trees ${result.completedTrees}, failed trees ${result.failedTrees}, cancelled trees ${result.cancelledTrees}`
    )
    console.log(
      `cancels ended ${ended.length} threads (${[...new Set(ended)].join(", ") || "none"}), withdrew ${withdrawn} requests`
    )
    console.log(
      `left over: ${result.leftThreads} threads, ${result.leftPending} pending requests, ${result.leftProcesses} child processes`
    )
    if (result.leftThreads + result.leftPending + result.leftProcesses > 0) process.exitCode = 1
  }).pipe(Effect.provide(stressLayer(options.cap)), NodeRuntime.runMain)
}
