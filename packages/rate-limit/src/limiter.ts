import { LarderError } from '@larder/core'
import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify'
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

/** The onRequest hook that applies `limits` (all of them; a request must fit in every one). */
export function limitHook(
  limits: readonly CompiledLimit[],
  context: LimiterContext,
): onRequestAsyncHookHandler {
  const policy = limits.map((limit) => limit.policy).join(', ')
  const { store, stats } = context
  const single = limits.length === 1 ? limits[0] : undefined
  return async function rateLimit(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (context.skip !== undefined && (await context.skip(request))) return
    if (context.allowListed(request)) return
    const consume = (limit: CompiledLimit): Promise<Decision> => {
      const key = limit.key(request)
      // A key function that returns nothing must not lump every client into one count.
      if (typeof key !== 'string') throw invalid('key', 'the function to return a string', key)
      return store.consume(`${limit.scope}|${key}`, limit.spec, limit.cost(request))
    }
    let decisions: Decision[]
    try {
      // One limit (the usual case): no Promise.all and no array of promises per request.
      decisions = single === undefined ? await Promise.all(limits.map(consume)) : [await consume(single)]
    } catch (error) {
      if (error instanceof LarderError && error.code === UNAVAILABLE) {
        stats.unavailable++
        await sendUnavailable(reply)
        return
      }
      throw error
    }
    setHeaders(reply, context.headers, limits, policy, decisions)
    const refused = mostConstrained(decisions)
    const decision = decisions[refused] as Decision
    if (decision.allowed) {
      stats.allowed++
      return
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
    await sendRefusal(reply, limit, retryAfterMs)
  }
}
