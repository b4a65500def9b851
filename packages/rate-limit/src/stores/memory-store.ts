import { LRUCache } from 'lru-cache'
import { type CounterState, consumeCounter, consumeLog } from './algorithms.js'
import type { Decision, LimitSpec, RateLimitStore } from './store.js'

export interface MemoryStoreOptions {
  /** Keys kept at most; the least recently used goes first. Default 10,000. */
  maxKeys?: number
  /** The clock, in milliseconds (tests pass a fake one). Default `Date.now`. */
  now?: () => number
  /** How often idle keys are dropped. Default 60 s; 0 turns the timer off (call `prune()`). */
  pruneInterval?: number
}

type State = CounterState | number[]

/**
 * Counts in this process only. Bounded: at most `maxKeys` keys, and a key is dropped once its counts
 * have all left the window (its TTL), so idle clients cost nothing.
 */
export class MemoryStore implements RateLimitStore {
  readonly #now: () => number
  readonly #states: LRUCache<string, State>
  readonly #timer: NodeJS.Timeout | undefined

  constructor(options: MemoryStoreOptions = {}) {
    this.#now = options.now ?? Date.now
    const now = this.#now
    this.#states = new LRUCache<string, State>({
      max: options.maxKeys ?? 10_000,
      ttlAutopurge: false,
      ttlResolution: 0,
      // lru-cache judges TTLs on this clock, so a fake clock expires keys too.
      perf: { now },
    })
    const interval = options.pruneInterval ?? 60_000
    if (interval > 0) {
      this.#timer = setInterval(() => this.prune(), interval)
      this.#timer.unref()
    }
  }

  /** Keys held now (expired ones count until `prune()` or their next use). */
  get size(): number {
    return this.#states.size
  }

  /** Drops every key whose counts have all left their window. */
  prune(): void {
    this.#states.purgeStale()
  }

  consume(key: string, spec: LimitSpec, cost: number, check = false): Promise<Decision> {
    return Promise.resolve(this.consumeNow(key, spec, cost, check))
  }

  /** `consume` without the promise. */
  consumeNow(key: string, spec: LimitSpec, cost: number, check = false): Decision {
    const now = this.#now()
    const stored = this.#states.get(key)
    if (spec.algorithm === 'sliding-log') {
      const log = Array.isArray(stored) ? stored : undefined
      const { decision, times } = consumeLog(log, now, spec, cost, !check)
      if (!check) this.#keep(key, times, decision.resetMs)
      return decision
    }
    const previous = stored === undefined || Array.isArray(stored) ? undefined : stored
    const { decision, state } = consumeCounter(previous, now, spec, cost)
    if (!check && (state !== previous || decision.allowed)) this.#keep(key, state, decision.resetMs)
    return decision
  }

  #keep(key: string, state: State | undefined, ttl: number): void {
    if (state === undefined || ttl <= 0) this.#states.delete(key)
    else this.#states.set(key, state, { ttl })
  }

  close(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer)
    this.#states.clear()
    return Promise.resolve()
  }
}
