import { performance } from 'node:perf_hooks'
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
  readonly #deadlines: Deadlines

  constructor(client: RedisClient, options: GuardOptions) {
    this.#client = client
    this.#options = options
    this.#deadlines = new Deadlines(options.timeout, (pending) => this.#expire(pending))
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
      const pending = this.#deadlines.add(operation, probe, reject)
      call().then(
        (value) => {
          if (!this.#deadlines.remove(pending)) return
          this.#succeeded(probe)
          resolve(value)
        },
        (error: unknown) => {
          if (!this.#deadlines.remove(pending)) return
          this.#failed(operation, error, probe)
          reject(error)
        },
      )
    })
  }

  /** Rejects the calls whose time is up (called by `Deadlines`, oldest first). */
  #expire(pending: Pending): void {
    const error = new LarderError(
      'LARDER_REDIS_TIMEOUT',
      `redis: ${pending.operation} took over ${this.#options.timeout} ms`,
    )
    this.#failed(pending.operation, error, pending.probe)
    pending.reject(error)
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

/** A call in flight, linked in order of its deadline (on the monotonic clock, as timers are). */
interface Pending {
  readonly operation: string
  readonly probe: boolean
  readonly reject: (error: unknown) => void
  readonly deadline: number
  prev: Pending | undefined
  next: Pending | undefined
  /** Out of the list: answered, or expired. */
  done: boolean
}

/**
 * The deadlines of the calls in flight, with one timer for all of them instead of a setTimeout and a
 * clearTimeout per call. Every call gets the same timeout, so deadlines come in the order calls start:
 * they are kept in a linked list, the oldest first, and the timer is set for the oldest deadline. A call
 * that ends leaves the list at once; when the timer fires it expires the calls whose deadline has passed
 * and is set again for the next one. Unref'd: a pending call keeps its Redis socket (and so the process)
 * alive by itself.
 */
class Deadlines {
  readonly #timeout: number
  readonly #expire: (pending: Pending) => void
  #oldest: Pending | undefined
  #newest: Pending | undefined
  #timer: NodeJS.Timeout | undefined

  constructor(timeout: number, expire: (pending: Pending) => void) {
    this.#timeout = timeout
    this.#expire = expire
  }

  add(operation: string, probe: boolean, reject: (error: unknown) => void): Pending {
    const pending: Pending = {
      operation,
      probe,
      reject,
      deadline: performance.now() + this.#timeout,
      prev: this.#newest,
      next: undefined,
      done: false,
    }
    if (this.#newest === undefined) this.#oldest = pending
    else this.#newest.next = pending
    this.#newest = pending
    if (this.#timer === undefined) this.#arm(this.#timeout)
    return pending
  }

  /** Takes an answered call out; false when it had already expired (its caller got the timeout). */
  remove(pending: Pending): boolean {
    if (pending.done) return false
    pending.done = true
    const { prev, next } = pending
    if (prev === undefined) this.#oldest = next
    else prev.next = next
    if (next === undefined) this.#newest = prev
    else next.prev = prev
    pending.prev = pending.next = undefined
    return true
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(this.#sweep, Math.max(1, ms))
    this.#timer.unref()
  }

  readonly #sweep = (): void => {
    this.#timer = undefined
    const now = performance.now()
    let oldest = this.#oldest
    while (oldest !== undefined && oldest.deadline <= now) {
      this.remove(oldest)
      this.#expire(oldest)
      oldest = this.#oldest
    }
    if (oldest !== undefined) this.#arm(oldest.deadline - now)
  }
}
