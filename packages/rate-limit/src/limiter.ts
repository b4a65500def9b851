import { LarderError } from '@larder/core'
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { type CompiledLimit, invalid } from './options.js'
import { type HeaderMode, mostConstrained, sendRefusal, sendUnavailable, setHeaders } from './response.js'
import { UNAVAILABLE } from './stores/failover-store.js'
import type { Decision, RateLimitStore } from './stores/store.js'
import type { RateLimitOptions, RateLimitStats } from './types.js'

/** What every hook shares: the store, the plugin-wide options, the counters. */
export interface LimiterContext {
  store: RateLimitStore
  headers: HeaderMode
  skip: RateLimitOptions['skip']
  allowListed: (request: FastifyRequest) => boolean
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
  const { store, stats, skip, allowListed } = context
  // A store that decides synchronously (the memory store): no promise, no microtask per request.
  const memory = store.consumeNow === undefined ? undefined : (store as Required<RateLimitStore>)
  const keys = limits.map(storeKey)
  const single = limits.length === 1 ? (limits[0] as CompiledLimit) : undefined
  const singleKey = keys[0] as (request: FastifyRequest) => string

  /** Headers, counters, and the 429 if refused; true when the reply was sent. */
  function apply(request: FastifyRequest, reply: FastifyReply, decisions: readonly Decision[]): boolean {
    setHeaders(reply, context.headers, limits, policy, decisions)
    const refused = mostConstrained(decisions)
    const decision = decisions[refused] as Decision
    if (decision.allowed) {
      stats.allowed++
      return false
    }
    stats.refused++
    const limit = limits[refused] as CompiledLimit
    // The wait is the longest among the limits that refused: only then does the request fit in all.
    let retryAfterMs = 0
    for (const d of decisions) if (!d.allowed) retryAfterMs = Math.max(retryAfterMs, d.retryAfterMs)
    context.onExceeded?.(request, {
      name: limit.name,
      key: limit.key(request),
      limit: limit.spec.limit,
      window: limit.spec.window,
      retryAfter: Math.max(1, Math.ceil(retryAfterMs / 1000)),
    })
    sendRefusal(reply, limit, retryAfterMs)
    return true
  }

  /** `apply`, then continue the request unless the reply was sent. */
  function finish(
    request: FastifyRequest,
    reply: FastifyReply,
    decisions: readonly Decision[],
    done: HookHandlerDoneFunction,
  ): void {
    let sent: boolean
    try {
      sent = apply(request, reply, decisions)
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

  function limit(request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    let decisions: Decision[] | undefined
    let pending: Promise<Decision[]> | undefined
    try {
      if (allowListed(request)) {
        done()
        return
      }
      if (single !== undefined) {
        if (memory !== undefined) {
          decisions = [memory.consumeNow(singleKey(request), single.spec, single.cost(request))]
        } else pending = store.consume(singleKey(request), single.spec, single.cost(request)).then(wrap)
      } else {
        // Several limits: a request is counted in none unless it fits in all, so each is asked first
        // (a check counts nothing) and only then counted in every one.
        const storeKeys = keys.map((key) => key(request))
        const costs = limits.map((limit) => limit.cost(request))
        const ask = (check: boolean) => (limit: CompiledLimit, i: number) =>
          store.consume(storeKeys[i] as string, limit.spec, costs[i] as number, check)
        if (memory !== undefined) {
          const checks = limits.map((limit, i) =>
            memory.consumeNow(storeKeys[i] as string, limit.spec, costs[i] as number, true),
          )
          decisions = checks.every(allowed)
            ? limits.map((limit, i) =>
                memory.consumeNow(storeKeys[i] as string, limit.spec, costs[i] as number),
              )
            : uncounted(checks, costs)
        } else {
          pending = Promise.all(limits.map(ask(true))).then((checks) =>
            checks.every(allowed) ? Promise.all(limits.map(ask(false))) : uncounted(checks, costs),
          )
        }
      }
    } catch (error) {
      fail(reply, error, done)
      return
    }
    if (decisions !== undefined) finish(request, reply, decisions, done)
    else
      (pending as Promise<Decision[]>).then(
        (result) => finish(request, reply, result, done),
        (error: unknown) => fail(reply, error, done),
      )
  }

  return function rateLimit(
    request: FastifyRequest,
    reply: FastifyReply,
    done: HookHandlerDoneFunction,
  ): void {
    if (skip === undefined) {
      limit(request, reply, done)
      return
    }
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

function wrap(decision: Decision): Decision[] {
  return [decision]
}
