import type { Algorithm } from '../types.js'

/** A limit as the stores see it, with the window in milliseconds. */
export interface LimitSpec {
  limit: number
  window: number
  algorithm: Algorithm
}

/** The outcome of one `consume`. Times are milliseconds from the moment of the decision. */
export interface Decision {
  allowed: boolean
  /** Units left in the window after this request (whole units, >= 0). */
  remaining: number
  /** Until every unit counted so far has left the sliding window (the quota is whole again). */
  resetMs: number
  /** Refused: until this request would fit. Allowed: 0. */
  retryAfterMs: number
}

/**
 * Where the counts live. Memory and Redis implement it; the plugin never asks which one it has.
 * Every store must pass the conformance suite in `test/conformance.ts`.
 */
export interface RateLimitStore {
  /**
   * Counts `cost` units for `key` under `spec` if they fit in the sliding window, and says whether they
   * did. Atomic: concurrent calls for one key never allow more than `spec.limit` units per window.
   * A refused request is not counted. `key` already includes the limit's scope. `check`: decide
   * without counting anything (a route with several limits asks each before counting in any).
   */
  consume(key: string, spec: LimitSpec, cost: number, check?: boolean): Promise<Decision>
  /**
   * `consume` answered at once, for a store that decides without I/O (the memory store): the plugin
   * then spends no promise on the request. Must behave exactly as `consume`.
   */
  consumeNow?(key: string, spec: LimitSpec, cost: number, check?: boolean): Decision
  /** Releases what the store opened (timers, connections it created). */
  close(): Promise<void>
}
