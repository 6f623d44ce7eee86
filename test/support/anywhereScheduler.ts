/**
 * A scheduler for tests that yields a fiber at any op, chosen by a seeded generator, and runs the
 * yielded fibers one macrotask later, in order. It finds lost wake-ups: a fiber that checks a condition,
 * yields, and only then waits for it to change misses the change made while it was away. It tells the
 * test when it falls idle (nothing queued through a macrotask) so a program that waits for no timer or
 * I/O can be declared stalled at once instead of after a timeout.
 */
import { type Fiber, Scheduler } from "effect"

/** Yields at a chosen fraction of ops; `onIdle` runs when no task has been queued for a macrotask. */
export class AnywhereScheduler implements Scheduler.Scheduler {
  private state: number
  private queued = 0
  private readonly runner = new Scheduler.SchedulerRunner((_depth, drain) => {
    setImmediate(() => {
      this.queued = 0
      drain(0)
      // Tasks a drain queues itself start another drain; none means the program may be idle.
      if (this.queued === 0) setImmediate(() => this.queued === 0 && this.onIdle())
    })
  })

  constructor(
    seed: number,
    readonly yieldRate: number,
    private readonly onIdle: () => void
  ) {
    this.state = seed >>> 0 || 1
  }

  /** A xorshift32 step: the same seed yields at the same ops. */
  private next(): number {
    let x = this.state
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    this.state = x >>> 0
    return this.state / 0x1_0000_0000
  }

  /** Yields this op with probability `yieldRate`. */
  shouldYield(_fiber: Fiber.RuntimeFiber<unknown, unknown>): number | false {
    return this.next() < this.yieldRate ? 0 : false
  }

  /** Queues a task for the next macrotask. */
  scheduleTask(task: Scheduler.Task, priority: number): void {
    this.queued++
    this.runner.scheduleTask(task, priority)
  }
}
