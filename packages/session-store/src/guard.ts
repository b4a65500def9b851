import type { RedisClient } from '@larder/core'
import { LarderError } from '@larder/core'
import { SessionStoreUnavailableError } from './errors.js'

const STARTING = new Set(['wait', 'connecting', 'connect'])

/**
 * Bounds every Redis call of the store. A call waits at most `timeout`; once the client has been
 * connected, a call made while it is reconnecting fails at once instead of waiting in ioredis's
 * offline queue. Failures become `SessionStoreUnavailableError` (a 503).
 */
export class Guard {
  readonly #client: RedisClient
  readonly #timeout: number
  #everReady: boolean

  constructor(client: RedisClient, timeout: number) {
    this.#client = client
    this.#timeout = timeout
    this.#everReady = client.status === 'ready'
    if (!this.#everReady) client.once('ready', () => (this.#everReady = true))
  }

  run<T>(operation: string, call: () => Promise<T>): Promise<T> {
    const status = this.#client.status
    if (status !== 'ready' && (this.#everReady || !STARTING.has(status))) {
      const cause = new LarderError('LARDER_REDIS_UNAVAILABLE', `redis: client is ${status}`)
      return Promise.reject(new SessionStoreUnavailableError(operation, cause))
    }
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        const cause = new LarderError(
          'LARDER_REDIS_TIMEOUT',
          `redis: ${operation} took over ${this.#timeout} ms`,
        )
        reject(new SessionStoreUnavailableError(operation, cause))
      }, this.#timeout)
      call().then(
        (value) => {
          clearTimeout(timer)
          resolve(value)
        },
        (error: unknown) => {
          clearTimeout(timer)
          reject(new SessionStoreUnavailableError(operation, error))
        },
      )
    })
  }
}
