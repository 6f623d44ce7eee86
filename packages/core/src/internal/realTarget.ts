/**
 * Where a write to a path really lands (§28), for Workspace's confinement: each existing component
 * resolved with its symlinks, `..` applied to what is real so far (as the kernel does), and once a
 * component is missing the rest appended as written. A dangling symlink cannot be proved safe.
 *
 * A writer may also normalise the path first (`a/link/../b` read as `a/b`, as Node's `path.join` and
 * Codex's path absolutising do) and only then let the kernel follow the links. The two readings part
 * at a `..` after a symlink, so `realTargets` gives both, and confinement needs both inside.
 */
import { lstat, realpath } from "node:fs/promises"
import { dirname, isAbsolute, join, normalize } from "node:path"

const isMissing = (error: unknown) => {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  return code === "ENOENT" || code === "ENOTDIR"
}

/** One component after the real path `current`: its real path, missing, or unsafe (a dangling link, an unreadable one). */
type Step = { readonly real: string } | "missing" | "unsafe"

const step = async (current: string, part: string): Promise<Step> => {
  const next = join(current, part)
  try {
    return { real: await realpath(next) }
  } catch (error) {
    if (!isMissing(error)) return "unsafe"
    // realpath fails on a dangling link too; a write through it would land wherever it points.
    const isLink = await lstat(next).then(
      (stat) => stat.isSymbolicLink(),
      () => false
    )
    return isLink ? "unsafe" : "missing"
  }
}

/**
 * The real path a write to `path` (relative to `cwd`) lands on, or undefined when that cannot be
 * proved (a dangling or unreadable symlink on the way).
 */
export const realTarget = async (cwd: string, path: string): Promise<string | undefined> => {
  // Not `join`: it would apply a `..` to the link before it, where the kernel applies it to the link's target.
  const absolute = isAbsolute(path) ? path : `${cwd}/${path}`
  // The usual case, a new file in a folder that exists: the folder in one realpath (for an existing
  // path without `.` or `..` that is where the steps reach), then the last step as they take it.
  const parts = absolute.split("/")
  const leaf = parts.at(-1)
  if (parts.length > 2 && leaf !== "" && !parts.some((part) => part === "." || part === "..")) {
    const folder = await realpath(dirname(absolute)).catch(() => undefined)
    if (folder !== undefined) {
      const last = await step(folder, leaf!)
      return last === "unsafe" ? undefined : last === "missing" ? join(folder, leaf!) : last.real
    }
  }
  return realTargetByStep(absolute)
}

/** `realTarget` of an absolute path, one component at a time: the definition the fast path agrees with. */
export const realTargetByStep = async (absolute: string): Promise<string | undefined> => {
  let current = "/"
  let missing = false
  for (const part of absolute.split("/")) {
    if (part === "" || part === ".") continue
    if (part === "..") {
      current = dirname(current)
      continue
    }
    if (missing) {
      current = join(current, part)
      continue
    }
    const next = await step(current, part)
    if (next === "unsafe") return undefined
    missing = next === "missing"
    current = next === "missing" ? join(current, part) : next.real
  }
  return current
}

/** Whether `path` has a `.` or `..` component: then a normalising writer may read it otherwise than the kernel. */
const hasDots = (path: string) => path.split("/").some((part) => part === "." || part === "..")

/**
 * Where a write to `path` (relative to `cwd`) may land, each reading's real path or undefined: as the
 * kernel reads it, then, when a `.` or `..` could make them part, as a writer that normalises it first.
 */
export const realTargets = async (cwd: string, path: string): Promise<ReadonlyArray<string | undefined>> => {
  const written = isAbsolute(path) ? path : `${cwd}/${path}`
  if (!hasDots(written)) return [await realTarget("/", written)]
  return Promise.all([realTarget("/", written), realTarget("/", normalize(written))])
}
