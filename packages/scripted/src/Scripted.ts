/**
 * The scripted backend (§24): an in-process agent that plays a Script, one turn per `user_input`.
 * An agent lives in the scope it was spawned in and owns there: a driver (TurnRunner.makeDriver)
 * that takes ops one at a time on a fiber running only while ops wait, at most one turn fiber (which
 * may own a child process, or wait on nested sub-agents), and the bounded events mailbox; an idle
 * agent runs no fiber. Closing that scope interrupts both fibers, kills the child process, cancels
 * the sub-agents and ends the events.
 *
 * Events carry no time and no random id (the thread id aside), so the same script with the same
 * answers gives the same events. Steps that need no waiting are batched into one `offerAll`, so a
 * long run of deltas costs about one Effect per mailbox-full of events.
 */
import { resolve } from "node:path"
import {
  type Agent,
  AgentClosed,
  type Backend,
  childEnvironment,
  confinePatch,
  type InvalidInput,
  Mailboxes,
  type SpawnChild,
  SpawnFailed,
  type SpawnOptions,
  StatusCell,
  TurnRunner,
  type Workspace
} from "@deputy/core"
import {
  type AgentStatus,
  type Event,
  type EventMsg,
  type FileChanges,
  newThreadId,
  type ReviewDecision,
  type RolloutItem,
  type Script,
  type ScriptInput,
  type ScriptStep,
  type SpawnAgent,
  type Submission,
  type ThreadId,
  type UserInputResponse
} from "@deputy/protocol"
import type { FileSystem } from "@effect/platform"
import { Cause, Deferred, Effect, Either, Exit, Mailbox, Scope } from "effect"
import { runCommand } from "./internal/exec.js"
import { applyChanges } from "./internal/patch.js"
import { callIdOf, NO_SPAWN_CHILD, type Progress, progressOf, unfinishedOf } from "./internal/resume.js"
import { fill, hasTemplate } from "./internal/template.js"
import { validateScript } from "./Script.js"

/** The backend's name, in `session_configured` and rollouts. */
export const name = "scripted"

/** What a scripted agent needs from its context: real files (patch steps); exec steps spawn through core's supervisor. */
export type Requirements = FileSystem.FileSystem

/** Settings shared by every agent of a scripted backend. */
export interface Options {
  /** Capacity of the events mailbox: a full one holds the script back until the reader takes (§6). Default 1024. */
  readonly eventsCapacity?: number
  /** The working directory when the spawn options name none. Default `process.cwd()`. */
  readonly cwd?: string
  /** Directories besides the cwd that patches may write to (§28); nothing outside them is ever written. */
  readonly writableRoots?: ReadonlyArray<string>
  /**
   * Variables added to (or, as `undefined`, removed from) the commands' environment, which otherwise
   * holds only the allowlisted PATH, HOME, CODEX_HOME, LANG, LC_* and TMPDIR of this process (§32).
   */
  readonly env?: Readonly<Record<string, string | undefined>>
  /**
   * For a resumed or forked thread, its history so far: the agent goes on with the next script turn
   * and remembers the answers, session approvals and children's last messages (usually passed in the
   * spawn options). A history that ends mid-turn is first continued where it stopped (internal/resume.ts).
   */
  readonly history?: ReadonlyArray<RolloutItem>
}

/** The default capacity of an agent's events mailbox. */
export const defaultEventsCapacity = 1024

/**
 * A backend whose every agent plays `script` from its first turn. The script is validated once, at
 * the first spawn, and its agents share the result (not a copy each); a script that is not valid
 * (see `spawn`) fails every spawn with SpawnFailed naming the bad fields.
 */
export const backend = (script: Script | ScriptInput, options: Options = {}): Backend<Requirements> => {
  let validated: Either.Either<Script, InvalidInput> | undefined
  const valid = Effect.suspend(() =>
    validated !== undefined
      ? validated
      : Effect.tap(Effect.either(validateScript(script, "script")), (result) => {
          validated = result
        }).pipe(Effect.flatten)
  )
  return {
    name,
    spawn: (spawnOptions) =>
      Effect.flatMap(valid, (checked) => spawnValid(checked, { ...options, ...spawnOptions })).pipe(
        Effect.mapError((error) => new SpawnFailed({ backend: name, reason: error.message, cause: error }))
      )
  }
}

/**
 * Starts one agent playing `script` in the caller's scope. Its first event is `session_configured`
 * (event id `""`), then `thread_name_updated` when the script has a name. The script is validated
 * first, as strictly as a file (`validateScript`, §36): an object with a wrong field fails with
 * InvalidInput naming it, and nothing starts.
 */
export const spawn = (
  script: Script | ScriptInput,
  options: Options & SpawnOptions = {}
): Effect.Effect<Agent, InvalidInput, Scope.Scope | Requirements> =>
  Effect.flatMap(validateScript(script, "script"), (valid) => spawnValid(valid, options))

const spawnValid = (
  script: Script,
  options: Options & SpawnOptions
): Effect.Effect<Agent, never, Scope.Scope | Requirements> =>
  Effect.gen(function* () {
    const threadId = options.threadId ?? newThreadId()
    const cwd = options.cwd ?? process.cwd()
    const workspace: Workspace = {
      cwd,
      ...(options.writableRoots === undefined ? {} : { writableRoots: options.writableRoots })
    }
    const capacity = Math.max(1, Math.floor(options.eventsCapacity ?? defaultEventsCapacity))
    const events = yield* Mailbox.make<Event>({ capacity })
    const status = yield* StatusCell.make<AgentStatus>({ type: "pending_init" })
    const state: AgentState = { closed: false }

    yield* Scope.addFinalizer(
      yield* Effect.scope,
      Effect.gen(function* () {
        state.closed = true
        yield* status.update((now): AgentStatus => (now.type === "errored" ? now : { type: "shutdown" }))
        yield* events.end
      })
    )
    const play = player({
      script,
      workspace,
      // Built at the first command, not per agent: most agents run none (enumerating process.env is slow).
      env: lazy(() => childEnvironment(options.env)),
      capacity,
      events,
      history: options.history ?? [],
      depth: options.depth ?? 0,
      ...(options.spawnChild === undefined ? {} : { spawnChild: options.spawnChild })
    })
    let nextTurnIndex = play.turnsPlayed
    // Ops and turn ends go to the driver, which runs only while they wait (no fiber while idle). Made
    // after the turn runner, as its fiber was forked after it: closing the agent stops the driver first.
    let inbox: TurnRunner.Driver<Inbox, Requirements> | undefined
    const turns = yield* TurnRunner.make<Unfinished | undefined, Outcome, Requirements>({
      events,
      status,
      // No turn starts before the driver runs, and it runs once `inbox` is set.
      inbox: { offer: (message) => Effect.suspend(() => inbox?.offer(message) ?? Effect.succeed(false)) },
      // `resumed`: the turn the history ended in the middle of, to go on with (its index is already counted).
      run: (turnId, resumed: Unfinished | undefined) =>
        play.playTurn(turnId, resumed?.index ?? nextTurnIndex++, resumed?.progress)
    })
    const ops = yield* TurnRunner.makeDriver<Inbox, Requirements>()
    inbox = ops
    // §10's first event, before spawn returns, so the launch finds it without waiting on a timer. A
    // fresh mailbox has room for one event, whatever its capacity. Whoever sees it sees the agent idle.
    yield* status.set({ type: "idle" })
    events.unsafeOffer({
      id: "",
      msg: {
        type: "session_configured",
        threadId,
        backend: name,
        cwd,
        ...(script.model === undefined ? {} : { model: script.model })
      }
    })
    yield* ops.run(driver({ script, threadId, cwd, events, status, state, turns, play }))

    return {
      threadId,
      backend: name,
      submit: (submission) =>
        Effect.suspend(() => {
          if (state.closed) return Effect.fail(new AgentClosed({ threadId }))
          if (submission.op.type === "shutdown") state.closed = true // later submits fail at once
          return Effect.asVoid(ops.offer({ _tag: "Op", submission }))
        }),
      events,
      status,
      workspace
    }
  })

/**
 * What a turn fiber reports when it ends by itself. The driver emits the last event (turn_complete,
 * turn_aborted, or the fatal error) after updating the status, so a reader who sees it sees the new status.
 */
type Outcome =
  | { readonly _tag: "Ended"; readonly last: EventMsg }
  | { readonly _tag: "Fatal"; readonly message: string }

/** What the driver takes: ops, and the end of the turn it started. */
type Inbox = { readonly _tag: "Op"; readonly submission: Submission } | TurnRunner.TurnDone<Outcome>

interface AgentState {
  closed: boolean
}

/** Answers the running turn waits for, keyed `exec:<callId>`, `patch:<callId>` or `input:<eventId>`. */
interface Waiting {
  readonly decisions: Map<string, Deferred.Deferred<ReviewDecision>>
  readonly responses: Map<string, Deferred.Deferred<UserInputResponse>>
}

/** A turn a history ended in the middle of: its id, its script turn, and how far it got. */
interface Unfinished {
  readonly turnId: string
  readonly index: number
  readonly progress: Progress
}

interface Player {
  readonly waiting: Waiting
  /** Turns its history already played (the unfinished one included): the next input plays the script turn after them. */
  readonly turnsPlayed: number
  /** The turn its history ended in the middle of, to go on with at start, and where. */
  readonly unfinished?: Unfinished
  /** Inputs its history submitted but never started, to start (in order) at start. */
  readonly inputs: ReadonlyArray<string>
  /**
   * Plays turn `index` of the script as turn `turnId`, ending it with turn_complete or turn_aborted
   * unless interrupted. With `progress`, goes on with a turn already started, from where it stopped.
   */
  readonly playTurn: (turnId: string, index: number, progress?: Progress) => Effect.Effect<Outcome, never, Requirements>
}

/** `make()`'s value, made on the first call. */
const lazy = <A>(make: () => A): (() => A) => {
  let made: { readonly value: A } | undefined
  return () => {
    made ??= { value: make() }
    return made.value
  }
}

/**
 * The turn side: plays steps, holding what a thread remembers across turns (answers, commands and
 * paths approved for the session). One turn runs at a time, so plain mutable state is safe.
 */
const player = (config: {
  readonly script: Script
  readonly workspace: Workspace
  /** The commands' environment, made on first use. */
  readonly env: () => Readonly<Record<string, string>>
  readonly capacity: number
  readonly events: Mailbox.Mailbox<Event>
  readonly history: ReadonlyArray<RolloutItem>
  readonly depth: number
  readonly spawnChild?: SpawnChild
}): Player => {
  const { script, workspace, env, capacity, events, depth, spawnChild } = config
  const { cwd } = workspace
  const waiting: Waiting = { decisions: new Map(), responses: new Map() }
  const memory = remember(config.history)
  const { turnsPlayed, sessionCommands } = memory
  // Patches approved for the session, as their exact sets of resolved paths (§28); the history's are
  // resolved once, on first use, against the workspace as it is then.
  let resolvedPatches: Set<string> | undefined
  const sessionPatches = Effect.suspend(() =>
    resolvedPatches !== undefined
      ? Effect.succeed(resolvedPatches)
      : Effect.map(
          Effect.forEach(memory.sessionPatches, (changes) => Effect.option(confinePatch(workspace, changes))),
          (sets) => {
            resolvedPatches ??= new Set(
              sets.flatMap((set) => (set._tag === "Some" ? [set.value.relative.join("\u0000")] : []))
            )
            return resolvedPatches
          }
        )
  )
  const { turn: cut, inputs } = unfinishedOf(config.history)
  const unfinished =
    cut === undefined
      ? undefined
      : {
          turnId: cut.turnId,
          index: cut.index,
          progress: progressOf(script.turns[cut.index], cut.index, cut.turnId, cut.items)
        }
  const compiled = compile(script)

  /**
   * Runs one child of a spawn step to its end, reporting it to this turn: sub_agent_started once it
   * exists, sub_agent_ended when it ends (when it cannot start: an error, then sub_agent_ended
   * `failed`). Interrupting it interrupts the child's spawnChild, which cancels the child (§4).
   */
  const runChild = (spawn: SpawnChild, child: SpawnAgent, turnId: string) => {
    const named = child.name === undefined ? {} : { name: child.name }
    let isStarted = false
    const started = (threadId: ThreadId) =>
      Effect.suspend(() => {
        if (isStarted) return Effect.void
        isStarted = true
        return Mailboxes.offer(events, {
          id: turnId,
          msg: { type: "sub_agent_started", threadId, ...named, depth: depth + 1 }
        })
      }).pipe(Effect.asVoid)
    return spawn({
      backend: backend(child.script, { ...workspace, env: env(), eventsCapacity: capacity }),
      input: child.input,
      ...named,
      onStarted: started
    }).pipe(
      Effect.matchEffect({
        onFailure: (error) => {
          const failure: Array<Event> = [
            {
              id: turnId,
              msg: {
                type: "error",
                message: child.name === undefined ? error.message : `${child.name}: ${error.message}`
              }
            }
          ]
          // §35: a child that could not start ended `failed`, under the id it would have had.
          if (error.threadId !== undefined) {
            failure.push({
              id: turnId,
              msg: { type: "sub_agent_ended", threadId: error.threadId, ...named, status: "failed" }
            })
          }
          return Mailboxes.offerAll(events, failure)
        },
        onSuccess: (outcome) => {
          if (child.name !== undefined) memory.children.set(child.name, outcome.lastAgentMessage ?? "")
          return Effect.zipRight(
            started(outcome.threadId), // in case the spawner never called onStarted
            Mailboxes.offer(events, {
              id: turnId,
              msg: {
                type: "sub_agent_ended",
                threadId: outcome.threadId,
                ...named,
                status: outcome.status,
                ...(outcome.lastAgentMessage === undefined ? {} : { lastAgentMessage: outcome.lastAgentMessage })
              }
            })
          )
        }
      })
    )
  }

  const playTurn = (turnId: string, index: number, progress?: Progress): Effect.Effect<Outcome, never, Requirements> =>
    Effect.gen(function* () {
      const replayed = new Map(progress?.decisions)
      let out: Array<Event> = []
      const emit = (msg: EventMsg) => {
        out.push({ id: turnId, msg })
      }
      // §6: a full mailbox suspends us here until the reader takes; an ended one drops the rest.
      const flush = Effect.suspend(() => {
        if (out.length === 0) return Effect.void
        const batch = out
        out = []
        return batch.length === 1 ? Mailboxes.offer(events, batch[0]!) : Mailboxes.offerAll(events, batch)
      })
      // Buffers deltas `from`… of `text` cut in `pieces` until the buffer is full; returns where it stopped.
      const pushDeltas = (text: string, pieces: number, from: number, type: DeltaType) => {
        let i = from
        for (; i < pieces && out.length < capacity; i++) {
          const delta = text.slice(Math.floor((i * text.length) / pieces), Math.floor(((i + 1) * text.length) / pieces))
          out.push({ id: turnId, msg: { type, delta } })
        }
        return i
      }
      const decide = (key: string, request: EventMsg) =>
        Effect.gen(function* () {
          const given = replayed.get(key) // resumed mid-turn: answered before the crash, not asked again
          if (given !== undefined) {
            replayed.delete(key)
            return given
          }
          const slot = yield* Deferred.make<ReviewDecision>()
          waiting.decisions.set(key, slot) // before the request leaves, so no answer can miss it
          emit(request)
          yield* flush
          return yield* Deferred.await(slot)
        }).pipe(Effect.ensuring(Effect.sync(() => waiting.decisions.delete(key))))
      const end = (last: EventMsg) => Effect.as(flush, { _tag: "Ended", last } as const)
      const aborted = end({ type: "turn_aborted", turnId, reason: "interrupted" })

      if (progress === undefined) emit({ type: "turn_started", turnId }) // a resumed turn has its own already
      const turn = script.turns[index]
      const steps = compiled[index]
      if (turn === undefined || steps === undefined) {
        emit({ type: "error", message: `script has no turn ${index + 1} (it has ${script.turns.length})` })
        return yield* end({ type: "turn_complete", turnId })
      }
      let lastAgentMessage = progress?.lastAgentMessage
      const from = progress?.from ?? 0
      for (let round = 0; round < turn.repeat; round++) {
        for (let stepIndex = 0; stepIndex < steps.length; stepIndex++) {
          if (round * steps.length + stepIndex < from) continue // done before the history was cut
          const { step: raw, isTemplated } = steps[stepIndex]!
          const step: ScriptStep = isTemplated ? fill(raw, memory) : raw
          switch (step.type) {
            case "message":
            case "reasoning": {
              const pieces = step.deltas ?? 0
              const type = step.type === "message" ? "agent_message_delta" : "agent_reasoning_delta"
              for (let next = pushDeltas(step.text, pieces, 0, type); next < pieces; ) {
                yield* flush
                next = pushDeltas(step.text, pieces, next, type)
              }
              if (step.type === "reasoning") {
                emit({ type: "agent_reasoning", text: step.text })
              } else {
                emit({ type: "agent_message", message: step.text })
                lastAgentMessage = step.text
              }
              break
            }
            case "token_count":
              emit({
                type: "token_count",
                inputTokens: step.input,
                outputTokens: step.output,
                totalTokens: step.input + step.output
              })
              break
            case "fail":
              if (step.fatal) {
                yield* flush
                return { _tag: "Fatal", message: step.message } as const
              }
              emit({ type: "error", message: step.message })
              break
            case "sleep":
              yield* flush
              yield* Effect.sleep(step.ms)
              break
            case "ask": {
              const callId = callIdOf(index, stepIndex, round, turn.repeat)
              const key = `input:${turnId}` // §3: the answer names the event id, which is the turn id
              const slot = yield* Deferred.make<UserInputResponse>()
              waiting.responses.set(key, slot)
              emit({ type: "request_user_input", callId, turnId, questions: step.questions })
              yield* flush
              const response = yield* Deferred.await(slot).pipe(
                Effect.ensuring(Effect.sync(() => waiting.responses.delete(key)))
              )
              for (const question of step.questions) {
                memory.answers.set(question.id, response.answers[question.id]?.answers[0] ?? "")
              }
              break
            }
            case "exec": {
              const callId = callIdOf(index, stepIndex, round, turn.repeat)
              const [program, ...args] = step.command
              if (program === undefined) break // the schema requires a program
              const commandCwd = resolve(cwd, step.cwd ?? ".")
              const sessionKey = JSON.stringify(step.command)
              const decision: ReviewDecision =
                step.needsApproval && !sessionCommands.has(sessionKey)
                  ? yield* decide(`exec:${callId}`, {
                      type: "exec_approval_request",
                      callId,
                      turnId,
                      command: step.command,
                      cwd: commandCwd,
                      ...(step.reason === undefined ? {} : { reason: step.reason })
                    })
                  : "approved"
              if (decision === "abort") return yield* aborted
              if (decision === "denied") break
              if (decision === "approved_for_session") sessionCommands.add(sessionKey)
              emit({ type: "exec_command_begin", callId, turnId, command: step.command, cwd: commandCwd })
              yield* flush
              const result = yield* runCommand([program, ...args], commandCwd, env())
              emit({ type: "exec_command_end", callId, turnId, ...result })
              break
            }
            case "patch": {
              const callId = callIdOf(index, stepIndex, round, turn.repeat)
              // §28: where the patch really writes decides; outside the workspace it is not even asked.
              const confined = yield* Effect.either(confinePatch(workspace, step.changes))
              if (Either.isLeft(confined)) {
                emit({ type: "warning", message: `patch ${callId} refused: ${confined.left.message}` })
                break
              }
              const sessionKey = confined.right.relative.join("\u0000")
              const isAutoApproved = (yield* sessionPatches).has(sessionKey)
              const decision: ReviewDecision = isAutoApproved
                ? "approved"
                : yield* decide(`patch:${callId}`, {
                    type: "apply_patch_approval_request",
                    callId,
                    turnId,
                    changes: step.changes,
                    ...(step.reason === undefined ? {} : { reason: step.reason })
                  })
              if (decision === "abort") return yield* aborted
              if (decision === "denied") break
              if (decision === "approved_for_session") (yield* sessionPatches).add(sessionKey)
              emit({ type: "patch_apply_begin", callId, turnId, autoApproved: isAutoApproved, changes: step.changes })
              yield* flush
              const result = yield* applyChanges(workspace, step.changes)
              emit({ type: "patch_apply_end", callId, turnId, ...result })
              break
            }
            case "spawn": {
              yield* flush // children report straight to the mailbox, after what came before
              if (spawnChild === undefined) {
                emit({ type: "error", message: NO_SPAWN_CHILD })
                break
              }
              // All at once; each reports as it starts and ends. Interrupting the turn interrupts them all.
              yield* Effect.forEach(step.agents, (child) => runChild(spawnChild, child, turnId), {
                concurrency: "unbounded",
                discard: true
              })
              break
            }
          }
          if (out.length >= capacity) yield* flush
        }
      }
      return yield* end({
        type: "turn_complete",
        turnId,
        ...(lastAgentMessage === undefined ? {} : { lastAgentMessage })
      })
    })

  return { waiting, turnsPlayed, ...(unfinished === undefined ? {} : { unfinished }), inputs, playTurn }
}

/** A script's steps, each marked with whether it uses a template. */
type Compiled = ReadonlyArray<ReadonlyArray<{ readonly step: ScriptStep; readonly isTemplated: boolean }>>

// One per validated script, shared by its agents; a script is never changed once validated.
const compiledScripts = new WeakMap<Script, Compiled>()

const compile = (script: Script): Compiled => {
  const known = compiledScripts.get(script)
  if (known !== undefined) return known
  // Filling templates walks a step; only steps that use one pay for it.
  const compiled = script.turns.map((turn) => turn.steps.map((step) => ({ step, isTemplated: hasTemplate(step) })))
  compiledScripts.set(script, compiled)
  return compiled
}

/** What a resumed or forked thread remembers from its history (§12, §17): turns played, answers, session approvals, children. */
const remember = (history: ReadonlyArray<RolloutItem>) => {
  let turnsPlayed = 0
  const answers = new Map<string, string>()
  const children = new Map<string, string>()
  const sessionCommands = new Set<string>()
  const sessionPatches: Array<FileChanges> = []
  const requests = new Map<string, EventMsg>() // keyed as in Waiting
  for (const item of history) {
    if (item.type === "event") {
      const { id, msg } = item.event
      if (msg.type === "turn_started") turnsPlayed++
      else if (msg.type === "sub_agent_ended" && msg.name !== undefined)
        children.set(msg.name, msg.lastAgentMessage ?? "")
      else if (msg.type === "exec_approval_request") requests.set(`exec:${msg.approvalId ?? msg.callId}`, msg)
      else if (msg.type === "apply_patch_approval_request") requests.set(`patch:${msg.callId}`, msg)
      else if (msg.type === "request_user_input") requests.set(`input:${id}`, msg)
      continue
    }
    if (item.type !== "submission") continue // a terminal record: how an earlier run ended
    const op = item.submission.op
    if (op.type === "exec_approval" && op.decision === "approved_for_session") {
      const request = requests.get(`exec:${op.id}`)
      if (request?.type === "exec_approval_request") sessionCommands.add(JSON.stringify(request.command))
    } else if (op.type === "patch_approval" && op.decision === "approved_for_session") {
      const request = requests.get(`patch:${op.id}`)
      if (request?.type === "apply_patch_approval_request") sessionPatches.push(request.changes)
    } else if (op.type === "user_input_answer") {
      const request = requests.get(`input:${op.id}`)
      if (request?.type === "request_user_input") {
        for (const question of request.questions) {
          answers.set(question.id, op.response.answers[question.id]?.answers[0] ?? "")
        }
      }
    }
  }
  return { turnsPlayed, answers, children, sessionCommands, sessionPatches }
}

type DeltaType = "agent_message_delta" | "agent_reasoning_delta"

/**
 * The op side: takes ops one at a time, starts turns (queueing inputs that arrive during one),
 * routes answers to the waiting turn, and handles interrupt and shutdown. It alone changes status
 * (through its TurnRunner, which emits each turn's last event after the status). It runs on the
 * agent's TurnRunner.Driver: `start` first, then `handle` per message until shutdown or a fatal end.
 */
const driver = (config: {
  readonly script: Script
  readonly threadId: ThreadId
  readonly cwd: string
  readonly events: Mailbox.Mailbox<Event>
  readonly status: StatusCell.StatusCell<AgentStatus>
  readonly state: AgentState
  readonly turns: TurnRunner.TurnRunner<Unfinished | undefined, Outcome, Requirements>
  readonly play: Player
}): TurnRunner.DriverHandlers<Inbox, Requirements> => {
  const { script, threadId, events, status, state, turns, play } = config
  const { decisions, responses } = play.waiting
  let isDone = false

  const warn = (id: string, message: string) => Mailboxes.offer(events, { id, msg: { type: "warning", message } })

  // §24: a fatal step (or a bug) kills the agent like a crashed backend: an error, no shutdown_complete.
  const die = (turnId: string, message: string) =>
    Effect.gen(function* () {
      state.closed = true
      isDone = true
      yield* status.set({ type: "errored", message })
      yield* Mailboxes.offer(events, { id: turnId, msg: { type: "error", message } })
      yield* events.end
    })

  const handleOne = (message: Inbox): Effect.Effect<void, never, Requirements> => {
    if (message._tag === "TurnDone") {
      return turns.done(message, (turnId, exit) => {
        if (Exit.isFailure(exit)) return die(turnId, `scripted agent failed: ${Cause.pretty(exit.cause)}`)
        return exit.value._tag === "Fatal" ? die(turnId, exit.value.message) : turns.end(turnId, exit.value.last)
      })
    }
    const { id, op } = message.submission
    switch (op.type) {
      case "user_input":
        return turns.start(id, undefined) // §24: after the running turn, if one runs
      case "exec_approval":
      case "patch_approval": {
        const kind = op.type === "exec_approval" ? "exec" : "patch"
        const slot = decisions.get(`${kind}:${op.id}`)
        return slot
          ? Deferred.succeed(slot, op.decision)
          : warn(id, `no ${kind} approval is pending with id ${op.id}; ${op.type} ignored`)
      }
      case "user_input_answer": {
        const slot = responses.get(`input:${op.id}`)
        return slot
          ? Deferred.succeed(slot, op.response)
          : warn(id, `no user input request is pending with id ${op.id}; user_input_answer ignored`)
      }
      case "interrupt":
        // A no-op when idle; interrupting the turn fiber closes its scopes, which kills its child process (§24).
        return turns.interrupt
      case "shutdown":
        return Effect.zipRight(
          turns.shutdown(id),
          Effect.sync(() => {
            isDone = true
          })
        )
    }
  }

  // session_configured is already there (spawn put it in the fresh mailbox).
  const start = Effect.gen(function* () {
    if (script.name !== undefined) {
      yield* Mailboxes.offer(events, { id: "", msg: { type: "thread_name_updated", threadId, name: script.name } })
    }
    // §24: work the history left undone (a crash mid-turn) goes on first, pending requests asked again.
    if (play.unfinished !== undefined) yield* turns.start(play.unfinished.turnId, play.unfinished)
    for (const input of play.inputs) yield* turns.start(input, undefined)
  })

  return {
    start,
    handle: (message) => Effect.map(handleOne(message), () => (isDone ? "stop" : "continue"))
  }
}
