import { LarderError, type RedisClient } from '@larder/core'

export interface GuardOptions {
  /** Longest a call may take, in ms. */
  timeout: number
  /** Consecutive failures after which Redis is skipped for `cooldown` ms, then probed by one call. */
  threshold?: number
  cooldown?: number
}

const STARTING = new Set(['wait', 'connecting', 'connect'])

/**
 * Bounds every Redis call: a timeout, no sending while the client reconnects (ioredis would hold the
 * command in its offline queue, and the request with it), and a short circuit breaker so a dead Redis
 * costs one timeout per cooldown instead of one per request. The idea of @larder/core's RedisGuard,
 * small enough to keep here.
 */
export class Guard {
  readonly #client: RedisClient
  readonly #timeout: number
  readonly #threshold: number
  readonly #cooldown: number
  #everReady: boolean
  #failures = 0
  #skipUntil = 0

  constructor(client: RedisClient, options: GuardOptions) {
    this.#client = client
    this.#timeout = options.timeout
    this.#threshold = options.threshold ?? 3
    this.#cooldown = options.cooldown ?? 1_000
    this.#everReady = client.status === 'ready'
    if (!this.#everReady) client.once('ready', () => (this.#everReady = true))
  }

  run<T>(call: () => Promise<T>): Promise<T> {
    const status = this.#client.status
    const usable = status === 'ready' || (!this.#everReady && STARTING.has(status))
    if (!usable || Date.now() < this.#skipUntil) {
      return Promise.reject(new LarderError('LARDER_REDIS_UNAVAILABLE', `redis: unavailable (${status})`))
    }
    return new Promise<T>((resolve, reject) => {
      let done = false
      const timer = setTimeout(() => {
        done = true
        this.#failed()
        reject(new LarderError('LARDER_REDIS_TIMEOUT', `redis: no answer within ${this.#timeout} ms`))
      }, this.#timeout)
      // The Redis socket keeps the process alive while a call is pending; the timer need not.
      timer.unref()
      call().then(
        (value) => {
          if (done) return
          clearTimeout(timer)
          this.#failures = 0
          this.#skipUntil = 0
          resolve(value)
        },
        (error: unknown) => {
          if (done) return
          clearTimeout(timer)
          this.#failed()
          reject(error)
        },
      )
    })
  }

  #failed(): void {
    if (++this.#failures >= this.#threshold) this.#skipUntil = Date.now() + this.#cooldown
  }
}
