import type { Cluster, Redis, RedisOptions } from 'ioredis'
import type { Duration } from './duration.js'

/** What a cache holds: JSON-able data (objects, arrays, strings, numbers, booleans, null), `undefined`, or a `Buffer`. */
export type CacheValue = unknown

/** Options for one entry; every field falls back to the cache's defaults. */
export interface EntryOptions {
  /** How long the entry is fresh. */
  ttl?: Duration
  /** Tags the entry can be invalidated by (`invalidateTags`). */
  tags?: readonly string[]
  /** After `ttl`, serve the stale value at once for this long while one background refresh runs. */
  staleWhileRevalidate?: Duration
  /** After `ttl`, serve the stale value for this long when the loader throws. */
  staleIfError?: Duration
  /** TTL for `null`/`undefined` results (negative caching); `0` does not cache them. */
  negativeTtl?: Duration
  /** Refresh probabilistically before expiry (XFetch); a number is the beta factor (`true` = 1). */
  earlyRefresh?: boolean | number
}

/** The part of a pino logger Larder uses; Fastify's `request.log`/`fastify.log` fit. */
export interface Logger {
  debug(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
}

export type RedisClient = Redis | Cluster

export interface L1Options {
  /** Upper bound on the bytes of cached values (a number or `'64mb'`). Default 64 MiB. */
  maxBytes?: number | string
  /** Upper bound on the number of entries. Default 10,000. */
  maxEntries?: number
}

export interface CacheOptions extends Omit<EntryOptions, 'tags'> {
  /** An ioredis `Redis` or `Cluster` (never closed by Larder), a `redis://` URL or ioredis options. Absent: L1 only. */
  redis?: RedisClient | string | RedisOptions
  /** In-process tier; `false` turns it off (only with `redis`). */
  l1?: L1Options | false
  /** Prepended to every Redis key and the bus channel. Default `'larder:'`. */
  prefix?: string
  logger?: Logger
  /** Longest a call waits on Redis before it counts as a failure. Default 250 ms. */
  timeout?: Duration
  /** Consecutive Redis failures that open the circuit (`threshold`), and how long it stays open (`cooldown`). */
  breaker?: { threshold?: number; cooldown?: Duration }
  /** Distributed lock: how long a loader may hold it (`lease`), how long others wait for it (`wait`). */
  lock?: { lease?: Duration; wait?: Duration }
  /** How long a tag's version is kept in Redis. Default 30 days. */
  tagTtl?: Duration
  /** Keys longer than this many characters are hashed. Default 512. */
  maxKeyLength?: number
}

export interface CacheStats {
  hits: number
  misses: number
  staleHits: number
  /** hits (fresh and stale) / (hits + misses); 0 before any read. */
  hitRate: number
  l1Hits: number
  l2Hits: number
  loaderCalls: number
  loaderErrors: number
  /** Calls that waited on a loader already running in this process. */
  coalesced: number
  /** Calls that waited on a loader holding the distributed lock in another process. */
  lockWaits: number
  l2Errors: number
  /** `writeThrough` calls whose database write succeeded but whose cache write failed (the key was removed). */
  writeThroughFailures: number
  /** `open` while Redis is skipped after repeated failures. */
  breaker: 'closed' | 'open'
  l1: { entries: number; bytes: number; evictions: number }
}

/** Handed to every loader. */
export interface LoaderContext {
  /** True for a refresh nobody waits on (stale-while-revalidate, early refresh). */
  readonly background: boolean
  /** Stores this result with another TTL than the call's options (`0`: do not cache it). */
  setTtl(ttl: Duration): void
}

export type Loader<T> = (context: LoaderContext) => T | Promise<T>
