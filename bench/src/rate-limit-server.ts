/**
 * The server side of scenario 7, run in a child process (`node --import tsx`) so that autocannon in
 * the parent does not share its event loop. One limiter per process, chosen by `BENCH_LIMITER`; every
 * flavour serves the same route (`GET /hello` → `{"hello":"world"}`) with a limit no request reaches
 * (1e9 per minute), keyed by the client IP: every request comes from 127.0.0.1, so all of them share
 * one key (the worst case for contention, in Redis as in memory). The parent drives it over IPC
 * (child-protocol.ts):
 *
 * - the child checks one request in-process (`inject`: 200, and the limiter's header where it sets
 *   one), listens on a free loopback port, sends `ready`;
 * - `start`: snapshots its CPU time, answers `started`; `stop`: answers `stopped` with the CPU and
 *   wall time since `start`;
 * - `close`: closes Fastify (and Redis) and exits.
 */
import { fileURLToPath } from 'node:url'
import fastifyRateLimit from '@fastify/rate-limit'
import { rateLimit } from '@larder/rate-limit'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { runChild, serveParent } from './child-protocol.js'

export type LimiterKind =
  | 'bare'
  | 'fastify-memory'
  | 'fastify-redis'
  | 'larder-memory'
  | 'larder-redis'
  | 'tutorial-zset'
  | 'headers-only'

/** What a limiter server adds to `stopped`: Larder's counters, where Larder is the limiter. */
export interface LimiterCounters {
  stats?: LarderStats
}

/** Larder's `fastify.rateLimitStats()` over a run: `fallbacks` > 0 would mean memory answered for Redis. */
export interface LarderStats {
  allowed: number
  refused: number
  fallbacks: number
  unavailable: number
  redisErrors: number
}

/** The header each limiter sets on an allowed response (the parent checks it on every response). */
export const LIMITER_HEADER: Record<LimiterKind, string | undefined> = {
  bare: undefined,
  'fastify-memory': 'x-ratelimit-remaining',
  'fastify-redis': 'x-ratelimit-remaining',
  'larder-memory': 'ratelimit',
  'larder-redis': 'ratelimit',
  'tutorial-zset': 'x-ratelimit-remaining',
  'headers-only': 'ratelimit',
}

const kind = process.env.BENCH_LIMITER as LimiterKind
const redisUrl = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379'
const prefix = process.env.BENCH_PREFIX ?? `bench:${process.pid}:`
/** High enough that no request of the scenario is refused. */
const LIMIT = 1_000_000_000
const WINDOW_MS = 60_000

/**
 * The sliding window of the tutorials: a sorted set of request times per client, trimmed, added to
 * and counted in one MULTI per request. Exact, but O(requests in the window) memory per key.
 */
function tutorialLimiter(fastify: FastifyInstance, redis: Redis): void {
  let sequence = 0
  fastify.addHook('preHandler', async (request, reply) => {
    const key = `${prefix}tutorial-rl:${request.ip}`
    const now = Date.now()
    const replies = await redis
      .multi()
      .zremrangebyscore(key, 0, now - WINDOW_MS)
      .zadd(key, now, `${now}:${process.pid}:${++sequence}`)
      .zcard(key)
      .pexpire(key, WINDOW_MS)
      .exec()
    const count = Number(replies?.[2]?.[1])
    if (!Number.isFinite(count)) throw new Error('tutorial limiter: MULTI failed')
    if (count > LIMIT) {
      reply.code(429).header('retry-after', WINDOW_MS / 1000)
      return reply.send({ error: 'Too Many Requests' })
    }
    reply.header('x-ratelimit-remaining', LIMIT - count)
  })
}

async function build(): Promise<{ fastify: FastifyInstance; redis?: Redis }> {
  const fastify = Fastify({ logger: false })
  let redis: Redis | undefined
  switch (kind) {
    case 'bare':
      break
    case 'fastify-memory':
      await fastify.register(fastifyRateLimit, { max: LIMIT, timeWindow: WINDOW_MS })
      break
    case 'fastify-redis':
      redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
      await fastify.register(fastifyRateLimit, {
        max: LIMIT,
        timeWindow: WINDOW_MS,
        redis,
        nameSpace: `${prefix}fastify-rl:`,
      })
      break
    case 'larder-memory':
      await fastify.register(rateLimit, { limit: LIMIT, window: WINDOW_MS })
      break
    case 'larder-redis':
      redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
      // The default algorithm, 'sliding-window' (the weighted two-window counter).
      await fastify.register(rateLimit, {
        limit: LIMIT,
        window: WINDOW_MS,
        redis,
        prefix: `${prefix}larder:`,
      })
      break
    case 'tutorial-zset':
      redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
      tutorialLimiter(fastify, redis)
      break
    case 'headers-only': {
      // The least any limiter sending the draft headers can cost: one callback hook that sets both
      // (values made once), with no key, no count and no decision. A reference, not a limiter.
      const policy = `"default";q=${LIMIT};w=${WINDOW_MS / 1000}`
      const state = `"default";r=${LIMIT - 1};t=${WINDOW_MS / 1000}`
      fastify.addHook('onRequest', (_request, reply, done) => {
        reply.header('ratelimit-policy', policy)
        reply.header('ratelimit', state)
        done()
      })
      break
    }
    default:
      throw new Error(`unknown BENCH_LIMITER ${String(kind)}`)
  }
  fastify.get('/hello', async () => ({ hello: 'world' }))
  return { fastify, redis }
}

/** `a + sign × b`, counter by counter: a run's counts (sign -1), or several runs' together (+1). */
export function addStats(a: LarderStats, b: LarderStats, sign: 1 | -1 = 1): LarderStats {
  const sum = { ...a }
  for (const name of Object.keys(sum) as Array<keyof LarderStats>) sum[name] += sign * b[name]
  return sum
}

async function main(): Promise<void> {
  const { fastify, redis } = await build()
  const header = LIMITER_HEADER[kind]
  const response = await fastify.inject({ method: 'GET', url: '/hello', remoteAddress: '127.0.0.1' })
  if (response.statusCode !== 200 || (header !== undefined && response.headers[header] === undefined)) {
    throw new Error(
      `${kind}: /hello answered ${response.statusCode}, ${header ?? 'no header'} ${response.headers[header ?? ''] ?? 'missing'}`,
    )
  }
  const stats = (): LarderStats | undefined =>
    fastify.hasDecorator('rateLimitStats')
      ? (fastify as unknown as { rateLimitStats(): LarderStats }).rateLimitStats()
      : undefined
  let atStart = stats()
  await serveParent<LimiterCounters>(fastify, {
    started() {
      atStart = stats()
    },
    // The counts since `start`, so the parent can add up the runs of several processes.
    stopped: () => {
      const now = stats()
      return { stats: now === undefined || atStart === undefined ? undefined : addStats(now, atStart, -1) }
    },
    close: async () => redis?.quit(),
  })
}

// The scenario imports LIMITER_HEADER from here: serve only when forked as the server.
if (process.argv[1] === fileURLToPath(import.meta.url)) runChild(main)
