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

/** One key's counts, and when they have all left the window (then the key is idle). */
interface Held extends CounterState {
  expiresAt: number
  /** The sliding log's unit times; the counter uses the CounterState fields. */
  times: number[] | undefined
}

/**
 * Counts in this process only. Bounded: at most `maxKeys` keys, and a key is dropped once its counts
 * have all left the window, so idle clients cost nothing. A key's counts live in one object updated in
 * place: a request allocates only its decision.
 */
export class MemoryStore implements RateLimitStore {
  readonly #now: () => number
  readonly #states: LRUCache<string, Held>
  readonly #timer: NodeJS.Timeout | undefined
  /**
   * The key used last, while it is held: requests of one client come in runs (keep-alive), and a run
   * skips the LRU lookup. The LRU order stays exact: that key is the most recently used already.
   */
  #lastKey: string | undefined
  #last: Held | undefined

  constructor(options: MemoryStoreOptions = {}) {
    this.#now = options.now ?? Date.now
    // Expiry is the store's own (expiresAt, checked on use and by prune): lru-cache's TTLs would read
    // the clock twice more per request.
    this.#states = new LRUCache<string, Held>({ max: options.maxKeys ?? 10_000 })
    const interval = options.pruneInterval ?? 60_000
    if (interval > 0) {
      this.#timer = setInterval(() => this.prune(), interval)
      this.#timer.unref()
    }
  }

  /** Keys held now (idle ones count until `prune()` or their next use). */
  get size(): number {
    return this.#states.size
  }

  /** Drops every key whose counts have all left their window. */
  prune(): void {
    const now = this.#now()
    const idle: string[] = []
    for (const [key, held] of this.#states.entries()) if (held.expiresAt < now) idle.push(key)
    for (const key of idle) this.#states.delete(key)
    this.#lastKey = undefined
    this.#last = undefined
  }

  consume(key: string, spec: LimitSpec, cost: number, check = false): Promise<Decision> {
    return Promise.resolve(this.consumeNow(key, spec, cost, check))
  }

  /** `consume` without the promise. */
  consumeNow(key: string, spec: LimitSpec, cost: number, check = false): Decision {
    const now = this.#now()
    let held = key === this.#lastKey ? this.#last : this.#states.get(key)
    this.#lastKey = undefined
    if (held !== undefined && held.expiresAt < now) {
      // Idle: dropped, as if it had never been seen (a check must not keep it).
      this.#states.delete(key)
      held = undefined
    }
    const fresh = held === undefined
    const state = held ?? {
      index: Number.NEGATIVE_INFINITY,
      current: 0,
      previous: 0,
      times: undefined,
      expiresAt: 0,
    }
    let decision: Decision
    if (spec.algorithm === 'sliding-log') {
      const result = consumeLog(state.times, now, spec, cost, !check)
      state.times = result.times
      decision = result.decision
      if (check) return this.#kept(key, fresh, state, decision)
      // A refused request is not logged, but the units that left the window were dropped: keep that.
      if (state.times === undefined) return this.#drop(key, fresh, decision)
    } else {
      decision = consumeCounter(state, now, spec, cost, !check)
      // A check or a refusal changed nothing.
      if (check || !decision.allowed) return this.#kept(key, fresh, state, decision)
    }
    if (decision.resetMs <= 0) return this.#drop(key, fresh, decision)
    state.expiresAt = now + decision.resetMs
    if (fresh) this.#states.set(key, state)
    return this.#kept(key, false, state, decision)
  }

  /** Remembers `key` as the last used while the store holds it. */
  #kept(key: string, fresh: boolean, held: Held, decision: Decision): Decision {
    if (!fresh) {
      this.#lastKey = key
      this.#last = held
    }
    return decision
  }

  #drop(key: string, fresh: boolean, decision: Decision): Decision {
    if (!fresh) this.#states.delete(key)
    return decision
  }

  close(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer)
    this.#states.clear()
    this.#lastKey = undefined
    this.#last = undefined
    return Promise.resolve()
  }
}
