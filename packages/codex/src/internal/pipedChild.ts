/**
 * Starting a Codex child (app-server or exec) under core's supervisor with its stdio piped. The
 * caller's `setup` runs in the tick of the spawn, before the child can do anything unseen: listen for
 * its exit (one right away is never missed), write its stdin. Starting succeeds once the child has
 * spawned; a child Node refuses (a NUL byte in an argument or the env) or that never ran (no such
 * program or cwd) fails it with the reason.
 */
import { ProcessSupervisor } from "@deputy/core"
import type { Duration } from "effect"
import { Effect } from "effect"

/** A child under supervision, as `ProcessSupervisor.spawn` gives it. */
export type Supervised = ReturnType<typeof ProcessSupervisor.spawn>

/** Why a child could not be started. */
export interface NotStarted {
  readonly reason: string
  readonly cause: unknown
}

/** Starts `file args…` with piped stdio under the supervisor, `setup` run in the spawn's tick. */
export const startPiped = (
  file: string,
  args: ReadonlyArray<string>,
  options: {
    readonly cwd: string
    readonly env: Readonly<Record<string, string>>
    readonly grace: Duration.DurationInput
  },
  setup: (spawned: Supervised) => void
): Effect.Effect<Supervised, NotStarted> =>
  Effect.async<Supervised, NotStarted>((resume) => {
    let spawned: Supervised
    try {
      spawned = ProcessSupervisor.spawn(file, args, { ...options, stdio: ["pipe", "pipe", "pipe"] })
    } catch (cause) {
      resume(Effect.fail({ reason: cause instanceof Error ? cause.message : String(cause), cause }))
      return
    }
    let started = false
    // Before `spawn`: it never ran. After: a failed kill, which changes nothing.
    spawned.child.on("error", (cause) => {
      if (!started) resume(Effect.fail({ reason: cause.message, cause }))
    })
    setup(spawned)
    spawned.child.once("spawn", () => {
      started = true
      resume(Effect.succeed(spawned))
    })
  })
