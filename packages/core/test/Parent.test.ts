import type { ThreadId } from "@deputy/protocol"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, TestClock } from "effect"
import { decodePolicy, Parent, ParentLog, policy, type UserInputRequest } from "../src/index.js"

const T1 = "aaaaaaaa-0000-4000-8000-000000000001" as ThreadId
const T2 = "aaaaaaaa-0000-4000-8000-000000000002" as ThreadId
const base = (threadId: ThreadId, id: string) => ({
  requestId: `${threadId}:${id}`,
  threadId,
  turnId: "t",
  path: [threadId]
})
const exec = (command: Array<string>, threadId = T1, id = "c") =>
  ({ ...base(threadId, id), kind: "exec", command, cwd: "/w" }) as const
const patch = (paths: Array<string>, threadId = T1) =>
  ({
    ...base(threadId, "p"),
    kind: "patch",
    changes: Object.fromEntries(paths.map((p) => [p, { type: "add" as const, content: "" }])),
    cwd: "/work",
    paths: [...paths].sort()
  }) as const

describe("Parent.layerPolicy", () => {
  const rules = policy({
    exec: [
      { prefix: ["git", "status"], decision: "approved" },
      { prefix: ["npm", "test"], decision: "approved_for_session" },
      { regex: "\\brm\\s+-rf\\b", decision: "denied" },
      { prefix: ["rm"], decision: "approved" }
    ],
    patch: [
      { glob: "src/**", decision: "approved" },
      { glob: "**/*.secret", decision: "denied" }
    ],
    answers: { color: ["red"] }
  })

  it.effect("decides commands by prefix and regex; deny wins; nothing matched is denied", () =>
    Effect.gen(function* () {
      const parent = yield* Parent
      assert.strictEqual(yield* parent.requestExecApproval(exec(["git", "status", "-s"])), "approved")
      assert.strictEqual(yield* parent.requestExecApproval(exec(["git", "push"])), "denied")
      assert.strictEqual(yield* parent.requestExecApproval(exec(["rm", "a.txt"])), "approved")
      assert.strictEqual(yield* parent.requestExecApproval(exec(["rm", "-rf", "/"])), "denied")
      assert.strictEqual(yield* parent.requestExecApproval(exec(["curl", "x"])), "denied")
    }).pipe(Effect.provide(Parent.layerPolicy(rules)))
  )

  it.effect("approves a patch only when every path is allowed and none denied", () =>
    Effect.gen(function* () {
      const parent = yield* Parent
      assert.strictEqual(yield* parent.requestPatchApproval(patch(["src/a.ts", "src/deep/b.ts"])), "approved")
      assert.strictEqual(yield* parent.requestPatchApproval(patch(["src/a.ts", "README.md"])), "denied")
      assert.strictEqual(yield* parent.requestPatchApproval(patch(["src/key.secret"])), "denied")
      assert.strictEqual(yield* parent.requestPatchApproval(patch(["src/.hidden"])), "approved")
    }).pipe(Effect.provide(Parent.layerPolicy(rules)))
  )

  it.effect("answers the questions it has answers for, and gives no answer otherwise", () =>
    Effect.gen(function* () {
      const parent = yield* Parent
      const ask = (id: string): UserInputRequest => ({
        ...base(T1, "q"),
        kind: "user_input",
        questions: [{ id, question: "?" }]
      })
      assert.deepStrictEqual(yield* parent.requestUserInput(ask("color")), { answers: { color: { answers: ["red"] } } })
      assert.strictEqual((yield* Effect.flip(parent.requestUserInput(ask("size"))))._tag, "NoAnswer")
    }).pipe(Effect.provide(Parent.layerPolicy(rules)))
  )

  it.effect("a default can be set, but is denied unless said", () =>
    Effect.gen(function* () {
      const lenient = yield* Effect.provide(Parent, Parent.layerPolicy(policy({ default: "approved" })))
      assert.strictEqual(yield* lenient.requestExecApproval(exec(["anything"])), "approved")
      const strict = yield* Effect.provide(Parent, Parent.layerPolicy(policy({})))
      assert.strictEqual(yield* strict.requestExecApproval(exec(["anything"])), "denied")
    })
  )

  it.effect("bad policy files give InvalidInput naming the field", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        decodePolicy(
          {
            exec: [
              { prefix: ["ls"], decision: "maybe" },
              { regex: "(", decision: "denied" }
            ]
          },
          "policy.yaml"
        )
      )
      assert.strictEqual(error._tag, "InvalidInput")
      assert.strictEqual(error.source, "policy.yaml")
      assert.isTrue(error.issues.some((i) => i.startsWith("exec.0")))
      assert.isTrue(error.issues.some((i) => i.startsWith("exec.1")))
    })
  )
})

describe("Parent.layerCallbacks", () => {
  it.effect("approved_for_session is remembered for the thread, not for other threads", () =>
    Effect.gen(function* () {
      let asked = 0
      const parent = yield* Effect.provide(
        Parent,
        Parent.layerCallbacks({
          execApproval: async () => {
            asked++
            return "approved_for_session"
          }
        })
      )
      yield* parent.requestExecApproval(exec(["npm", "test"]))
      assert.strictEqual(yield* parent.requestExecApproval(exec(["npm", "test"])), "approved_for_session")
      assert.strictEqual(asked, 1)
      yield* parent.requestExecApproval(exec(["npm", "test"], T2))
      yield* parent.requestExecApproval(exec(["npm", "run", "lint"]))
      assert.strictEqual(asked, 3)
    })
  )

  it.effect("interrupting a request aborts the callback's signal", () =>
    Effect.gen(function* () {
      let aborted = false
      let markCalled = () => {}
      const called = new Promise<void>((resolve) => {
        markCalled = resolve
      })
      const parent = yield* Effect.provide(
        Parent,
        Parent.layerCallbacks({
          patchApproval: (_request, signal) => {
            markCalled()
            return new Promise(() =>
              signal.addEventListener("abort", () => {
                aborted = true
              })
            )
          }
        })
      )
      const waiting = yield* Effect.fork(parent.requestPatchApproval(patch(["a"])))
      yield* Effect.promise(() => called)
      yield* Fiber.interrupt(waiting)
      assert.isTrue(aborted)
    })
  )
})

describe("Parent.layerDeadline and layerRecording", () => {
  it.effect("an unanswered request is withdrawn and gets NoAnswer after the deadline; the log shows it", () =>
    Effect.gen(function* () {
      const parent = yield* Parent
      const log = yield* ParentLog
      const waiting = yield* Effect.fork(Effect.flip(parent.requestExecApproval(exec(["make"]))))
      yield* TestClock.adjust("29 seconds")
      assert.deepStrictEqual(
        (yield* log.entries).map((e) => e.outcome.type),
        ["pending"]
      )
      yield* TestClock.adjust("1 second")
      const error = yield* Fiber.join(waiting)
      assert.strictEqual(error._tag, "NoAnswer")
      assert.deepStrictEqual(
        (yield* log.entries).map((e) => e.outcome.type),
        ["withdrawn"]
      )
    }).pipe(
      Effect.provide(
        Parent.layerDeadline("30 seconds").pipe(
          Layer.provideMerge(Parent.layerRecording),
          Layer.provide(Parent.layerCallbacks({ execApproval: () => new Promise(() => {}) }))
        )
      )
    )
  )

  it.effect("the recording logs decisions, answers and failures in request order", () =>
    Effect.gen(function* () {
      const parent = yield* Parent
      const log = yield* ParentLog
      yield* parent.requestExecApproval(exec(["ls"]))
      yield* Effect.flip(parent.requestPatchApproval(patch(["x"])))
      yield* parent.requestUserInput({ ...base(T1, "q"), kind: "user_input", questions: [{ id: "q", question: "?" }] })
      assert.deepStrictEqual(
        (yield* log.entries).map((e) => [e.request.kind, e.outcome.type]),
        [
          ["exec", "decided"],
          ["patch", "failed"],
          ["user_input", "answered"]
        ]
      )
    }).pipe(
      Effect.provide(
        Parent.layerRecording.pipe(
          Layer.provide(
            Parent.layerCallbacks({
              execApproval: () => "approved",
              patchApproval: () => {
                throw new Error("no")
              },
              userInput: () => ({ answers: { q: { answers: ["ok"] } } })
            })
          )
        )
      )
    )
  )
})
