/**
 * §28: where a patch path really lands. The fast path (the folder in one realpath) must agree with
 * the definition, one component at a time, for every path: through symlinks in and out, dangling
 * ones, files used as folders, `.` and `..`, missing folders.
 */
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { isAbsolute, join } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { realTarget, realTargetByStep, realTargets } from "../src/internal/realTarget.js"

const root = realpathSync(mkdtempSync(join(tmpdir(), "deputy-realtarget-")))
const cwd = join(root, "work")
const outside = join(root, "outside")
mkdirSync(join(cwd, "a", "b"), { recursive: true })
mkdirSync(join(outside, "deep"), { recursive: true })
writeFileSync(join(cwd, "file"), "x")
writeFileSync(join(outside, "secret"), "x")
symlinkSync(outside, join(cwd, "out")) // a folder outside
symlinkSync(join(cwd, "a", "b"), join(cwd, "in")) // a folder inside, deeper
symlinkSync(join(outside, "secret"), join(cwd, "a", "linkfile")) // a file outside
symlinkSync(join(outside, "not-yet"), join(cwd, "dangling"))
symlinkSync(join(cwd, "in"), join(cwd, "chain")) // a link to a link
afterAll(() => rmSync(root, { recursive: true, force: true }))

const component = fc.constantFrom(
  "a",
  "b",
  "in",
  "out",
  "chain",
  "dangling",
  "file",
  "linkfile",
  "new",
  "deep",
  ".",
  ".."
)
const path = fc.record({
  absolute: fc.boolean(),
  parts: fc.array(component, { minLength: 1, maxLength: 5 })
})

describe("§28 realTarget", () => {
  it("agrees with the component-by-component definition on every path", async () => {
    await fc.assert(
      fc.asyncProperty(path, async ({ absolute, parts }) => {
        const given = absolute ? `${cwd}/${parts.join("/")}` : parts.join("/")
        // As the kernel reads it: not `join`, which would apply a `..` to the link before it.
        const whole = isAbsolute(given) ? given : `${cwd}/${given}`
        expect(await realTarget(cwd, given)).toBe(await realTargetByStep(whole))
      }),
      { numRuns: 300, seed: 28 }
    )
  })

  it("follows a link out, refuses a dangling one, keeps a new file in a real folder", async () => {
    expect(await realTarget(cwd, "out/new.md")).toBe(join(outside, "new.md"))
    expect(await realTarget(cwd, "dangling")).toBeUndefined()
    expect(await realTarget(cwd, "chain/new.md")).toBe(join(cwd, "a", "b", "new.md"))
    expect(await realTarget(cwd, "a/linkfile")).toBe(join(outside, "secret"))
    expect(await realTarget(cwd, "missing/deeper/x")).toBe(join(cwd, "missing", "deeper", "x"))
  })

  it("gives both readings of a `..` after a link: the kernel's, then a normalising writer's", async () => {
    // out → outside: the kernel climbs from outside; normalised first, `out/..` is the cwd.
    expect(await realTargets(cwd, "out/../x.md")).toEqual([join(root, "x.md"), join(cwd, "x.md")])
    // in → a/b: the kernel climbs from a/b; normalised first, it climbs from the cwd, out of it.
    expect(await realTargets(cwd, `${cwd}/in/../../x.md`)).toEqual([join(cwd, "x.md"), join(root, "x.md")])
    // No `.` or `..`: one reading.
    expect(await realTargets(cwd, "in/x.md")).toEqual([join(cwd, "a", "b", "x.md")])
  })
})
