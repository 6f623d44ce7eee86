/**
 * Thread and turn ids. Both are UUIDs, canonicalised to lower-case hyphenated form before any
 * comparison (§11), so `ABC…` and `abc…` name the same thread.
 */
import { z } from "zod"

const HEX = "[0-9a-fA-F]"
const UUID_PARTS = [8, 4, 4, 4, 12].map((n) => `(${HEX}{${n}})`)
const HYPHENATED = new RegExp(`^\\{?${UUID_PARTS.join("-")}\\}?$`)
const BARE = new RegExp(`^\\{?${UUID_PARTS.join("")}\\}?$`)
/** Any UUID spelling `canonicalUuid` accepts. */
const ANY_UUID = new RegExp(`${HYPHENATED.source}|${BARE.source}`)

/** Canonical form of a UUID written in any case, hyphenated or bare, optionally in braces; `undefined` if it is not one. */
export const canonicalUuid = (input: string): string | undefined => {
  const parts = HYPHENATED.exec(input) ?? BARE.exec(input)
  return parts ? parts.slice(1).join("-").toLowerCase() : undefined
}

const uuid = (what: string) =>
  z
    .string()
    .regex(ANY_UUID, { message: `${what} must be a UUID` })
    .transform((value) => canonicalUuid(value) as string)

/** A thread's id: a UUID, canonicalised on parse. */
export const ThreadId = uuid("thread id").brand<"ThreadId">()
/** A canonical thread id. */
export type ThreadId = z.output<typeof ThreadId>

/** A turn's id: a UUID, canonicalised on parse. It is the id of the `user_input` submission that started the turn. */
export const TurnId = uuid("turn id").brand<"TurnId">()
/** A canonical turn id. */
export type TurnId = z.output<typeof TurnId>

/** A fresh random thread id. */
export const newThreadId = (): ThreadId => crypto.randomUUID() as ThreadId

/** A fresh random turn id. */
export const newTurnId = (): TurnId => crypto.randomUUID() as TurnId
