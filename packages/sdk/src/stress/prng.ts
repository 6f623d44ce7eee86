/**
 * The harness's seeded PRNG: mulberry32, seeded per agent and per request (`hash(seed, "agent:3")`) so
 * one agent's draws never shift another's. A generator's only state is its own counter, held by the
 * plan or move that draws from it.
 */
import type { ThreadId } from "@deputy/protocol"

/** Mixes a run's seed with a name (an agent, a request) into the seed of that name's own generator. */
export const hash = (seed: number, text: string): number => {
  let h = (seed ^ 0x9e3779b9) >>> 0
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x85ebca6b) >>> 0
  return (h ^ (h >>> 16)) >>> 0
}

/** The draws of one seeded generator. */
export interface Rng {
  /** In [0, 1). */
  readonly next: () => number
  /** An integer in [lo, hi]. */
  readonly int: (lo: number, hi: number) => number
  readonly pick: <A>(items: ReadonlyArray<A>) => A
}

/** A mulberry32 generator seeded with `seed`. */
export const rng = (seed: number): Rng => {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1))
  return { next, int, pick: (items) => items[int(0, items.length - 1)]! }
}

/** A version-4 UUID drawn from `r` (33 draws): a thread id the seed alone gives back. */
export const uuidFrom = (r: Rng): ThreadId => {
  const hex = Array.from({ length: 32 }, () => r.int(0, 15).toString(16))
  hex[12] = "4"
  hex[16] = ((r.int(0, 15) & 0x3) | 0x8).toString(16)
  const s = hex.join("")
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}` as ThreadId
}
