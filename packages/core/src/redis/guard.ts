import { performance } from 'node:perf_hooks'
import { LarderError } from '../errors.js'
import type { Logger, RedisClient } from '../types.js'
import { usable, writeBatcher } from './connection.js'

export interface GuardOptions {
  /** Longest a call may take, in ms. */
  timeout: number
  /** Consecutive failures after which Redis is skipped for `cooldown` ms, then probed by one call. Default 5. */
  threshold?: number
  /** Default 1,000 ms. */
  cooldown?: number
  /** Failures (at most one line a second) and breaker changes are logged here when given. */
  logger?: Logger
  /** What the failing call was for, in log lines. Default 'Redis call failed'. */
  failureMessage?: string
  onError?: (operation: string, error: unknown) => void
  onBreaker?: (state: 'open' | 'closed') => void
}

const NOOP = (): void => {}

const UNAVAILABLE = 'LARDER_REDIS_UNAVAILABLE'

/**
 * Bounds every Redis call: a timeout per call, no calls while the client is reconnecting (ioredis would
 * hold them in its offline queue), and a circuit breaker that stops trying a dead Redis for `cooldown`
 * after `threshold` consecutive failures, then lets one call probe it. Commands sent together leave
 * in one socket write. Shared by every Larder package that talks to Redis.
 */
export class RedisGuard {
  readonly #client: RedisClient
  readonly #timeout: number
  readonly #threshold: number
  readonly #cooldown: number
  readonly #logger: Logger | undefined
  readonly #failureMessage: string
  readonly #onError: (operation: string, error: unknown) => void
  readonly #onBreaker: (state: 'open' | 'closed') => void
  readonly #batch: () => void
  #everReady = false
  #failures = 0
  #openUntil = 0
  #probing = false
  #lastLog = 0
  readonly #deadlines: Deadlines

  constructor(client: RedisClient, options: GuardOptions) {
    this.#client = client
    this.#timeout = options.timeout
    this.#threshold = options.threshold ?? 5
    this.#cooldown = options.cooldown ?? 1_000
    this.#logger = options.logger
    this.#failureMessage = options.failureMessage ?? 'Redis call failed'
    this.#onError = options.onError ?? NOOP
    this.#onBreaker = options.onBreaker ?? NOOP
    this.#batch = writeBatcher(client)
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
      if (this.#openUntil > 0) this.#onError(operation, error)
      else this.#failed(operation, error, false)
      return Promise.reject(error)
    }
    const probe = this.#openUntil > 0
    if (probe) this.#probing = true
    return new Promise<T>((resolve, reject) => {
      const pending = this.#deadlines.add(operation, probe, reject)
      this.#batch()
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
      `redis: ${pending.operation} took over ${this.#timeout} ms`,
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
      this.#log('warn', { larder: 'breaker' }, 'larder: Redis answers again, circuit closed')
      this.#onBreaker('closed')
    }
  }

  #failed(operation: string, error: unknown, probe: boolean): void {
    this.#onError(operation, error)
    if (probe) this.#probing = false
    const now = Date.now()
    if (now - this.#lastLog > 1_000) {
      this.#lastLog = now
      this.#log('error', { err: error, operation }, `larder: ${this.#failureMessage}`)
    }
    if (++this.#failures >= this.#threshold || probe) {
      const wasClosed = this.#openUntil === 0
      this.#openUntil = now + this.#cooldown
      if (wasClosed) {
        this.#log(
          'warn',
          { larder: 'breaker', cooldown: this.#cooldown },
          'larder: Redis keeps failing, circuit open: skipping it for a while',
        )
        this.#onBreaker('open')
      }
    }
  }

  /** A logger that throws must not leave the call it reports on unsettled. */
  #log(level: 'warn' | 'error', fields: Record<string, unknown>, message: string): void {
    try {
      this.#logger?.[level](fields, message)
    } catch {
      // Nothing left to report it to.
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
    try {
      let oldest = this.#oldest
      while (oldest !== undefined && oldest.deadline <= now) {
        this.remove(oldest)
        this.#expire(oldest)
        oldest = this.#oldest
      }
    } finally {
      // Even if expiring one call threw, the calls behind it still get their deadline.
      const oldest = this.#oldest
      if (oldest !== undefined) this.#arm(Math.max(0, oldest.deadline - performance.now()))
    }
  }
}
