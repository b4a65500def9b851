import { randomBytes } from 'node:crypto'
import { encode } from './codec.js'
import type { Entry } from './entry.js'
import { shouldRefreshEarly } from './entry.js'
import { LarderError } from './errors.js'
import { cacheKey, globToRegExp, validatePattern } from './keys.js'
import { MemoryTier } from './memory-tier.js'
import {
  type ResolvedCacheOptions,
  type ResolvedEntryOptions,
  resolveCacheOptions,
  resolveEntryOptions,
  validateTags,
} from './options.js'
import { ReadThrough } from './read-through.js'
import { Bus, type BusMessage } from './redis/bus.js'
import { type Connection, connect } from './redis/connection.js'
import { RedisGuard } from './redis/guard.js'
import { RedisTier } from './redis/redis-tier.js'
import { StatsRecorder } from './stats.js'
import type { CacheOptions, CacheStats, CacheValue, EntryOptions, Loader } from './types.js'
import { type WarmEntry, type WarmOptions, type WarmReport, warm } from './warm.js'
import { type CacheWriter, cacheWriter, type Persist, WriteThrough } from './write-through.js'

/** What `getEntry`/`wrapEntry` return: the value and how old it is. */
export interface CacheEntryInfo<T> {
  value: T
  /** Seconds since the value was loaded. */
  ageSeconds: number
  /** True when served past its TTL (stale-while-revalidate or stale-if-error). */
  stale: boolean
}

/**
 * The engine: an in-process L1 in front of Redis (L2), read-through with single-flight and a
 * distributed lock, tags, patterns and a pub/sub bus that keeps every process's L1 honest.
 */
export class Cache {
  readonly options: ResolvedCacheOptions
  readonly #l1: MemoryTier | undefined
  readonly #l2: RedisTier | undefined
  readonly #bus: Bus | undefined
  readonly #connection: Connection | undefined
  readonly #guard: RedisGuard | undefined
  readonly #stats: StatsRecorder
  readonly #readThrough: ReadThrough
  readonly #writeThrough: WriteThrough
  #closed = false

  constructor(options: CacheOptions = {}) {
    this.options = resolveCacheOptions(options)
    const { prefix, logger } = this.options
    this.#stats = new StatsRecorder(prefix)
    this.#l1 = this.options.l1 === false ? undefined : new MemoryTier(this.options.l1)
    if (options.redis !== undefined) {
      this.#connection = connect(options.redis)
      this.#guard = new RedisGuard(this.#connection.client, {
        timeout: this.options.timeout,
        threshold: this.options.breakerThreshold,
        cooldown: this.options.breakerCooldown,
        logger,
        failureMessage: 'Redis call failed, treated as a miss',
        onError: (operation, error) => this.#stats.l2Error(operation, error),
        onBreaker: (state) => this.#stats.breaker(state),
      })
      this.#l2 = new RedisTier(this.#connection, this.#guard, { prefix, tagTtl: this.options.tagTtl })
      const l2 = this.#l2
      this.#bus = new Bus({
        client: this.#connection.client,
        channel: l2.channel,
        origin: randomBytes(8).toString('hex'),
        logger,
        ackTimeout: this.options.timeout,
        onMessage: (message) => this.#onBusMessage(message),
        onReconnect: () => this.#l1?.clear(),
        publish: (channel, text) => l2.publish(channel, text),
      })
    }
    this.#readThrough = new ReadThrough({
      options: this.options,
      l1: this.#l1,
      l2: this.#l2,
      bus: this.#bus,
      stats: this.#stats,
    })
    this.#writeThrough = new WriteThrough({
      options: this.options,
      l1: this.#l1,
      l2: this.#l2,
      bus: this.#bus,
      remove: (key) => this.delete(key),
      closed: () => this.#closed,
    })
  }

  /** Resolves once the bus listens, so invalidations from other processes reach this one. */
  async ready(): Promise<void> {
    await this.#bus?.ready()
  }

  /** The fresh value, or `undefined`. */
  async get<T = CacheValue>(key: string): Promise<T | undefined> {
    const entry = await this.#readThrough.read(cacheKey(key, this.options.maxKeyLength))
    return entry === undefined ? undefined : (entry.value as T)
  }

  /** The fresh entry with its age, or `undefined`. */
  async getEntry<T = CacheValue>(key: string): Promise<CacheEntryInfo<T> | undefined> {
    const entry = await this.#readThrough.read(cacheKey(key, this.options.maxKeyLength))
    return entry === undefined ? undefined : info<T>(entry, Date.now())
  }

  /** Stores a value in both tiers and tells other processes to drop their L1 copy. */
  async set(key: string, value: CacheValue, options?: EntryOptions): Promise<void> {
    const k = cacheKey(key, this.options.maxKeyLength)
    const resolved = resolveEntryOptions(options, this.options.defaults)
    const encoded = encode(value)
    // A newer value: a load of this key still running in this process must not overwrite it in L1.
    this.#l1?.deleteKeys([k])
    await this.#readThrough.store(k, value, resolved, encoded, {
      loadMs: 0,
      token: '',
      born: this.#l1?.epoch ?? 0,
    })
  }

  /**
   * Read-through: the cached value, or `loader()`'s, stored for next time. Concurrent misses share one
   * loader call in this process and, through a lock in Redis, across processes.
   */
  wrap<T>(key: string, loader: Loader<T>, options?: EntryOptions): Promise<T> {
    const k = cacheKey(key, this.options.maxKeyLength)
    const l1 = this.#l1
    if (l1 !== undefined) {
      // The hot path: no serialization, no Redis, no allocation but the promise.
      const now = Date.now()
      const entry = l1.get(k, now)
      if (entry !== undefined && now < entry.freshUntil) {
        this.#stats.hit(k, 'l1')
        if (entry.earlyRefresh !== 0 && shouldRefreshEarly(entry, now)) {
          this.#readThrough.refreshInBackground(k, loader, options, 'early', entry)
        }
        return Promise.resolve(entry.value as T)
      }
    }
    return this.#readThrough.resolve(k, loader, options).then(entryValue) as Promise<T>
  }

  /**
   * The fresh entry from L1, synchronously, or `undefined`: never Redis, never a loader. For hot paths
   * that answer at once when they can (the response cache) and fall back to `wrapEntry`.
   */
  peek<T = CacheValue>(key: string): CacheEntryInfo<T> | undefined {
    const l1 = this.#l1
    if (l1 === undefined) return undefined
    const k = cacheKey(key, this.options.maxKeyLength)
    const now = Date.now()
    const entry = l1.get(k, now)
    if (entry === undefined || now >= entry.freshUntil) return undefined
    this.#stats.hit(k, 'l1')
    return info<T>(entry, now)
  }

  /** Like `wrap`, with the entry's age and whether it was served stale (for HTTP `Age`). */
  async wrapEntry<T>(key: string, loader: Loader<T>, options?: EntryOptions): Promise<CacheEntryInfo<T>> {
    const k = cacheKey(key, this.options.maxKeyLength)
    const entry = await this.#readThrough.resolve(k, loader, options)
    return info<T>(entry, Date.now())
  }

  /**
   * Write-through: `persist(value)` (the database write) first, then the value in both tiers, every
   * other process's L1 told before it resolves. When `persist` throws, the cache is untouched and the
   * error reaches the caller. When the cache write fails after it, the key is removed instead (logged
   * and counted): resolves `false` then, `true` when the value is cached.
   */
  writeThrough<T>(key: string, value: T, persist: Persist<T>, options?: EntryOptions): Promise<boolean> {
    return this.#writeThrough.write(key, value, persist, options)
  }

  /** For `createWriteBehind`: the cache's write path and its Redis connection (not public API). */
  get [cacheWriter](): CacheWriter {
    return {
      writeThrough: this.#writeThrough,
      connection: this.#connection,
      l2: this.#l2,
      guard: this.#guard,
    }
  }

  /**
   * Warming: loads each `{ key, load, ttl, tags }` not already cached, `concurrency` at a time (default
   * 8); resolves with how many are cached and which failed (a failure never stops the others).
   */
  warm(entries: Iterable<WarmEntry> | AsyncIterable<WarmEntry>, options?: WarmOptions): Promise<WarmReport> {
    return warm((key, load, opts) => this.wrap(key, load, opts), entries, options, this.options.logger)
  }

  /**
   * Removes keys from every tier and every process's L1. Rejects when Redis could not be reached (L1
   * is purged regardless), so a caller can retry.
   */
  async delete(...keys: string[]): Promise<void> {
    const ks = keys.map((key) => cacheKey(key, this.options.maxKeyLength))
    if (ks.length === 0) return
    this.#l1?.deleteKeys(ks)
    this.#stats.invalidated({ keys: ks })
    await this.#broadcast('delete', { type: 'keys', keys: ks }, (l2, text) => l2.delete(ks, text))
  }

  /**
   * Every entry written with one of these tags is unreadable, in every process, once this resolves.
   * O(number of tags): each tag gets a new version, whatever the number of entries carrying it.
   */
  async invalidateTags(tags: readonly string[]): Promise<void> {
    const valid = validateTags(tags)
    if (valid.length === 0) return
    this.#l1?.invalidateTags(valid)
    this.#stats.invalidated({ tags: valid })
    await this.#broadcast('invalidateTags', { type: 'tags', tags: [...valid] }, (l2, text) =>
      l2.invalidateTags(valid, text),
    )
  }

  /** Deletes every key matching a Redis glob (`'user:123:*'`) with SCAN, on every master. */
  async invalidatePattern(pattern: string): Promise<number> {
    const glob = validatePattern(pattern)
    this.#l1?.deleteMatching(globToRegExp(glob))
    this.#stats.invalidated({ pattern: glob })
    let removed = 0
    await this.#broadcast('invalidatePattern', { type: 'pattern', pattern: glob }, async (l2, text) => {
      removed = await l2.deletePattern(glob)
      return l2.publish(l2.channel, text)
    })
    return removed
  }

  /**
   * Runs an invalidation on Redis and waits until every other process has acted on its bus message.
   * Rejects when Redis could not be reached, so a caller can retry; L1 is purged before this is called.
   */
  async #broadcast(
    operation: string,
    message: BusMessage,
    call: (l2: RedisTier, text: string) => Promise<number>,
  ): Promise<void> {
    const l2 = this.#l2
    const bus = this.#bus
    if (l2 === undefined || bus === undefined) return
    try {
      await bus.send(
        message,
        (text) => call(l2, text),
        // On a Cluster a PUBLISH reply counts one node's subscribers only.
        (published) => l2.receivers(published),
      )
    } catch (error) {
      throw new LarderError(
        'LARDER_INVALIDATION_FAILED',
        `${operation}: Redis did not confirm it (L1 was purged)`,
        {
          cause: error,
        },
      )
    }
  }

  stats(): CacheStats {
    const s = this.#stats
    const reads = s.hits + s.staleHits + s.misses
    return {
      hits: s.hits,
      misses: s.misses,
      staleHits: s.staleHits,
      hitRate: reads === 0 ? 0 : (s.hits + s.staleHits) / reads,
      l1Hits: s.l1Hits,
      l2Hits: s.l2Hits,
      loaderCalls: s.loaderCalls,
      loaderErrors: s.loaderErrors,
      coalesced: s.coalesced,
      lockWaits: s.lockWaits,
      l2Errors: s.l2Errors,
      writeThroughFailures: this.#writeThrough.failures,
      breaker: this.#guard?.state ?? 'closed',
      l1: {
        entries: this.#l1?.size ?? 0,
        bytes: this.#l1?.bytes ?? 0,
        evictions: this.#l1?.evictions ?? 0,
      },
    }
  }

  /** Stops the bus and closes the Redis connection if Larder opened it; a handed client stays open. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#readThrough.close()
    await this.#bus?.close()
    if (this.#connection?.owned) {
      await this.#connection.client.quit().catch(() => this.#connection?.client.disconnect())
    }
  }

  #onBusMessage(message: BusMessage): void {
    const l1 = this.#l1
    switch (message.type) {
      case 'keys':
        if (Array.isArray(message.keys)) {
          l1?.deleteKeys(message.keys)
          this.#readThrough.wake(message.keys)
        }
        break
      case 'tags':
        if (Array.isArray(message.tags)) l1?.invalidateTags(message.tags)
        break
      case 'pattern':
        if (typeof message.pattern === 'string') l1?.deleteMatching(globToRegExp(message.pattern))
        break
      case 'clear':
        l1?.clear()
        break
    }
  }
}

/** Module-level, so `wrap` does not make a closure per call. */
function entryValue(entry: Entry): unknown {
  return entry.value
}

function info<T>(entry: Entry, now: number): CacheEntryInfo<T> {
  return {
    value: entry.value as T,
    ageSeconds: Math.max(0, Math.floor((now - entry.createdAt) / 1000)),
    stale: now >= entry.freshUntil,
  }
}

/** Creates a cache; see `CacheOptions`. With no `redis` it is in-process only. */
export function createCache(options: CacheOptions = {}): Cache {
  return new Cache(options)
}

export type { ResolvedEntryOptions }
