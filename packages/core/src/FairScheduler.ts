/**
 * deputy's scheduler (§37): Effect fibers run in microtasks, and Effect 3.22's default scheduler keeps a
 * yield budget per fiber, so two fibers waking each other (a delegate's forwarder and its agent, through
 * a Mailbox) never fall back to a macrotask: while events stream, no timer, I/O callback or child-process
 * output runs in the process. This scheduler has one run queue for every fiber on it and a global time
 * slice: once a slice is used up, the next batch of fiber work waits for a macrotask (`setImmediate`),
 * after due timers and I/O. Work woken once the event loop has turned (a timer, a pipe, a child's exit)
 * starts a new slice at once. It lives for the process (one per process, like Effect's default).
 *
 * Effect 4 moved to a global budget (effect-smol PR #2360); this is the same idea for Effect 3.
 * Every delegate runs its agent and forwarders on it without the caller doing anything; `layer`
 * installs it for a whole program.
 */
import { Effect, type Fiber, FiberRef, GlobalValue, Layer, Scheduler } from "effect"

/** How long fiber work may run before timers and I/O get a turn, by default. */
export const DEFAULT_SLICE_MILLIS = 1

/** The per-fiber yield budget (ops), as in Effect's default scheduler. */
const MAX_OPS_BEFORE_YIELD = 2048

/** A scheduler with one run queue and a global time slice, after which it yields to the event loop. */
export class FairScheduler implements Scheduler.Scheduler {
  private sliceStart = performance.now()
  /** Whether the event loop has turned since the run queue last went empty (`watch`). */
  private loopTurned = true
  private watching = false
  /** Whether the drain under way asked for another (so the run queue is not empty). */
  private again = false
  private readonly runner = new Scheduler.SchedulerRunner((depth, drain) => {
    this.again = true
    // Timers and I/O have had their turn since the queue went empty: this work starts a new slice,
    // with no setImmediate hop before it (a fiber woken by a child's exit, a pipe, a file callback).
    if (this.loopTurned) {
      this.loopTurned = false
      this.sliceStart = performance.now()
    }
    if (performance.now() - this.sliceStart < this.sliceMillis) {
      queueMicrotask(() => this.run(drain, depth + 1))
      return
    }
    // The slice is spent: let timers, I/O and other macrotasks run first.
    setImmediate(() => {
      this.sliceStart = performance.now()
      this.run(drain, 0)
    })
  })

  constructor(readonly sliceMillis: number = DEFAULT_SLICE_MILLIS) {}

  private run(drain: (depth: number) => void, depth: number): void {
    this.again = false
    drain(depth)
    if (!this.again) this.watch()
  }

  // The run queue is empty. Work that resumes from a microtask (a promise) has not let the loop run, so
  // only an immediate that ran proves it did. One at a time, unref'd: it never keeps the process alive.
  private watch(): void {
    if (this.watching) return
    this.watching = true
    setImmediate(() => {
      this.watching = false
      this.loopTurned = true
    }).unref()
  }

  /** Yields a fiber after its op budget, like Effect's default; the time slice is checked per batch. */
  shouldYield(fiber: Fiber.RuntimeFiber<unknown, unknown>): number | false {
    return fiber.currentOpCount > MAX_OPS_BEFORE_YIELD ? fiber.getFiberRef(FiberRef.currentSchedulingPriority) : false
  }

  /** Queues a task on the one run queue. */
  scheduleTask(task: Scheduler.Task, priority: number): void {
    this.runner.scheduleTask(task, priority)
  }
}

/** The process's fair scheduler (one, shared by every delegate). */
export const fairScheduler: FairScheduler = GlobalValue.globalValue(
  Symbol.for("@deputy/core/FairScheduler"),
  () => new FairScheduler()
)

/** Runs `effect`, and every fiber it forks, on the fair scheduler. */
export const withFairScheduler = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withScheduler(effect, fairScheduler)

/** Installs the fair scheduler for everything the layer is provided to. */
export const layer: Layer.Layer<never> = Layer.setScheduler(fairScheduler)
