import { LarderError } from '../errors.js'
import type { Logger, RedisClient } from '../types.js'
import { usable } from './connection.js'

export interface GuardOptions {
  timeout: number
  threshold: number
  cooldown: number
  logger: Logger
  onError: (operation: string, error: unknown) => void
  onBreaker: (state: 'open' | 'closed') => void
}

const UNAVAILABLE = 'LARDER_REDIS_UNAVAILABLE'

/**
 * Bounds every Redis call: a timeout per call, no calls while the client is reconnecting, and a circuit
 * breaker that stops trying a dead Redis for `cooldown` after `threshold` consecutive failures, then lets
 * one call probe it.
 */
export class RedisGuard {
  readonly #client: RedisClient
  readonly #options: GuardOptions
  #everReady = false
  #failures = 0
  #openUntil = 0
  #probing = false
  #lastLog = 0

  constructor(client: RedisClient, options: GuardOptions) {
    this.#client = client
    this.#options = options
    this.#everReady = client.status === 'ready'
    if (!this.#everReady) client.once('ready', () => (this.#everReady = true))
  }

  get state(): 'open' | 'closed' {
    return this.#openUntil > 0 ? 'open' : 'closed'
  }

  /** Runs `call` within the timeout; rejects at once when Redis is known to be unreachable. */
  run<T>(operation: string, call: () => Promise<T>): Promise<T> {
    if (!this.#admit()) {
      const error = new LarderError(UNAVAILABLE, `redis: ${operation} skipped, Redis is unavailable`)
      // Skipped by the open breaker: counted only. Skipped because the client is reconnecting: a
      // failure like a timeout, so it is logged and opens the breaker after `threshold` of them.
      if (this.#openUntil > 0) this.#options.onError(operation, error)
      else this.#failed(operation, error, false)
      return Promise.reject(error)
    }
    const probe = this.#openUntil > 0
    if (probe) this.#probing = true
    return new Promise<T>((resolve, reject) => {
      let settled = false
      const timer = setTimeout(() => {
        settled = true
        const error = new LarderError(
          'LARDER_REDIS_TIMEOUT',
          `redis: ${operation} took over ${this.#options.timeout} ms`,
        )
        this.#failed(operation, error, probe)
        reject(error)
      }, this.#options.timeout)
      call().then(
        (value) => {
          if (settled) return
          clearTimeout(timer)
          this.#succeeded(probe)
          resolve(value)
        },
        (error: unknown) => {
          if (settled) return
          clearTimeout(timer)
          this.#failed(operation, error, probe)
          reject(error)
        },
      )
    })
  }

  #admit(): boolean {
    if (this.#openUntil > 0) {
      if (Date.now() < this.#openUntil || this.#probing) return false
    }
    return usable(this.#client, this.#everReady)
  }

  #succeeded(probe: boolean): void {
    this.#failures = 0
    if (probe) this.#probing = false
    if (this.#openUntil > 0) {
      this.#openUntil = 0
      this.#options.logger.warn({ larder: 'breaker' }, 'larder: Redis answers again, circuit closed')
      this.#options.onBreaker('closed')
    }
  }

  #failed(operation: string, error: unknown, probe: boolean): void {
    this.#options.onError(operation, error)
    if (probe) this.#probing = false
    const now = Date.now()
    if (now - this.#lastLog > 1_000) {
      this.#lastLog = now
      this.#options.logger.error({ err: error, operation }, 'larder: Redis call failed, treated as a miss')
    }
    if (++this.#failures >= this.#options.threshold || probe) {
      const wasClosed = this.#openUntil === 0
      this.#openUntil = now + this.#options.cooldown
      if (wasClosed) {
        this.#options.logger.warn(
          { larder: 'breaker', cooldown: this.#options.cooldown },
          'larder: Redis keeps failing, circuit open: skipping it for a while',
        )
        this.#options.onBreaker('open')
      }
    }
  }
}
