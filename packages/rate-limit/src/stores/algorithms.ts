import type { Decision, LimitSpec } from './store.js'

// The two algorithms for one process. sliding-window.lua and sliding-log.lua do the same in Redis;
// keep them in step (the conformance suite runs the same cases against both).

/** Weighted two-window counter: the counts of the current and the previous fixed window. */
export interface CounterState {
  /** Index of the current fixed window: floor(now / window). */
  index: number
  current: number
  previous: number
}

/**
 * The previous window's count weighs by how much of it the sliding window still covers, so a burst at
 * the end of one window still counts at the start of the next (no 2× burst at the edge). `state` is
 * updated in place, and only when the request is counted (`commit` and it fits): the memory store
 * keeps one object per key instead of making one per request, and a check or a refusal changes nothing.
 */
export function consumeCounter(
  state: CounterState,
  now: number,
  spec: LimitSpec,
  cost: number,
  commit = true,
): Decision {
  const { limit, window } = spec
  const index = Math.floor(now / window)
  const elapsed = now - index * window
  let current = 0
  let previous = 0
  if (state.index >= index) {
    current = state.current
    previous = state.previous
  } else if (state.index === index - 1) previous = state.current
  const weight = (window - elapsed) / window
  const estimate = previous * weight + current
  if (estimate + cost <= limit) {
    // A check answers as if the cost were counted.
    const counted = current + cost
    if (commit) {
      state.index = index
      state.current = counted
      state.previous = previous
    }
    const remaining = Math.max(0, Math.floor(limit - previous * weight - counted))
    const resetMs = counted > 0 ? 2 * window - elapsed : previous > 0 ? window - elapsed : 0
    return { allowed: true, remaining, resetMs, retryAfterMs: 0 }
  }
  let retryAfterMs: number
  if (cost > limit) retryAfterMs = window
  else if (current + cost <= limit) {
    // Fits once the previous window's weight has dropped enough (previous > 0 here).
    retryAfterMs = Math.ceil(window * (1 - (limit - current - cost) / previous) - elapsed)
  } else {
    // Only in the next window, once this window's count (then the previous one) weighs little enough.
    retryAfterMs = Math.ceil(window - elapsed + window * (1 - (limit - cost) / current))
  }
  return {
    allowed: false,
    remaining: Math.max(0, Math.floor(limit - estimate)),
    resetMs: current > 0 ? 2 * window - elapsed : window - elapsed,
    retryAfterMs: Math.max(1, retryAfterMs),
  }
}

/**
 * Exact sliding log: the time of every counted unit, oldest first. Units older than the window are
 * dropped; a request fits when the units left plus its cost are within the limit.
 */
export function consumeLog(
  times: number[] | undefined,
  now: number,
  spec: LimitSpec,
  cost: number,
  commit = true,
): { decision: Decision; times: number[] | undefined } {
  const { limit, window } = spec
  const log = times ?? []
  let expired = 0
  while (expired < log.length && (log[expired] as number) <= now - window) expired++
  if (expired > 0) log.splice(0, expired)
  const count = log.length
  if (count + cost <= limit) {
    // Without `commit` (a check) the units are not added, but the answer is the same as if they were.
    if (commit) for (let i = 0; i < cost; i++) log.push(now)
    const newest = cost > 0 ? now : log[log.length - 1]
    const resetMs = newest === undefined ? 0 : newest + window - now
    return {
      decision: { allowed: true, remaining: limit - count - cost, resetMs, retryAfterMs: 0 },
      times: log,
    }
  }
  // The request fits once `count + cost - limit` of the oldest units have left the window.
  const freeing = log[count + cost - limit - 1]
  const retryAfterMs = cost > limit || freeing === undefined ? window : freeing + window - now
  const newest = log[count - 1]
  return {
    decision: {
      allowed: false,
      remaining: Math.max(0, limit - count),
      resetMs: newest === undefined ? 0 : newest + window - now,
      retryAfterMs: Math.max(1, retryAfterMs),
    },
    times: log.length > 0 ? log : undefined,
  }
}
