/**
 * Applies a `patch` step's file changes for real, relative to the agent's cwd and confined to its
 * workspace (§28): every path is resolved again here, symlinks followed, and the write goes to that
 * real path, so nothing lands outside even if an approval was given for it. Every change is worked
 * out in memory first (reads, diffs), so a diff that does not apply changes no file at all.
 */
import { dirname } from "node:path"
import { confinePatch, type Workspace } from "@deputy/core"
import type { FileChanges } from "@deputy/protocol"
import { FileSystem } from "@effect/platform"
import { applyPatch, parsePatch, type StructuredPatch } from "diff"
import { Effect } from "effect"

/** How applying went: `stderr` names each file that failed. */
export interface PatchResult {
  readonly success: boolean
  readonly stdout: string
  readonly stderr: string
}

type Write =
  | { readonly kind: "write"; readonly path: string; readonly content: string }
  | { readonly kind: "remove"; readonly path: string }

const parseUnifiedDiff = (unifiedDiff: string): StructuredPatch | string => {
  let patches: Array<StructuredPatch>
  try {
    patches = parsePatch(unifiedDiff)
  } catch (error) {
    return error instanceof Error ? error.message : String(error)
  }
  const [patch, ...more] = patches
  if (patch === undefined || more.length > 0) return "expected the diff of exactly one file"
  if (patch.hunks.length === 0) return "the diff has no hunks"
  // `diff` reads a malformed hunk header as NaN line numbers and then "applies" it to nothing.
  if (patch.hunks.some((h) => [h.oldStart, h.oldLines, h.newStart, h.newLines].some(Number.isNaN))) {
    return "malformed hunk header"
  }
  return patch
}

/** Applies `changes` inside `workspace`. Never fails: problems (a path outside included) come back as `success: false`. */
export const applyChanges = (
  workspace: Workspace,
  changes: FileChanges
): Effect.Effect<PatchResult, never, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const confined = yield* Effect.either(confinePatch(workspace, changes))
    if (confined._tag === "Left") return { success: false, stdout: "", stderr: `${confined.left.message}\n` }
    const real = new Map(confined.right.paths.map((p) => [p.path, p.real]))
    const writes: Array<Write> = []
    const failures: Array<string> = []
    const summary: Array<string> = []
    for (const [path, change] of Object.entries(changes)) {
      const target = real.get(path)!
      switch (change.type) {
        case "add":
          writes.push({ kind: "write", path: target, content: change.content })
          summary.push(`A ${path}`)
          break
        case "delete":
          if (yield* fs.exists(target).pipe(Effect.orElseSucceed(() => false))) {
            writes.push({ kind: "remove", path: target })
            summary.push(`D ${path}`)
          } else {
            failures.push(`${path}: cannot delete: no such file`)
          }
          break
        case "update": {
          const source = yield* Effect.either(fs.readFileString(target))
          if (source._tag === "Left") {
            failures.push(`${path}: cannot read: ${source.left.message}`)
            break
          }
          const patch = parseUnifiedDiff(change.unifiedDiff)
          const patched = typeof patch === "string" ? patch : applyPatch(source.right, patch)
          if (typeof patch === "string" || patched === false) {
            failures.push(`${path}: the diff does not apply${typeof patch === "string" ? `: ${patch}` : ""}`)
            break
          }
          const destination = change.movePath === undefined ? target : real.get(change.movePath)!
          writes.push({ kind: "write", path: destination, content: patched })
          if (destination !== target) writes.push({ kind: "remove", path: target })
          summary.push(change.movePath === undefined ? `M ${path}` : `M ${path} -> ${change.movePath}`)
          break
        }
      }
    }
    if (failures.length > 0) return { success: false, stdout: "", stderr: `${failures.join("\n")}\n` }
    for (const write of writes) {
      const done = yield* Effect.either(
        write.kind === "write"
          ? Effect.zipRight(
              fs.makeDirectory(dirname(write.path), { recursive: true }),
              fs.writeFileString(write.path, write.content)
            )
          : fs.remove(write.path)
      )
      if (done._tag === "Left") failures.push(`${write.path}: ${done.left.message}`)
    }
    return failures.length > 0
      ? { success: false, stdout: "", stderr: `${failures.join("\n")}\n` }
      : { success: true, stdout: `Success. Updated the following files:\n${summary.join("\n")}\n`, stderr: "" }
  })
