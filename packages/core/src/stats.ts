import diagnostics from 'node:diagnostics_channel'

/**
 * Channels on which the engine reports what it does, so metrics and tracing subscribe without the
 * engine knowing about them. Messages carry `{ cache, key?, ... }` where `cache` is the cache's prefix.
 */
export const channels = {
  hit: diagnostics.channel('larder:cache:hit'),
  miss: diagnostics.channel('larder:cache:miss'),
  stale: diagnostics.channel('larder:cache:stale'),
  load: diagnostics.channel('larder:cache:load'),
  coalesce: diagnostics.channel('larder:cache:coalesce'),
  lockWait: diagnostics.channel('larder:cache:lock-wait'),
  error: diagnostics.channel('larder:cache:error'),
  invalidate: diagnostics.channel('larder:cache:invalidate'),
  breaker: diagnostics.channel('larder:cache:breaker'),
} as const

/** Counters behind `cache.stats()`; each event also goes to its diagnostics channel when anyone listens. */
export class StatsRecorder {
  readonly #cache: string
  hits = 0
  misses = 0
  staleHits = 0
  l1Hits = 0
  l2Hits = 0
  loaderCalls = 0
  loaderErrors = 0
  coalesced = 0
  lockWaits = 0
  l2Errors = 0

  constructor(cache: string) {
    this.#cache = cache
  }

  hit(key: string, tier: 'l1' | 'l2'): void {
    this.hits++
    if (tier === 'l1') this.l1Hits++
    else this.l2Hits++
    if (channels.hit.hasSubscribers) channels.hit.publish({ cache: this.#cache, key, tier })
  }

  miss(key: string): void {
    this.misses++
    if (channels.miss.hasSubscribers) channels.miss.publish({ cache: this.#cache, key })
  }

  stale(key: string, reason: 'revalidate' | 'error'): void {
    this.staleHits++
    if (channels.stale.hasSubscribers) channels.stale.publish({ cache: this.#cache, key, reason })
  }

  loaded(key: string, durationMs: number, error?: unknown): void {
    this.loaderCalls++
    if (error !== undefined) this.loaderErrors++
    if (channels.load.hasSubscribers) channels.load.publish({ cache: this.#cache, key, durationMs, error })
  }

  coalesce(key: string): void {
    this.coalesced++
    if (channels.coalesce.hasSubscribers) channels.coalesce.publish({ cache: this.#cache, key })
  }

  lockWait(key: string): void {
    this.lockWaits++
    if (channels.lockWait.hasSubscribers)
      channels.lockWait.publish({ cache: this.#cache, key, phase: 'start' })
  }

  /** The holder's value arrived; `woken` tells whether the bus announced it (rather than a poll finding it). */
  lockWaitEnded(key: string, waitedMs: number, woken: boolean): void {
    if (channels.lockWait.hasSubscribers) {
      channels.lockWait.publish({ cache: this.#cache, key, phase: 'end', waitedMs, woken })
    }
  }

  l2Error(operation: string, error: unknown): void {
    this.l2Errors++
    if (channels.error.hasSubscribers) channels.error.publish({ cache: this.#cache, operation, error })
  }

  invalidated(what: { keys?: readonly string[]; tags?: readonly string[]; pattern?: string }): void {
    if (channels.invalidate.hasSubscribers) channels.invalidate.publish({ cache: this.#cache, ...what })
  }

  breaker(state: 'open' | 'closed'): void {
    if (channels.breaker.hasSubscribers) channels.breaker.publish({ cache: this.#cache, state })
  }
}
