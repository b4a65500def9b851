import { type Cache, LarderError } from '@larder/core'
import type { FastifyBaseLogger } from 'fastify'
import type { InvalidationStats, InvalidationTargets } from './types.js'

export interface RetryPolicy {
  attempts: number
  minDelay: number
  maxDelay: number
}

/**
 * Runs invalidations through the engine. The engine purges this process's L1 at once and rejects when
 * Redis did not confirm; then the invalidation is retried with bounded exponential backoff, so it
 * lands once Redis is back. Never throws for Redis: a write that succeeded stays a success.
 */
export class Invalidator {
  readonly #cache: Cache
  readonly #log: FastifyBaseLogger
  readonly #retry: RetryPolicy
  readonly #timers = new Set<NodeJS.Timeout>()
  readonly #stats: InvalidationStats = { invalidations: 0, failures: 0, pending: 0, abandoned: 0 }

  constructor(cache: Cache, log: FastifyBaseLogger, retry: RetryPolicy) {
    this.#cache = cache
    this.#log = log
    this.#retry = retry
  }

  stats(): InvalidationStats {
    return { ...this.#stats }
  }

  /** Resolves when every target was confirmed, or when the failed ones were queued for retry. */
  async run(targets: InvalidationTargets): Promise<void> {
    this.#stats.invalidations++
    const failed = await this.#attempt(targets)
    if (failed !== undefined) this.#schedule(failed, 1)
  }

  /** Returns the targets Redis did not confirm, or undefined. Bad targets (caller errors) throw. */
  async #attempt(targets: InvalidationTargets): Promise<InvalidationTargets | undefined> {
    const cache = this.#cache
    const jobs: Array<[keyof InvalidationTargets, readonly string[], () => Promise<unknown>]> = []
    if (targets.tags?.length)
      jobs.push(['tags', targets.tags, () => cache.invalidateTags(targets.tags ?? [])])
    if (targets.keys?.length) jobs.push(['keys', targets.keys, () => cache.delete(...(targets.keys ?? []))])
    for (const pattern of targets.patterns ?? []) {
      jobs.push(['patterns', [pattern], () => cache.invalidatePattern(pattern)])
    }
    const results = await Promise.allSettled(jobs.map(([, , job]) => job()))
    const failed: { tags?: string[]; keys?: string[]; patterns?: string[] } = {}
    let any = false
    for (const [i, result] of results.entries()) {
      if (result.status === 'fulfilled') continue
      const [kind, values] = jobs[i] as (typeof jobs)[number]
      if (!(result.reason instanceof LarderError && result.reason.code === 'LARDER_INVALIDATION_FAILED')) {
        throw result.reason
      }
      failed[kind] = [...(failed[kind] ?? []), ...values]
      any = true
    }
    if (!any) return undefined
    this.#stats.failures++
    this.#log.error(
      { larder: 'invalidation', targets: failed },
      'larder: invalidation not confirmed by Redis, retrying',
    )
    return failed
  }

  #schedule(targets: InvalidationTargets, attempt: number): void {
    if (attempt > this.#retry.attempts) {
      this.#stats.abandoned++
      this.#log.error(
        { larder: 'invalidation', targets },
        'larder: invalidation abandoned after its retries; entries may stay stale until their TTL',
      )
      return
    }
    this.#stats.pending++
    const delay = Math.min(this.#retry.maxDelay, this.#retry.minDelay * 2 ** (attempt - 1))
    const timer = setTimeout(() => {
      this.#timers.delete(timer)
      this.#stats.pending--
      this.#attempt(targets).then(
        (failed) => {
          if (failed !== undefined) this.#schedule(failed, attempt + 1)
          else this.#log.warn({ larder: 'invalidation', attempt }, 'larder: invalidation confirmed on retry')
        },
        (error: unknown) => this.#log.error({ err: error }, 'larder: invalidation retry failed'),
      )
    }, delay)
    timer.unref()
    this.#timers.add(timer)
  }

  /** Drops the retries still waiting: logged and counted as abandoned, never lost silently. */
  close(): void {
    if (this.#timers.size > 0) {
      this.#stats.abandoned += this.#timers.size
      this.#log.error(
        { larder: 'invalidation', pending: this.#timers.size },
        'larder: closing with invalidations not confirmed by Redis; entries may stay stale until their TTL',
      )
    }
    for (const timer of this.#timers) clearTimeout(timer)
    this.#timers.clear()
    this.#stats.pending = 0
  }
}
