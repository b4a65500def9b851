import { performance } from 'node:perf_hooks'
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
  readonly #deadlines: Deadlines

  constructor(client: RedisClient, options: GuardOptions) {
    this.#client = client
    this.#timeout = options.timeout
    this.#threshold = options.threshold ?? 3
    this.#cooldown = options.cooldown ?? 1_000
    this.#deadlines = new Deadlines(this.#timeout, (pending) => this.#expire(pending))
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
      const pending = this.#deadlines.add(reject)
      call().then(
        (value) => {
          if (!this.#deadlines.remove(pending)) return
          this.#failures = 0
          this.#skipUntil = 0
          resolve(value)
        },
        (error: unknown) => {
          if (!this.#deadlines.remove(pending)) return
          this.#failed()
          reject(error)
        },
      )
    })
  }

  /** A call whose time is up (called by `Deadlines`, oldest first). */
  #expire(pending: Pending): void {
    this.#failed()
    pending.reject(new LarderError('LARDER_REDIS_TIMEOUT', `redis: no answer within ${this.#timeout} ms`))
  }

  #failed(): void {
    if (++this.#failures >= this.#threshold) this.#skipUntil = Date.now() + this.#cooldown
  }
}

/** A call in flight, linked in the order of its deadline (on the monotonic clock, as timers are). */
interface Pending {
  readonly reject: (error: unknown) => void
  readonly deadline: number
  prev: Pending | undefined
  next: Pending | undefined
  /** Out of the list: answered, or expired. */
  done: boolean
}

/**
 * The deadlines of the calls in flight, with one timer for all of them instead of a setTimeout and a
 * clearTimeout per call (a timer object and two timer-list updates saved on every request). Every
 * call gets the same timeout, so deadlines come in the order calls start: a linked list, oldest first,
 * and one timer set for the oldest deadline. Same design as @larder/core's RedisGuard. Unref'd: a
 * pending call keeps its Redis socket (and so the process) alive by itself.
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

  add(reject: (error: unknown) => void): Pending {
    const pending: Pending = {
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
