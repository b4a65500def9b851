import { type Encoded, encode } from './codec.js'
import { parseDuration } from './duration.js'
import { type Entry, entryTtl, shouldRefreshEarly, writtenEntry } from './entry.js'
import { LarderError } from './errors.js'
import type { MemoryTier } from './memory-tier.js'
import { type ResolvedCacheOptions, type ResolvedEntryOptions, resolveEntryOptions } from './options.js'
import type { Bus, BusMessage } from './redis/bus.js'
import type { RedisTier, RemoteRead } from './redis/redis-tier.js'
import type { StatsRecorder } from './stats.js'
import { newToken } from './tokens.js'
import type { EntryOptions, Loader, LoaderContext } from './types.js'

interface ReadThroughDeps {
  options: ResolvedCacheOptions
  l1: MemoryTier | undefined
  l2: RedisTier | undefined
  bus: Bus | undefined
  stats: StatsRecorder
}

/** What `#load` was asked for. */
interface LoadRun<T> {
  key: string
  loader: Loader<T>
  rawOptions: EntryOptions | undefined
  options: ResolvedEntryOptions
  local: Entry | undefined
  mode: 'load' | 'revalidate' | 'early'
}

/** A snapshot of tag versions could not be taken: the result must not be written to Redis. */
const UNVERIFIABLE = null

/** How long a waiter sleeps between looks at a lock held elsewhere (it is also woken by the bus). */
const WAIT_STEPS = [5, 10, 20, 40, 80, 160, 250]

/**
 * The miss path: single-flight in the process, the distributed lock across processes, stale values
 * while revalidating or when the loader fails, and the write that stores the result in both tiers.
 */
export class ReadThrough {
  readonly #deps: ReadThroughDeps
  /**
   * Loads running in this process, by key. A null-prototype object, not a Map: on Node 20 a Map whose
   * entries keep being added and deleted while holding young promises makes V8 promote most of each
   * scavenge to the old generation (~0.8 MB per scavenge, a mark-compact every few ms), which costs a
   * Redis-only hit about 2.5 µs of CPU (see bench/README.md).
   */
  readonly #inflight: Record<string, Promise<Entry> | undefined> = Object.create(null)
  readonly #refreshing = new Set<string>()
  readonly #waiters = new Map<string, Set<() => void>>()
  /** Keys whose value landed while their waiter was between sleeps (reading Redis). */
  readonly #landed = new Set<string>()
  #closed = false

  constructor(deps: ReadThroughDeps) {
    this.#deps = deps
  }

  /** A fresh entry from L1 or L2, or undefined; never runs a loader. */
  async read(key: string): Promise<Entry | undefined> {
    const { l1, l2, stats } = this.#deps
    const local = l1?.get(key, Date.now())
    if (local !== undefined && Date.now() < local.freshUntil) {
      stats.hit(key, 'l1')
      return local
    }
    const remote = l2 === undefined ? undefined : await this.#remoteRead(l2, key, l1?.epoch ?? 0)
    const entry = remote?.entry
    if (entry !== undefined && Date.now() < entry.freshUntil) {
      stats.hit(key, 'l2')
      l1?.set(key, entry)
      return entry
    }
    stats.miss(key)
    return undefined
  }

  resolve<T>(key: string, loader: Loader<T>, options: EntryOptions | undefined): Promise<Entry> {
    const { l1, stats } = this.#deps
    let local: Entry | undefined
    if (l1 !== undefined) {
      const now = Date.now()
      local = l1.get(key, now)
      if (local !== undefined && now < local.freshUntil) {
        stats.hit(key, 'l1')
        return Promise.resolve(local)
      }
      if (local !== undefined && now < local.staleUntil) {
        stats.stale(key, 'revalidate')
        this.refreshInBackground(key, loader, options, 'revalidate')
        return Promise.resolve(local)
      }
    }
    const running = this.#inflight[key]
    if (running !== undefined) {
      stats.coalesce(key)
      return running
    }
    const loading = this.#load(key, loader, options, local, 'load') as Promise<Entry>
    this.#inflight[key] = loading
    const settle = () => {
      if (this.#inflight[key] === loading) delete this.#inflight[key]
      this.#landed.delete(key)
    }
    loading.then(settle, settle)
    return loading
  }

  /**
   * One refresh per key at a time; failures are logged, the stale value stays. `early` refreshes a
   * value that is still fresh (so Redis's copy does not end it).
   */
  refreshInBackground<T>(
    key: string,
    loader: Loader<T>,
    options: EntryOptions | undefined,
    mode: 'revalidate' | 'early',
    current?: Entry,
  ): void {
    if (this.#refreshing.has(key) || this.#closed) return
    this.#refreshing.add(key)
    const stale = current ?? this.#deps.l1?.get(key, Date.now())
    this.#load(key, loader, options, stale, mode)
      .catch((error: unknown) => {
        this.#deps.options.logger.warn(
          { err: error, key },
          'larder: background refresh failed, stale value kept',
        )
      })
      .finally(() => this.#refreshing.delete(key))
  }

  /**
   * Loads `key`: from L2 if another process has stored it, else through the lock, else (Redis down, or
   * the holder too slow) directly. Background refreshes never wait on another process's lock. The first
   * read is chained without an async frame, so a fresh L2 hit (every hit when L1 is off) ends here.
   */
  #load<T>(
    key: string,
    loader: Loader<T>,
    rawOptions: EntryOptions | undefined,
    local: Entry | undefined,
    mode: 'load' | 'revalidate' | 'early',
  ): Promise<Entry | undefined> {
    const { options: cacheOptions, l1, l2 } = this.#deps
    let options: ResolvedEntryOptions
    try {
      options = resolveEntryOptions(rawOptions, cacheOptions.defaults)
    } catch (error) {
      return Promise.reject(error)
    }
    // The L1 epoch when the read began: what it returns is refused by L1 if an invalidation arrived since.
    const born = l1?.epoch ?? 0
    if (l2 === undefined) {
      return this.#loadPastRead({ key, loader, rawOptions, options, local, mode }, born, undefined)
    }
    return l2.get(key, born).then(
      (read) => {
        const entry = read.entry
        if (entry !== undefined && mode !== 'early' && read.at < entry.freshUntil) {
          return this.#l2Hit(key, entry, read.at, loader, rawOptions, mode !== 'load')
        }
        return this.#loadPastRead({ key, loader, rawOptions, options, local, mode }, born, read)
      },
      (error: unknown) =>
        this.#loadPastRead(
          { key, loader, rawOptions, options, local, mode },
          born,
          this.#readFailed(key, error),
        ),
    )
  }

  /** A fresh entry from Redis: counted, copied into L1, perhaps refreshed early. */
  #l2Hit<T>(
    key: string,
    entry: Entry,
    now: number,
    loader: Loader<T>,
    rawOptions: EntryOptions | undefined,
    background: boolean,
  ): Entry {
    this.#deps.stats.hit(key, 'l2')
    this.#deps.l1?.set(key, entry)
    if (entry.earlyRefresh !== 0 && !background && shouldRefreshEarly(entry, now)) {
      this.refreshInBackground(key, loader, rawOptions, 'early', entry)
    }
    return entry
  }

  /**
   * The rest of `#load`, when the first read (`first`: undefined when it failed or there is no L2) found
   * no fresh entry: a stale one, the lock, waiting for another process, the loader.
   */
  async #loadPastRead<T>(
    run: LoadRun<T>,
    firstBorn: number,
    first: RemoteRead | undefined,
  ): Promise<Entry | undefined> {
    const { key, loader, rawOptions, options, local, mode } = run
    const background = mode !== 'load'
    const { options: cacheOptions, l1, l2, stats } = this.#deps
    // The L1 epoch when the latest read began (a waiter re-reads after the holder's own bus message, so
    // it is taken per read).
    let born = firstBorn
    let stale = local
    let token = ''
    if (l2 !== undefined) {
      let waitingSince = 0
      let woken = false
      let read = first
      for (let attempt = 0; ; attempt++) {
        if (attempt > 0) {
          born = l1?.epoch ?? 0
          read = await this.#remoteRead(l2, key, born)
        }
        if (read === undefined) break
        const now = read.at
        const entry = read.entry
        if (entry !== undefined) {
          if (now < entry.freshUntil && mode !== 'early') {
            if (waitingSince !== 0) stats.lockWaitEnded(key, now - waitingSince, woken)
            return this.#l2Hit(key, entry, now, loader, rawOptions, background)
          }
          if (stale === undefined || entry.createdAt > stale.createdAt) stale = entry
        }
        if (!background && attempt === 0 && stale !== undefined && now < stale.staleUntil) {
          stats.stale(key, 'revalidate')
          this.refreshInBackground(key, loader, rawOptions, 'revalidate', stale)
          return stale
        }
        let lockMs = read.lockMs
        if (lockMs === 0) {
          token ||= newToken()
          const held = await this.#acquire(l2, key, token)
          if (held === undefined) token = ''
          if (held === undefined || held === 0) break
          lockMs = held
        }
        // Another process is loading this key.
        if (background || this.#closed) return undefined
        if (waitingSince === 0) {
          waitingSince = now
          stats.lockWait(key)
        } else if (now - waitingSince >= cacheOptions.lockWait) {
          token = ''
          break
        }
        woken = await this.#sleep(
          key,
          Math.min(lockMs, WAIT_STEPS[Math.min(attempt, WAIT_STEPS.length - 1)] as number),
        )
      }
    }
    stats.miss(key)
    return this.#callLoader(key, loader, options, { token, stale, born, background })
  }

  async #callLoader<T>(
    key: string,
    loader: Loader<T>,
    options: ResolvedEntryOptions,
    run: { token: string; stale: Entry | undefined; born: number; background: boolean },
  ): Promise<Entry> {
    const { l2, stats } = this.#deps
    // Versions are read before the loader runs: an invalidation during the load leaves the result
    // with an old version, so it is never served.
    let tagVersions: string[] | typeof UNVERIFIABLE = []
    if (l2 !== undefined && options.tags.length > 0) {
      tagVersions = await l2.tagVersions(options.tags).catch(() => UNVERIFIABLE)
    }
    const started = Date.now()
    let value: T
    let encoded: Encoded
    const { token, stale, born } = run
    const context = new Context(run.background)
    try {
      value = await loader(context)
      encoded = encode(value)
    } catch (error) {
      stats.loaded(key, Date.now() - started, error)
      // Released before the error surfaces, so a retry elsewhere does not wait for a dead lock.
      if (token !== '' && l2 !== undefined) await l2.release(key, token).catch(() => {})
      if (stale !== undefined && Date.now() < stale.errorUntil) {
        stats.stale(key, 'error')
        return stale
      }
      throw error
    }
    const loadMs = Date.now() - started
    stats.loaded(key, loadMs)
    const chosen =
      context.ttl === undefined ? options : { ...options, ttl: context.ttl, negativeTtl: context.ttl }
    return this.store(key, value, chosen, encoded, { loadMs, token, born, tagVersions })
  }

  /**
   * Writes a value to both tiers. With a token the L2 write succeeds only while the lock's fencing
   * token is still the entry's; when it is refused the value is not put in L1 either.
   */
  async store(
    key: string,
    value: unknown,
    options: ResolvedEntryOptions,
    encoded: Encoded,
    write: { loadMs: number; token: string; born: number; tagVersions?: string[] | null },
  ): Promise<Entry> {
    const { l1, l2 } = this.#deps
    const ttl = entryTtl(value, options)
    const entry = writtenEntry(value, options, encoded.bytes, {
      ttl,
      loadMs: write.loadMs,
      born: write.born,
      now: Date.now(),
    })
    if (ttl === 0) {
      if (write.token !== '' && l2 !== undefined) l2.release(key, write.token).catch(() => {})
      return entry
    }
    const bus = this.#deps.bus
    if (l2 !== undefined && bus !== undefined && write.tagVersions !== UNVERIFIABLE) {
      let written = true
      try {
        const tagVersions =
          write.tagVersions ?? (options.tags.length > 0 ? await l2.tagVersions(options.tags) : [])
        const params = {
          options,
          ttl,
          loadMs: write.loadMs,
          tagVersions,
          token: write.token,
          nextToken: newToken(),
        }
        const message: BusMessage = { type: 'keys', keys: [key] }
        // A loader's write replaces nothing newer; an explicit write waits until other L1s dropped theirs.
        const receivers =
          write.token === ''
            ? await bus.send(
                message,
                (text) => l2.set(key, encoded, { ...params, busMessage: text }),
                (n) => l2.receivers(n),
              )
            : await l2.set(key, encoded, { ...params, busMessage: bus.encode(message) })
        written = receivers >= 0
      } catch {
        // Redis failed: counted and logged by the guard; this process keeps the value in L1.
      }
      if (!written) return entry
    }
    l1?.set(key, entry)
    return entry
  }

  /** Wakes calls waiting on another process's lock for these keys (their value has landed). */
  wake(keys: readonly string[]): void {
    for (const key of keys) {
      const waiters = this.#waiters.get(key)
      if (waiters !== undefined) for (const wake of [...waiters]) wake()
      else if (this.#inflight[key] !== undefined) this.#landed.add(key)
    }
  }

  close(): void {
    this.#closed = true
    for (const waiters of this.#waiters.values()) for (const wake of [...waiters]) wake()
  }

  /** A read of L2; undefined when it failed. */
  #remoteRead(l2: RedisTier, key: string, born: number): Promise<RemoteRead | undefined> {
    return l2.get(key, born).catch((error: unknown) => this.#readFailed(key, error))
  }

  #readFailed(key: string, error: unknown): undefined {
    if (error instanceof LarderError && error.code === 'LARDER_CORRUPT_ENTRY') {
      // Redis answered, with something unreadable (the guard reports connection problems itself).
      this.#deps.stats.l2Error('decode', error)
      this.#deps.options.logger.warn(
        { err: error, key },
        'larder: unreadable entry in Redis, treated as a miss',
      )
    }
    return undefined
  }

  async #acquire(l2: RedisTier, key: string, token: string): Promise<number | undefined> {
    try {
      return await l2.acquire(key, token, this.#deps.options.lockLease)
    } catch {
      return undefined
    }
  }

  /** Sleeps up to `ms`; resolves true when woken early by the bus (the value landed). */
  #sleep(key: string, ms: number): Promise<boolean> {
    if (this.#landed.delete(key)) return Promise.resolve(true)
    return new Promise((resolve) => {
      let waiters = this.#waiters.get(key)
      if (waiters === undefined) {
        waiters = new Set()
        this.#waiters.set(key, waiters)
      }
      const set = waiters
      const finish = (woken: boolean) => {
        clearTimeout(timer)
        set.delete(wake)
        if (set.size === 0 && this.#waiters.get(key) === set) this.#waiters.delete(key)
        resolve(woken)
      }
      const wake = () => finish(true)
      const timer = setTimeout(() => finish(false), Math.max(1, ms))
      set.add(wake)
    })
  }
}

/** Lets a loader decide about its own result, e.g. a shorter TTL for a 404. */
class Context implements LoaderContext {
  ttl: number | undefined
  readonly background: boolean

  constructor(background: boolean) {
    this.background = background
  }

  setTtl(ttl: number | string): void {
    this.ttl = parseDuration(ttl, 'setTtl')
  }
}
