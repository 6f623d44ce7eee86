/**
 * The long-lived manager benchmark (issue 9, finding 6). One ThreadManager runs THREADS (4,000; 20,000 in
 * BENCHMARKS.md's first run) threads one
 * after another: 10,000 scripted trees of a root and one sub-agent, under per-tree, per-parent and
 * per-backend caps (so every tree gets slot pools), every root ended by `remove` or, one in two, by
 * `cancel`. After each block of 2,000 threads it prints the block's wall and CPU time (CPU time is
 * what to compare on a shared machine: wall time moves with the load of other processes); after the
 * first and the last block it collects garbage and prints the heap. A flat manager keeps the last
 * block's heap within 10 % of the first's, and the last block as fast as the first.
 *
 *   node --expose-gc --conditions=@deputy/source --import tsx test/bench/manager-longrun.bench.ts
 */
import { Parent, RolloutStore, ThreadManager } from "@deputy/core"
import { type Script, userText } from "@deputy/protocol"
import { Scripted } from "@deputy/scripted"
import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { compare, type Figure, knob, main } from "./harness.js"

const THREADS = knob("BENCH_LONGRUN_THREADS", 4_000)
const BLOCK = knob("BENCH_LONGRUN_BLOCK", 1_000)
const TREE = 2 // a root and one sub-agent

const leaf: Script = { turns: [{ repeat: 1, steps: [{ type: "message", text: "leaf done" }] }] }
const root: Script = {
  turns: [
    {
      repeat: 1,
      steps: [
        { type: "spawn", agents: [{ name: "leaf", script: leaf, input: "work" }] },
        { type: "message", text: "root heard: {{child.leaf}}" }
      ]
    }
  ]
}

const gc = (globalThis as { gc?: () => void }).gc
const heapMb = () => {
  gc?.()
  gc?.()
  return process.memoryUsage().heapUsed / 2 ** 20
}

const program = Effect.gen(function* () {
  if (gc === undefined) console.log("warning: run with --expose-gc for comparable heap figures")
  const manager = yield* ThreadManager
  const backend = Scripted.backend(root)
  const runTree = (i: number) =>
    Effect.gen(function* () {
      const thread = yield* manager.start({ backend })
      yield* thread.submit(userText(`tree ${i}`))
      while ((yield* thread.delegate.take).msg.type !== "turn_complete") {
        // read the root's events until its turn ends
      }
      if (i % 2 === 0) yield* manager.remove(thread.threadId)
      else yield* manager.cancel(thread.threadId)
    })
  const blocks: Array<number> = []
  const cpuBlocks: Array<number> = []
  let firstHeap = 0
  for (let block = 0; block < THREADS / BLOCK; block++) {
    const started = performance.now()
    const cpuStarted = process.cpuUsage()
    for (let i = 0; i < BLOCK / TREE; i++) yield* runTree(block * (BLOCK / TREE) + i)
    const seconds = (performance.now() - started) / 1000
    const cpu = process.cpuUsage(cpuStarted)
    const cpuSeconds = (cpu.user + cpu.system) / 1e6
    blocks.push(seconds)
    cpuBlocks.push(cpuSeconds)
    const heap = block === 0 || block === THREADS / BLOCK - 1 ? heapMb() : undefined
    if (block === 0) firstHeap = heap ?? 0
    console.error(
      `threads ${(block + 1) * BLOCK}: block ${seconds.toFixed(2)} s wall, ${cpuSeconds.toFixed(2)} s CPU ` +
        `(${((cpuSeconds * 1000) / BLOCK).toFixed(3)} ms CPU/thread)` +
        (heap === undefined ? "" : `, heap ${heap.toFixed(1)} MB`)
    )
  }
  const lastHeap = heapMb()
  console.error(
    `heap after the first ${BLOCK}: ${firstHeap.toFixed(1)} MB; after the last ${BLOCK}: ${lastHeap.toFixed(1)} MB; ` +
      `ratio ${(lastHeap / firstHeap).toFixed(3)}`
  )
  console.error(
    `wall time of the first ${BLOCK}: ${blocks[0]!.toFixed(2)} s; of the last: ${blocks.at(-1)!.toFixed(2)} s; ` +
      `ratio ${(blocks.at(-1)! / blocks[0]!).toFixed(3)}`
  )
  console.error(
    `CPU time of the first ${BLOCK}: ${cpuBlocks[0]!.toFixed(2)} s; of the last: ${cpuBlocks.at(-1)!.toFixed(2)} s; ` +
      `ratio ${(cpuBlocks.at(-1)! / cpuBlocks[0]!).toFixed(3)}`
  )
  const live = (yield* manager.list).length
  const log = (yield* manager.opLog).length
  console.error(`live threads ${live}, op log entries ${log}`)
  const blocksText = `${THREADS.toLocaleString("en-US")} threads, blocks of ${BLOCK.toLocaleString("en-US")}`
  return [
    compare(
      "longrun",
      `heap after the last block (${blocksText})`,
      "MB",
      [lastHeap],
      {
        name: "after the first block",
        samples: [firstHeap]
      },
      { text: "ratio ≤ 1.10", met: (r) => r <= 1.1 }
    ),
    compare("longrun", "CPU time of the last block", "s", [cpuBlocks.at(-1)!], {
      name: "the first block",
      samples: [cpuBlocks[0]!]
    }),
    compare("longrun", "op log entries at the end, no thread live", "entries", [log], undefined, {
      text: "0",
      met: (_, m) => m === 0 && live === 0
    })
  ] satisfies ReadonlyArray<Figure>
})

const layer = Layer.unwrapScoped(
  Effect.gen(function* () {
    const home = yield* (yield* FileSystem.FileSystem).makeTempDirectoryScoped({ prefix: "deputy-longrun-" })
    return ThreadManager.layerWith({
      limits: { perTree: 1, perParent: 1, perBackend: { scripted: 64 } }
    }).pipe(Layer.provideMerge(RolloutStore.layer({ home })))
  })
).pipe(Layer.provideMerge(Parent.layerCallbacks({})), Layer.provideMerge(NodeContext.layer))

main(() => Effect.runPromise(program.pipe(Effect.provide(layer))))
