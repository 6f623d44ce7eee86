/**
 * Workspace confinement (§28): where a patch's paths really land, and whether that is inside the
 * agent's workspace. A path is resolved the way the kernel would write it — component by component,
 * every existing symlink followed — so `../`, absolute paths and symlinks pointing out are all caught.
 * Stateless: every call reads the file system afresh.
 */
import { isAbsolute, relative, resolve, sep } from "node:path"
import type { FileChanges } from "@deputy/protocol"
import { Data, Effect } from "effect"
import { realTarget, realTargets } from "./internal/realTarget.js"

/** Where an agent may write: its cwd, and further roots the caller adds. */
export interface Workspace {
  /** The directory relative paths are resolved against; always a root. */
  readonly cwd: string
  /** More directories writes may land in (absolute, or relative to `cwd`). */
  readonly writableRoots?: ReadonlyArray<string>
}

/** A patch path that lands outside every workspace root (or cannot be resolved, which is the same to us). */
export class OutsideWorkspace extends Data.TaggedError("OutsideWorkspace")<{
  /** The path as the patch gave it. */
  readonly path: string
  /** Where it really lands (symlinks followed), or why that cannot be known. */
  readonly resolved: string
  /** The workspace roots, real paths. */
  readonly roots: ReadonlyArray<string>
}> {
  override get message() {
    return `${this.path} resolves to ${this.resolved}, outside the workspace (${this.roots.join(", ")})`
  }
}

/** One path a patch touches, confined. */
export interface ConfinedPath {
  /** As the patch gave it. */
  readonly path: string
  /** The real absolute path the write lands on. */
  readonly real: string
  /** Relative to the real cwd when inside it, else the real absolute path (inside an added root). What globs see. */
  readonly relative: string
}

/** Every path a patch touches (sources and `movePath` destinations), confined; `relative` sorted and unique. */
export interface ConfinedPatch {
  readonly paths: ReadonlyArray<ConfinedPath>
  /** The workspace-relative paths, sorted, without duplicates: what policies and session approvals see. */
  readonly relative: ReadonlyArray<string>
}

/** Strictly inside `root` (the root itself is not a file a patch may write). */
const isInside = (root: string, real: string) => {
  const rel = relative(root, real)
  return rel !== "" && rel !== ".." && !rel.startsWith(`..${sep}`) && !isAbsolute(rel)
}

/** The workspace's roots as real paths (a root that does not exist yet confines to its would-be path). */
export const realRoots = (workspace: Workspace): Effect.Effect<ReadonlyArray<string>> =>
  Effect.promise(async () => {
    const given = [workspace.cwd, ...(workspace.writableRoots ?? []).map((root) => resolve(workspace.cwd, root))]
    return Promise.all(given.map(async (root) => (await realTarget("/", resolve(root))) ?? resolve(root)))
  })

const confineIn = (
  roots: ReadonlyArray<string>,
  cwd: string,
  path: string
): Effect.Effect<ConfinedPath, OutsideWorkspace> =>
  Effect.gen(function* () {
    // Every reading of the path must land inside: the writer's is not known here (realTarget.ts).
    const reals = yield* Effect.promise(() => realTargets(cwd, path).catch(() => [undefined]))
    if (reals.includes(undefined)) {
      return yield* new OutsideWorkspace({ path, resolved: "(a dangling or unreadable symlink)", roots })
    }
    const landings = reals as ReadonlyArray<string>
    const out = landings.find((real) => !roots.some((root) => isInside(root, real)))
    if (out !== undefined) return yield* new OutsideWorkspace({ path, resolved: out, roots })
    const real = landings[0]!
    const realCwd = roots[0]!
    return { path, real, relative: isInside(realCwd, real) ? relative(realCwd, real) : real }
  })

/** Confines one path: where it lands, or OutsideWorkspace. */
export const confinePath = (workspace: Workspace, path: string): Effect.Effect<ConfinedPath, OutsideWorkspace> =>
  Effect.flatMap(realRoots(workspace), (roots) => confineIn(roots, workspace.cwd, path))

/** Confines every path `changes` touches — each key and each `movePath` — failing on the first outside. */
export const confinePatch = (
  workspace: Workspace,
  changes: FileChanges
): Effect.Effect<ConfinedPatch, OutsideWorkspace> =>
  Effect.gen(function* () {
    const given = Object.entries(changes).flatMap(([path, change]) =>
      change.type === "update" && change.movePath !== undefined ? [path, change.movePath] : [path]
    )
    const roots = yield* realRoots(workspace)
    const paths = yield* Effect.forEach(given, (path) => confineIn(roots, workspace.cwd, path))
    return { paths, relative: [...new Set(paths.map((p) => p.relative))].sort() }
  })
