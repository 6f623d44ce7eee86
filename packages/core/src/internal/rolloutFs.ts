/**
 * The file operations on a thread's hot path (issue 12): creating its rollout, appending to it, and
 * its live marker. They run on node:fs's callback API, a whole sequence (open, write, close) in one
 * promise the caller wraps once, not as an Effect per step through @effect/platform's FileSystem:
 * with a thousand threads starting, every step cost a fiber suspension, a promise or a FileHandle,
 * and an error mapping, for a few hundred bytes. Errors are node's own (`code`, `message` naming the
 * call and the path). Folders are made once per store (`KnownDirs`) and made again when an operation
 * finds its folder gone.
 */
import { randomUUID } from "node:crypto"
import * as NodeFs from "node:fs"
import { basename, dirname, join } from "node:path"

/** A node:fs error's code (`ENOENT`, …), or undefined for anything else. */
export const errorCode = (error: unknown): string | undefined =>
  typeof error === "object" && error !== null && "code" in error && typeof error.code === "string"
    ? error.code
    : undefined

const done =
  <A>(resolve: (value: A) => void, reject: (error: unknown) => void) =>
  (error: NodeJS.ErrnoException | null, value: A) =>
    error === null ? resolve(value) : reject(error)

/** `open(2)`. */
export const open = (file: string, flags: number | string, mode?: number): Promise<number> =>
  new Promise((resolve, reject) => NodeFs.open(file, flags, mode, done(resolve, reject)))

/** `close(2)`. */
export const close = (fd: number): Promise<void> =>
  new Promise((resolve, reject) => NodeFs.close(fd, (error) => (error === null ? resolve() : reject(error))))

/** The size of an open file. */
export const sizeOf = (fd: number): Promise<number> =>
  new Promise((resolve, reject) =>
    NodeFs.fstat(fd, (error, stats) => (error === null ? resolve(stats.size) : reject(error)))
  )

/** `unlink(2)`; true when it removed the file, false when there was none. */
export const unlinkIfThere = (file: string): Promise<boolean> =>
  new Promise((resolve, reject) =>
    NodeFs.unlink(file, (error) =>
      error === null ? resolve(true) : errorCode(error) === "ENOENT" ? resolve(false) : reject(error)
    )
  )

/** `link(2)`; false when `to` exists (EEXIST). */
export const linkUnlessThere = (from: string, to: string): Promise<boolean> =>
  new Promise((resolve, reject) =>
    NodeFs.link(from, to, (error) =>
      error === null ? resolve(true) : errorCode(error) === "EEXIST" ? resolve(false) : reject(error)
    )
  )

/** What `writeAll` needs of a file: one `writev` call. */
export interface VectorWriter {
  readonly writev: (buffers: ReadonlyArray<Uint8Array>) => Promise<{ readonly bytesWritten: number }>
}

/** The `VectorWriter` of an open file descriptor (writes at its offset: the end, under O_APPEND). */
export const vectorWriter = (fd: number): VectorWriter => ({
  writev: (buffers) =>
    new Promise((resolve, reject) =>
      NodeFs.writev(fd, buffers as Array<NodeJS.ArrayBufferView>, (error, bytesWritten) =>
        error === null ? resolve({ bytesWritten }) : reject(error)
      )
    )
})

/** Writes every byte of `chunks` in order (writev, again from where a short write stopped); returns how many. */
export const writeAll = async (handle: VectorWriter, chunks: ReadonlyArray<Uint8Array>): Promise<number> => {
  let total = 0
  let rest = chunks
  while (rest.length > 0) {
    const { bytesWritten } = await handle.writev(rest)
    if (bytesWritten === 0) throw new Error(`wrote 0 of the ${rest.length} chunk(s) left`)
    total += bytesWritten
    let skip = bytesWritten
    let index = 0
    while (index < rest.length && skip >= rest[index]!.byteLength) skip -= rest[index++]!.byteLength
    rest = rest.slice(index)
    if (skip > 0) rest = [rest[0]!.subarray(skip), ...rest.slice(1)]
  }
  return total
}

/**
 * The folders one store has made (mode 0700, §32), so that a thousand threads starting on one day
 * make its folder once, not once each. A folder someone removed since is made again: `within`
 * retries an operation that failed with ENOENT once, after making its folder.
 */
export class KnownDirs {
  private readonly made = new Set<string>()
  private readonly making = new Map<string, Promise<void>>()

  /** Forgets that `dir` was made (someone removed it): the next `ensure` makes it again. */
  forget(dir: string): void {
    this.made.delete(dir)
  }

  /** Makes `dir` (and its parents) unless this store made it already. */
  ensure(dir: string): Promise<void> {
    if (this.made.has(dir)) return Promise.resolve()
    let making = this.making.get(dir)
    if (making === undefined) {
      making = new Promise<void>((resolve, reject) =>
        NodeFs.mkdir(dir, { recursive: true, mode: 0o700 }, (error) => {
          this.making.delete(dir)
          if (error !== null) return reject(error)
          this.made.add(dir)
          resolve()
        })
      )
      this.making.set(dir, making)
    }
    return making
  }

  /**
   * Runs `operation` on something in `dir` once `dir` exists. When it fails with ENOENT (the folder
   * was removed after this store made it), makes the folder again and runs it once more.
   */
  async within<A>(dir: string, operation: () => Promise<A>): Promise<A> {
    await this.ensure(dir)
    try {
      return await operation()
    } catch (error) {
      if (errorCode(error) !== "ENOENT") throw error
      this.forget(dir)
      await this.ensure(dir)
      return await operation()
    }
  }
}

/**
 * Creates `file` (mode 0600) holding `chunks`, making its folder first. `flag` is `wx` for a file
 * that must be new (EEXIST otherwise) or `w` to redo one this writer half-made.
 */
export const createFile = (
  dirs: KnownDirs,
  file: string,
  chunks: ReadonlyArray<Uint8Array>,
  flag: "wx" | "w"
): Promise<number> =>
  dirs.within(dirname(file), async () => {
    const fd = await open(file, flag, 0o600)
    try {
      return await writeAll(vectorWriter(fd), chunks)
    } finally {
      await close(fd)
    }
  })

/**
 * Creates `file` holding `text` exclusively and whole (§34): written to a temporary file beside it,
 * then hard-linked to its name, which fails when the name exists, so nobody ever reads it
 * half-written and of two creators one wins. False when `file` exists. The temporary file goes.
 */
export const linkNewFile = (dirs: KnownDirs, file: string, text: string): Promise<boolean> => {
  const dir = dirname(file)
  return dirs.within(dir, async () => {
    const temp = join(dir, `.${basename(file)}.${randomUUID()}.tmp`)
    try {
      await new Promise<void>((resolve, reject) =>
        NodeFs.writeFile(temp, text, { flag: "wx", mode: 0o600 }, (error) =>
          error === null ? resolve() : reject(error)
        )
      )
      return await linkUnlessThere(temp, file)
    } finally {
      await unlinkIfThere(temp).catch(() => false)
    }
  })
}
