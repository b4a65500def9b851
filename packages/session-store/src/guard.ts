import { type RedisClient, RedisGuard } from '@larder/core'
import { SessionStoreUnavailableError } from './errors.js'

/**
 * @larder/core's RedisGuard (a timeout per call, nothing queued while the client reconnects, a short
 * circuit breaker) with every failure turned into `SessionStoreUnavailableError` (a 503).
 */
export class Guard {
  readonly #guard: RedisGuard

  constructor(client: RedisClient, timeout: number) {
    this.#guard = new RedisGuard(client, { timeout })
  }

  run<T>(operation: string, call: () => Promise<T>): Promise<T> {
    return this.#guard.run(operation, call).catch((error: unknown) => {
      throw new SessionStoreUnavailableError(operation, error)
    })
  }
}
