import { LarderError } from '@larder/core'
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { type CompiledLimit, invalid } from './options.js'
import {
  type HeaderMode,
  mostConstrained,
  sendRefusal,
  sendUnavailable,
  setHeader,
  setHeaders,
} from './response.js'
import { UNAVAILABLE } from './stores/failover-store.js'
import type { Decision, RateLimitStore } from './stores/store.js'
import type { RateLimitOptions, RateLimitStats } from './types.js'

/** What every hook shares: the store, the plugin-wide options, the counters. */
export interface LimiterContext {
  store: RateLimitStore
  headers: HeaderMode
  skip: RateLimitOptions['skip']
  /** Undefined when there is no allow list. */
  allowListed: ((request: FastifyRequest) => boolean) | undefined
  onExceeded: RateLimitOptions['onExceeded']
  stats: RateLimitStats
}

/** A callback-style onRequest/preHandler hook: no promise per request when the store answers at once. */
export type LimitHook = (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void

/**
 * The store key of `limit` for a request. Remembers the last client: consecutive requests from one
 * client (keep-alive) reuse the same key string, whose hash V8 has already computed.
 */
function storeKey(limit: CompiledLimit): (request: FastifyRequest) => string {
  let lastKey: string | undefined
  let lastStoreKey = ''
  return (request) => {
    const key = limit.key(request)
    // A key function that returns nothing must not lump every client into one count.
    if (typeof key !== 'string') throw invalid('key', 'the function to return a string', key)
    if (key === lastKey) return lastStoreKey
    lastKey = key
    lastStoreKey = `${limit.scope}|${key}`
    return lastStoreKey
  }
}

/** The hook that applies `limits` (all of them; a request must fit in every one). */
export function limitHook(limits: readonly CompiledLimit[], context: LimiterContext): LimitHook {
  const policy = limits.map((limit) => limit.policy).join(', ')
  const { store, stats, skip, allowListed, headers } = context
  // A store that decides synchronously (the memory store): no promise, no microtask per request.
  const memory = store.consumeNow === undefined ? undefined : (store as Required<RateLimitStore>)
  const keys = limits.map(storeKey)
  const single = limits.length === 1 ? (limits[0] as CompiledLimit) : undefined
  const singleKey = keys[0] as (request: FastifyRequest) => string

  /** Counts the refusal, tells `onExceeded`, sends the 429. */
  function refuse(
    request: FastifyRequest,
    reply: FastifyReply,
    limit: CompiledLimit,
    retryAfterMs: number,
  ): void {
    stats.refused++
    context.onExceeded?.(request, {
      name: limit.name,
      key: limit.key(request),
      limit: limit.spec.limit,
      window: limit.spec.window,
      retryAfter: Math.max(1, Math.ceil(retryAfterMs / 1000)),
    })
    sendRefusal(reply, limit, retryAfterMs)
  }

  /** Headers, counters, and the 429 if refused; true when the reply was sent. */
  function apply(request: FastifyRequest, reply: FastifyReply, decisions: readonly Decision[]): boolean {
    setHeaders(reply, headers, limits, policy, decisions)
    const refused = mostConstrained(decisions)
    if ((decisions[refused] as Decision).allowed) {
      stats.allowed++
      return false
    }
    // The wait is the longest among the limits that refused: only then does the request fit in all.
    let retryAfterMs = 0
    for (const d of decisions) if (!d.allowed) retryAfterMs = Math.max(retryAfterMs, d.retryAfterMs)
    refuse(request, reply, limits[refused] as CompiledLimit, retryAfterMs)
    return true
  }

  /** `apply` for a route with one limit: no arrays. */
  function applyOne(request: FastifyRequest, reply: FastifyReply, decision: Decision): boolean {
    const limit = single as CompiledLimit
    setHeader(reply, headers, limit, decision)
    if (decision.allowed) {
      stats.allowed++
      return false
    }
    refuse(request, reply, limit, decision.retryAfterMs)
    return true
  }

  /** `apply` (or `applyOne`), then continue the request unless the reply was sent. */
  function finish<T>(
    request: FastifyRequest,
    reply: FastifyReply,
    outcome: T,
    applied: (request: FastifyRequest, reply: FastifyReply, outcome: T) => boolean,
    done: HookHandlerDoneFunction,
  ): void {
    let sent: boolean
    try {
      sent = applied(request, reply, outcome)
    } catch (error) {
      done(error as Error)
      return
    }
    if (!sent) done()
  }

  function fail(reply: FastifyReply, error: unknown, done: HookHandlerDoneFunction): void {
    if (error instanceof LarderError && error.code === UNAVAILABLE) {
      stats.unavailable++
      sendUnavailable(reply)
    } else done(error as Error)
  }

  /** One limit: the usual route. A synchronous store decides without a promise. */
  function limitOne(request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const limit = single as CompiledLimit
    if (memory !== undefined) {
      // A memory store never reports itself unavailable: every error here is the request's own.
      let decision: Decision
      try {
        decision = memory.consumeNow(singleKey(request), limit.spec, limit.cost(request))
      } catch (error) {
        done(error as Error)
        return
      }
      finish(request, reply, decision, applyOne, done)
      return
    }
    let pending: Promise<Decision>
    try {
      pending = store.consume(singleKey(request), limit.spec, limit.cost(request))
    } catch (error) {
      fail(reply, error, done)
      return
    }
    pending.then(
      (result) => finish(request, reply, result, applyOne, done),
      (error: unknown) => fail(reply, error, done),
    )
  }

  /**
   * Several limits: a request is counted in none unless it fits in all, so each is asked first (a
   * check counts nothing) and only then counted in every one.
   */
  function limitAll(request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    let decisions: Decision[] | undefined
    let pending: Promise<Decision[]> | undefined
    try {
      const storeKeys = keys.map((key) => key(request))
      const costs = limits.map((limit) => limit.cost(request))
      if (memory !== undefined) {
        const now = (check: boolean) => (limit: CompiledLimit, i: number) =>
          memory.consumeNow(storeKeys[i] as string, limit.spec, costs[i] as number, check)
        const checks = limits.map(now(true))
        decisions = checks.every(allowed) ? limits.map(now(false)) : uncounted(checks, costs)
      } else {
        const ask = (check: boolean) => (limit: CompiledLimit, i: number) =>
          store.consume(storeKeys[i] as string, limit.spec, costs[i] as number, check)
        pending = Promise.all(limits.map(ask(true))).then((checks) =>
          checks.every(allowed) ? Promise.all(limits.map(ask(false))) : uncounted(checks, costs),
        )
      }
    } catch (error) {
      fail(reply, error, done)
      return
    }
    if (decisions !== undefined) finish(request, reply, decisions, apply, done)
    else
      (pending as Promise<Decision[]>).then(
        (result) => finish(request, reply, result, apply, done),
        (error: unknown) => fail(reply, error, done),
      )
  }

  const decide = single === undefined ? limitAll : limitOne
  // Without an allow list and a skip (the usual case) the decision is the hook itself.
  const limit: LimitHook =
    allowListed === undefined
      ? decide
      : (request, reply, done) => {
          let listed: boolean
          try {
            listed = allowListed(request)
          } catch (error) {
            done(error as Error)
            return
          }
          if (listed) done()
          else decide(request, reply, done)
        }
  if (skip === undefined) return limit

  return function skipFirst(
    request: FastifyRequest,
    reply: FastifyReply,
    done: HookHandlerDoneFunction,
  ): void {
    let skipped: boolean | Promise<boolean>
    try {
      skipped = skip(request)
    } catch (error) {
      done(error as Error)
      return
    }
    if (typeof (skipped as Promise<boolean> | undefined)?.then === 'function') {
      ;(skipped as Promise<boolean>).then(
        (value) => (value ? done() : limit(request, reply, done)),
        (error: unknown) => done(error as Error),
      )
    } else if (skipped) done()
    else limit(request, reply, done)
  }
}

const allowed = (decision: Decision): boolean => decision.allowed

/** The checks of a refused request: the limits that would have let it through never counted it. */
function uncounted(checks: Decision[], costs: readonly number[]): Decision[] {
  return checks.map((d, i) => (d.allowed ? { ...d, remaining: d.remaining + (costs[i] as number) } : d))
}
