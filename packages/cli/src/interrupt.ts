/**
 * Ctrl-C. The first one aborts what the command is doing (its runs cancel their threads: Interrupt,
 * Shutdown, drain) and the command exits 130 once that is done; a second one exits 130 at once.
 * `chat` moves the first Ctrl-C to the turn in flight, so only an idle Ctrl-C (or a second) ends it.
 */

/** What the next Ctrl-C cancels. */
export interface Interrupts {
  /** Aborts on the first Ctrl-C (or `cancel`). */
  readonly signal: AbortSignal
  /** Cancels as a Ctrl-C would; `reason` says why (`timeout`, `interrupted`). */
  readonly cancel: (reason: string) => void
  /** Why the signal aborted, if it did. */
  readonly reason: () => string | undefined
  /** The handler for a Ctrl-C read from a terminal in raw mode. */
  readonly onCtrlC: () => void
  /** Stops listening for SIGINT. */
  readonly dispose: () => void
}

/** Listens for SIGINT until `dispose`. `onSecond` runs before the immediate exit (restore the terminal). */
export const listenForInterrupts = (onSecond: () => void = () => undefined): Interrupts => {
  const controller = new AbortController()
  let why: string | undefined
  const cancel = (reason: string) => {
    if (why !== undefined) return
    why = reason
    controller.abort(reason)
  }
  const onCtrlC = () => {
    // Already cancelling (a Ctrl-C, or the timeout): this one ends the process without waiting.
    if (why !== undefined) {
      onSecond()
      process.stderr.write("deputy: interrupted again: exiting now\n")
      process.exit(130)
    }
    cancel("interrupted")
    process.stderr.write("deputy: interrupted: cancelling (Ctrl-C again to exit at once)\n")
  }
  process.on("SIGINT", onCtrlC)
  return {
    signal: controller.signal,
    cancel,
    reason: () => why,
    onCtrlC,
    dispose: () => process.off("SIGINT", onCtrlC)
  }
}
