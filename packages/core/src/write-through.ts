import diagnostics from 'node:diagnostics_channel'
import { type Encoded, encode } from './codec.js'
import { entryTtl, writtenEntry } from './entry.js'
import { cacheKey } from './keys.js'
import type { MemoryTier } from './memory-tier.js'
import {
  invalid,
  type ResolvedCacheOptions,
  type ResolvedEntryOptions,
  resolveEntryOptions,
} from './options.js'
import type { Bus } from './redis/bus.js'
import type { Connection } from './redis/connection.js'
import type { RedisGuard } from './redis/guard.js'
import type { RedisTier, WriteParams } from './redis/redis-tier.js'
import { newToken } from './tokens.js'
import type { EntryOptions } from './types.js'

/** The database write of `writeThrough`: it receives the value and must throw when it did not persist it. */
export type Persist<T> = (value: T) => unknown

/** Reports `{ cache, key, error }` each time a cache write failed after the database write succeeded. */
export const writeThroughChannel = diagnostics.channel('larder:cache:write-through-failed')

interface WriteThroughDeps {
  options: ResolvedCacheOptions
  l1: MemoryTier | undefined
  l2: RedisTier | undefined
  bus: Bus | undefined
  /** `cache.delete`: every tier and every process's L1; rejects when Redis did not confirm. */
  remove: (key: string) => Promise<void>
  closed: () => boolean
}

/** Where `createWriteBehind` finds a cache's write path (a symbol: not part of the public API). */
export const cacheWriter = Symbol('larder.cacheWriter')

export interface CacheWriter {
  writeThrough: WriteThrough
  connection: Connection | undefined
  l2: RedisTier | undefined
  /** Bounds the write-behind's own commands on the cache's connection. */
  guard: RedisGuard | undefined
}

/** How a write reaches Redis: `RedisTier.set`, or write-behind's script that also records it in a stream. */
export type RedisWrite = (key: string, encoded: Encoded, params: WriteParams) => Promise<number>

/** One write of a batch handed to `storeMany`, with what its cache write needs. */
export interface StoreItem {
  key: string
  value: unknown
  options: ResolvedEntryOptions
  encoded: Encoded
  /** `options.ttl`, or `options.negativeTtl` for null and undefined; never 0. */
  ttl: number
  /** L1's epoch when the write began (see `epoch`). */
  born: number
  tagVersions: readonly string[]
}

/**
 * How a batch reaches Redis: one call that writes every item and publishes `busMessage` once. Resolves
 * with how many subscribers got the message, then per item 1, or -1 when its write was dropped (fencing).
 */
export type RedisWriteMany<I extends StoreItem> = (
  items: readonly I[],
  busMessage: string,
) => Promise<readonly number[]>

/** Retries of the removal after a failed cache write, while Redis is unreachable (~10 s in all). */
const REMOVE_RETRIES = [100, 200, 400, 800, 1_600, 2_000, 2_000, 2_000]

/**
 * Write-through: the database first, then the cache (both tiers, other processes' L1s told before it
 * resolves). A failed database write leaves the cache untouched; a failed cache write removes the key,
 * so no process can serve the value the database just replaced.
 */
export class WriteThrough {
  readonly #deps: WriteThroughDeps
  /** Cache writes that failed after their database write succeeded. */
  failures = 0

  constructor(deps: WriteThroughDeps) {
    this.#deps = deps
  }

  /** Resolves true when the value is cached, false when the cache write failed and the key was removed. */
  async write<T>(key: string, value: T, persist: Persist<T>, options?: EntryOptions): Promise<boolean> {
    const { options: cacheOptions, l1 } = this.#deps
    // Both can throw: checked before the database is touched.
    const resolved = resolveEntryOptions(options, cacheOptions.defaults)
    const encoded = encode(value)
    if (typeof persist !== 'function') throw invalid('persist', 'a function', persist)
    const k = cacheKey(key, cacheOptions.maxKeyLength)
    await persist(value)
    // A load of this key still running in this process must not put the old value back in L1.
    l1?.deleteKeys([k])
    try {
      await this.store(k, key, value, resolved, encoded)
      return true
    } catch (error) {
      this.failures++
      cacheOptions.logger.error(
        { err: error, key },
        'larder: writeThrough stored the value in the database but not in the cache; key removed',
      )
      if (writeThroughChannel.hasSubscribers) {
        writeThroughChannel.publish({ cache: cacheOptions.prefix, key, error })
      }
      await this.#remove(key, 0)
      return false
    }
  }

  /**
   * Like `store` in read-through.ts, but a failed Redis write throws instead of being absorbed; `via`
   * replaces the Redis write (write-behind's). Resolves once other processes' L1s dropped the key.
   */
  async store(
    key: string,
    rawKey: string,
    value: unknown,
    options: ResolvedEntryOptions,
    encoded: Encoded,
    via?: RedisWrite,
  ): Promise<void> {
    const { l1, l2, bus } = this.#deps
    const ttl = entryTtl(value, options)
    if (ttl === 0) {
      // Not cached at all (negativeTtl 0): the old value must go.
      await this.#deps.remove(rawKey)
      return
    }
    const born = this.epoch
    if (l2 !== undefined && bus !== undefined) {
      const tagVersions = options.tags.length > 0 ? await l2.tagVersions(options.tags) : []
      await bus.send(
        { type: 'keys', keys: [key] },
        (text) => {
          const params: WriteParams = {
            options,
            ttl,
            loadMs: 0,
            tagVersions,
            token: '',
            nextToken: newToken(),
            busMessage: text,
          }
          return via === undefined ? l2.set(key, encoded, params) : via(key, encoded, params)
        },
        (n) => l2.receivers(n),
      )
    }
    l1?.set(key, writtenEntry(value, options, encoded.bytes, { ttl, loadMs: 0, born, now: Date.now() }))
  }

  /** L1's invalidation epoch now: a write that began at it is not put in L1 if the key was invalidated since. */
  get epoch(): number {
    return this.#deps.l1?.epoch ?? 0
  }

  /**
   * `store` for many writes at once (none with ttl 0): one Redis call through `via` and one bus message
   * naming every key, other processes' L1s told before it resolves; then each value in L1, in order.
   * Rejects when the Redis call fails, with the keys dropped from L1: a call that timed out may still
   * have landed, and this process must not keep serving the value it replaced.
   */
  async storeMany<I extends StoreItem>(items: readonly I[], via: RedisWriteMany<I>): Promise<void> {
    const { l1, l2, bus } = this.#deps
    let reply: readonly number[] | undefined
    if (l2 !== undefined && bus !== undefined) {
      const keys = distinctKeys(items)
      try {
        reply = await bus.send(
          { type: 'keys', keys },
          (text) => via(items, text),
          (result) => l2.receivers(result[0] ?? 0),
        )
      } catch (error) {
        l1?.deleteKeys(keys)
        throw error
      }
    }
    if (l1 === undefined) return
    const now = Date.now()
    for (let i = 0; i < items.length; i++) {
      const item = items[i] as I
      if (reply?.[i + 1] === -1) continue
      l1.set(
        item.key,
        writtenEntry(item.value, item.options, item.encoded.bytes, {
          ttl: item.ttl,
          loadMs: 0,
          born: item.born,
          now,
        }),
      )
    }
  }

  /**
   * Deletes the key everywhere; while Redis refuses, retries in the background for ~10 s. A write
   * that timed out may still land in Redis later: the delete, sent after it on the same connection,
   * removes it then.
   */
  async #remove(key: string, attempt: number): Promise<void> {
    try {
      await this.#deps.remove(key)
    } catch (error) {
      const delay = REMOVE_RETRIES[attempt]
      if (delay === undefined || this.#deps.closed()) {
        this.#deps.options.logger.error(
          { err: error, key },
          'larder: writeThrough could not remove the key after a failed cache write; it may be stale until its TTL',
        )
        return
      }
      setTimeout(() => void this.#remove(key, attempt + 1), delay).unref()
    }
  }
}

/** The keys of a batch, each once (a key written twice in it is dropped once). */
function distinctKeys(items: readonly StoreItem[]): string[] {
  const keys = new Set<string>()
  for (const item of items) keys.add(item.key)
  return [...keys]
}
