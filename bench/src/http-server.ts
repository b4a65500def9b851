/**
 * The server side of scenario 6, run in a child process (`node --import tsx`) so that the load
 * generator in the parent does not share its event loop. One route flavour per process, chosen by
 * `BENCH_ROUTE`; the parent drives it over IPC (child-protocol.ts):
 *
 * - the child warms every key in-process (`inject`), listens on a free loopback port, sends `ready`;
 * - `start`: re-warms what can expire, then snapshots its CPU time and counters, answers `started`;
 * - `stop`: answers `stopped` with the CPU time, wall time, handler calls and query calls since `start`;
 * - `close`: closes Fastify (and Redis) and exits.
 */
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { responseCache } from '@larder/response-cache'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { runChild, serveParent } from './child-protocol.js'
import { type Product, product } from './value.js'

export type RouteKind = 'object' | 'buffer' | 'l1' | 'redis' | 'query' | 'cache-aside' | 'redis-bytes'

/** What a route server adds to `stopped`: calls since `start`. */
export interface RouteCounters {
  handlerCalls: number
  queries: number
}

/** The ids served, given by the parent (all with JSON of the same length). */
const ids = (process.env.BENCH_IDS ?? '').split(',').filter((id) => id.length > 0)
const kind = process.env.BENCH_ROUTE as RouteKind
const redisUrl = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379'
const prefix = process.env.BENCH_PREFIX ?? `bench:${process.pid}:`
const QUERY_MS = 5
/** The tutorial's TTL. */
const TUTORIAL_TTL_S = 60
const REWARM_MS = 30_000
const JSON_TYPE = 'application/json; charset=utf-8'

const objects = new Map<string, Product>(ids.map((id) => [id, product(Number(id))]))
const buffers = new Map<string, Buffer>(
  ids.map((id) => [id, Buffer.from(JSON.stringify(product(Number(id))))]),
)

let handlerCalls = 0
let queries = 0

/** The simulated database query: 5 ms, then the record. */
async function query(id: string): Promise<Product | undefined> {
  queries++
  await sleep(QUERY_MS)
  return objects.get(id)
}

type Params = { Params: { id: string } }

async function build(): Promise<{ fastify: FastifyInstance; redis?: Redis }> {
  const fastify = Fastify({ logger: false })
  const path = '/products/:id'
  switch (kind) {
    case 'object':
      fastify.get<Params>(path, async (request) => {
        handlerCalls++
        return objects.get(request.params.id)
      })
      return { fastify }
    case 'buffer':
      fastify.get<Params>(path, async (request, reply) => {
        handlerCalls++
        reply.header('content-type', JSON_TYPE)
        return buffers.get(request.params.id)
      })
      return { fastify }
    case 'l1':
    case 'redis': {
      if (kind === 'l1') await fastify.register(responseCache)
      else await fastify.register(responseCache, { redis: redisUrl, l1: false, prefix: `${prefix}http:` })
      fastify.get<Params>(path, { config: { cache: { ttl: '1h' } } }, async (request) => {
        handlerCalls++
        return objects.get(request.params.id)
      })
      return { fastify }
    }
    case 'query':
      fastify.get<Params>(path, async (request) => {
        handlerCalls++
        return query(request.params.id)
      })
      return { fastify }
    case 'cache-aside': {
      const redis = new Redis(redisUrl)
      // The cache-aside handler of every tutorial.
      fastify.get<Params>(path, async (request) => {
        handlerCalls++
        const k = `${prefix}tutorial:product:${request.params.id}`
        const hit = await redis.get(k)
        if (hit) return JSON.parse(hit)
        const v = await query(request.params.id)
        await redis.set(k, JSON.stringify(v), 'EX', TUTORIAL_TTL_S)
        return v
      })
      return { fastify, redis }
    }
    case 'redis-bytes': {
      const redis = new Redis(redisUrl)
      // The floor of any Redis hit: one GET of the response bytes, sent as they are.
      fastify.get<Params>(path, async (request, reply) => {
        handlerCalls++
        const hit = await redis.getBuffer(`${prefix}tutorial:product:${request.params.id}`)
        if (hit === null) return query(request.params.id)
        reply.header('content-type', JSON_TYPE)
        return hit
      })
      return { fastify, redis }
    }
    default:
      throw new Error(`unknown BENCH_ROUTE ${String(kind)}`)
  }
}

/** Fills the caches (one request per id) and checks what a warmed route answers. */
async function warm(fastify: FastifyInstance, redis: Redis | undefined): Promise<void> {
  if (redis !== undefined) {
    const batch = redis.pipeline()
    for (const id of ids) {
      batch.set(`${prefix}tutorial:product:${id}`, JSON.stringify(objects.get(id)), 'EX', TUTORIAL_TTL_S)
    }
    await batch.exec()
  }
  for (const id of ids) {
    const response = await fastify.inject({ method: 'GET', url: `/products/${id}` })
    const expected = buffers.get(id) as Buffer
    if (response.statusCode !== 200 || !response.rawPayload.equals(expected)) {
      throw new Error(`${kind}: /products/${id} answered ${response.statusCode} with another body`)
    }
    if (!String(response.headers['content-type']).startsWith('application/json')) {
      throw new Error(`${kind}: /products/${id} answered content-type ${response.headers['content-type']}`)
    }
  }
  if (kind !== 'l1' && kind !== 'redis') return
  // The cached routes store in the background: wait until every id is a HIT.
  for (const id of ids) {
    for (let attempt = 0; ; attempt++) {
      const response = await fastify.inject({ method: 'GET', url: `/products/${id}` })
      const verdict = response.headers['x-cache']
      if (verdict === 'HIT') break
      if (attempt === 200) throw new Error(`${kind}: /products/${id} is still not a HIT (${verdict})`)
      await sleep(25)
    }
  }
}

async function main(): Promise<void> {
  const { fastify, redis } = await build()
  await warm(fastify, redis)
  let warmed = performance.now()
  let calls = 0
  let queried = 0
  await serveParent<RouteCounters>(fastify, {
    async beforeStart() {
      // Only the cache-aside keys can expire during the scenario (60 s; the rest have 1 h): written
      // again when they are 30 s old, so none expires during a run.
      if (redis === undefined || performance.now() - warmed <= REWARM_MS) return
      await warm(fastify, redis)
      warmed = performance.now()
    },
    started() {
      calls = handlerCalls
      queried = queries
    },
    stopped: () => ({ handlerCalls: handlerCalls - calls, queries: queries - queried }),
    close: async () => redis?.quit(),
  })
}

runChild(main)
