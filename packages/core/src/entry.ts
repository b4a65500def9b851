import type { ResolvedEntryOptions } from './options.js'

/** A value as the tiers hold it in process memory; every time is on this process's clock (ms). */
export interface Entry {
  value: unknown
  /** Bytes of the encoded value, for L1's byte bound. */
  bytes: number
  /** When the entry was written (for `Age`). */
  createdAt: number
  freshUntil: number
  /** Stale-while-revalidate window end. */
  staleUntil: number
  /** Stale-if-error window end. */
  errorUntil: number
  /** How long the loader took, for early refresh. */
  loadMs: number
  /** XFetch beta; 0 is off. */
  earlyRefresh: number
  tags: readonly string[]
  /** L1's invalidation epoch when the read or load that produced it began. */
  born: number
  /**
   * L1's latest tag-invalidation epoch when this entry's tags were last found valid there (0 when it
   * was made), so a hit looks its tags up again only after some tag was invalidated.
   */
  tagsChecked: number
}

export function lifetimeEnd(entry: Entry): number {
  return Math.max(entry.staleUntil, entry.errorUntil, entry.freshUntil)
}

/** XFetch: refresh early with a probability that rises as expiry nears and with the loader's cost. */
export function shouldRefreshEarly(entry: Entry, now: number): boolean {
  return now - entry.loadMs * entry.earlyRefresh * Math.log(Math.random()) >= entry.freshUntil
}

/** How long a value lives as fresh: `null` and `undefined` (negative caching) for `negativeTtl` only. */
export function entryTtl(value: unknown, options: ResolvedEntryOptions): number {
  return value === null || value === undefined ? options.negativeTtl : options.ttl
}

/** The entry of a value written now (`at.now`, this process's clock) with `at.ttl` to live. */
export function writtenEntry(
  value: unknown,
  options: ResolvedEntryOptions,
  bytes: number,
  at: { ttl: number; loadMs: number; born: number; now: number },
): Entry {
  const { ttl, now } = at
  const negative = value === null || value === undefined
  return {
    value,
    bytes,
    createdAt: now,
    freshUntil: now + ttl,
    staleUntil: now + ttl + (negative ? 0 : options.staleWhileRevalidate),
    errorUntil: now + ttl + (negative ? 0 : options.staleIfError),
    loadMs: at.loadMs,
    earlyRefresh: options.earlyRefresh,
    tags: options.tags,
    born: at.born,
    tagsChecked: 0,
  }
}
