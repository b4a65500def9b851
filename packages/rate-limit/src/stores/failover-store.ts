import { LarderError, type Logger } from '@larder/core'
import type { MemoryStore } from './memory-store.js'
import type { Decision, LimitSpec, RateLimitStore } from './store.js'

export interface FailoverOptions {
  primary: RateLimitStore
  /** `'open'`: decide from `fallback` while `primary` fails. `'closed'`: reject with LARDER_RATE_LIMIT_UNAVAILABLE. */
  mode: 'open' | 'closed'
  fallback: MemoryStore
  logger: Logger
  /** Counts each failed primary call and each decision taken from the fallback. */
  onError: () => void
  onFallback: () => void
}

export const UNAVAILABLE = 'LARDER_RATE_LIMIT_UNAVAILABLE'

/**
 * Keeps the API up when the shared store (Redis) is down: each failed call is answered from the
 * per-process memory store with the same limits (fail open) or refused (fail closed). Every call tries
 * the primary first, so it is used again as soon as it answers. Logs once when it goes and once when it
 * comes back, not per request.
 */
export class FailoverStore implements RateLimitStore {
  readonly #options: FailoverOptions
  #down = false

  constructor(options: FailoverOptions) {
    this.#options = options
  }

  async consume(key: string, spec: LimitSpec, cost: number, check = false): Promise<Decision> {
    const { primary, mode, fallback, logger } = this.#options
    try {
      const decision = await primary.consume(key, spec, cost, check)
      if (this.#down) {
        this.#down = false
        logger.warn({ larder: 'rate-limit' }, 'larder: rate-limit store answers again, limiting through it')
      }
      return decision
    } catch (error) {
      this.#options.onError()
      if (!this.#down) {
        this.#down = true
        logger.warn(
          { larder: 'rate-limit', err: error, failMode: mode },
          mode === 'open'
            ? 'larder: rate-limit store unavailable, limiting from process memory'
            : 'larder: rate-limit store unavailable, answering 503',
        )
      }
      if (mode === 'closed') {
        throw new LarderError(UNAVAILABLE, 'rate-limit store unavailable (failMode closed)', { cause: error })
      }
      this.#options.onFallback()
      return fallback.consumeNow(key, spec, cost, check)
    }
  }

  async close(): Promise<void> {
    await this.#options.primary.close()
    await this.#options.fallback.close()
  }
}
