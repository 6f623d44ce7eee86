/**
 * The run of every agent: a temporary workspace and home, every top-level agent's plan, the parent, a
 * ThreadManager over them (on Codex also the mock model and the shared app-server), then each
 * top-level agent's run, `concurrency` at a time, each checked as it ends. All of it lives in the
 * caller's scope.
 */
import { ApprovalRegistry, RolloutStore, ThreadManager } from "@deputy/core"
import { FileSystem } from "@effect/platform"
import { Effect, Layer } from "effect"
import type { StressOptions } from "../stress.js"
import { type Check, runAgent } from "./agent.js"
import { codexSetup } from "./codex.js"
import { makeParent } from "./parent.js"
import { planFor } from "./plan.js"

/** A run's settings: every option with its default, but the test's fault and the progress callback. */
export type RunSettings = Required<Omit<StressOptions, "wrapAgent" | "onProgress">> &
  Pick<StressOptions, "wrapAgent" | "onProgress">

/** Runs every agent of a run, checking each with `check`; returns what is left in the manager and the registry. */
export const runAll = (settings: RunSettings & { readonly check: Check }) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const workspace = yield* fs.makeTempDirectoryScoped({ prefix: "deputy-stress-work-" })
    const plans = Array.from({ length: settings.agents }, (_, i) =>
      planFor(settings.seed, i, settings.cancelShare, settings.backend)
    )
    const byThread = new Map(plans.map((p) => [p.threadId as string, p]))
    const parent = makeParent(settings.seed, byThread)
    const home = yield* fs.makeTempDirectoryScoped({ prefix: "deputy-stress-home-" })
    const layer = ThreadManager.layerWith({ limits: { perParent: settings.perParent } }).pipe(
      Layer.provideMerge(RolloutStore.layer({ home })),
      Layer.provideMerge(parent.registryLayer)
    )

    // On Codex: the mock model, Codex's home and the shared app-server, for the whole run.
    const codex =
      settings.backend === "codex"
        ? yield* codexSetup(
            plans.flatMap((p) => (p.codex === undefined ? [] : [p.codex])),
            workspace,
            yield* fs.makeTempDirectoryScoped({ prefix: "deputy-stress-codex-home-" })
          )
        : undefined

    return yield* Effect.gen(function* () {
      const manager = yield* ThreadManager
      const registry = yield* ApprovalRegistry
      const run = {
        manager,
        store: yield* RolloutStore,
        fs,
        workspace,
        plans: byThread,
        parent,
        codex,
        boundMs: settings.boundMs,
        wrapAgent: settings.wrapAgent,
        check: settings.check
      }
      yield* parent.answerAtRegistry

      let ended = 0
      // Threads started: the top-level ones and every nested one the recordings saw start (no walk of the store).
      let threads = 0
      yield* Effect.forEach(
        plans,
        (p) =>
          Effect.flatMap(runAgent(run, p), (o) =>
            Effect.sync(() => {
              threads += o.threads
              ended++
              settings.onProgress?.(ended, plans.length)
            })
          ),
        { concurrency: settings.concurrency, discard: true }
      )
      const leftThreads = (yield* manager.list).length
      const leftPending = (yield* registry.pending).map((p) => p.requestId)
      return { leftThreads, leftPending, threads, approvals: parent.records.size }
    }).pipe(Effect.provide(layer))
  })
