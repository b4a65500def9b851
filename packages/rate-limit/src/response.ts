import type { FastifyReply } from 'fastify'
import type { CompiledLimit } from './options.js'
import type { Decision } from './stores/store.js'

export type HeaderMode = 'draft' | 'legacy' | 'both' | false

const seconds = (ms: number): number => Math.max(0, Math.ceil(ms / 1000))

/** One limit's item of the `RateLimit` field: `"name";r=<remaining>;t=<seconds until whole again>`. */
function item(limit: CompiledLimit, decision: Decision): string {
  return `${limit.remainingPrefix}${decision.remaining};t=${seconds(decision.resetMs)}`
}

function setLegacy(reply: FastifyReply, limit: CompiledLimit, decision: Decision): void {
  reply.header('x-ratelimit-limit', limit.spec.limit)
  reply.header('x-ratelimit-remaining', decision.remaining)
  reply.header('x-ratelimit-reset', seconds(decision.resetMs))
}

/**
 * The RateLimit header fields of draft-ietf-httpapi-ratelimit-headers-10 (`RateLimit-Policy` is
 * precomputed per route), and/or the legacy `X-RateLimit-*` of the most constrained limit.
 */
export function setHeaders(
  reply: FastifyReply,
  mode: HeaderMode,
  limits: readonly CompiledLimit[],
  policy: string,
  decisions: readonly Decision[],
): void {
  if (mode === false) return
  if (mode !== 'legacy') {
    reply.header('ratelimit-policy', policy)
    reply.header('ratelimit', limits.map((limit, i) => item(limit, decisions[i] as Decision)).join(', '))
  }
  if (mode !== 'draft') {
    const tightest = mostConstrained(decisions)
    setLegacy(reply, limits[tightest] as CompiledLimit, decisions[tightest] as Decision)
  }
}

/** `setHeaders` for a route with one limit. */
export function setHeader(
  reply: FastifyReply,
  mode: HeaderMode,
  limit: CompiledLimit,
  decision: Decision,
): void {
  if (mode === false) return
  if (mode !== 'legacy') {
    reply.header('ratelimit-policy', limit.policy)
    reply.header('ratelimit', item(limit, decision))
  }
  if (mode !== 'draft') setLegacy(reply, limit, decision)
}

/** The refusing limit if any, else the one with the fewest units left. */
export function mostConstrained(decisions: readonly Decision[]): number {
  let best = 0
  for (let i = 1; i < decisions.length; i++) {
    const a = decisions[i] as Decision
    const b = decisions[best] as Decision
    if ((!a.allowed && b.allowed) || (a.allowed === b.allowed && a.remaining < b.remaining)) best = i
  }
  return best
}

/** The 429: an RFC 9457 problem with the wait in `retryAfter` (seconds) and in `Retry-After`. */
export function sendRefusal(reply: FastifyReply, limit: CompiledLimit, retryAfterMs: number): FastifyReply {
  const retryAfter = Math.max(1, seconds(retryAfterMs))
  const window = limit.spec.window
  const per = window % 1000 === 0 ? `${window / 1000} s` : `${window} ms`
  return reply
    .code(429)
    .header('retry-after', retryAfter)
    .header('content-type', 'application/problem+json; charset=utf-8')
    .send(
      JSON.stringify({
        type: 'about:blank',
        title: 'Too Many Requests',
        status: 429,
        detail: `Rate limit "${limit.name}" exceeded: ${limit.spec.limit} per ${per}. Retry in ${retryAfter} s.`,
        retryAfter,
      }),
    )
}

/** Fail closed: the limiter cannot decide, so the request is not served. */
export function sendUnavailable(reply: FastifyReply): FastifyReply {
  return reply
    .code(503)
    .header('retry-after', 1)
    .header('content-type', 'application/problem+json; charset=utf-8')
    .send(
      JSON.stringify({
        type: 'about:blank',
        title: 'Service Unavailable',
        status: 503,
        detail: 'The rate limiter cannot reach its store; try again shortly.',
      }),
    )
}
