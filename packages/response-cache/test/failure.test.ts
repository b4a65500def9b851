import responseCache from '@larder/response-cache'
import { type RedisServer, startRedisServer, uniquePrefix, waitFor } from '@larder/test-support'
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'

// Issue 3, point 11: Redis stopped mid-test → requests are still answered, by the handler (MISS) or
// from L1 (HIT), never with a 5xx caused by the cache, and promptly; once Redis is back, caching
// through Redis works again.

/** "Promptly": far above the engine's 100 ms Redis timeout, far below a client stuck reconnecting. */
const BOUND_MS = 1500

async function ownServer(t: Test): Promise<RedisServer> {
  const server = await startRedisServer()
  t.teardown(() => server.close())
  return server
}

/** A client for the test itself, to look at what is in Redis. */
function adminClient(t: Test, url: string): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: 1 })
  client.on('error', () => {})
  t.teardown(() => client.disconnect())
  return client
}

async function app(
  t: Test,
  server: RedisServer,
  prefix: string,
  l1: false | undefined,
): Promise<{ fastify: FastifyInstance; calls(): number }> {
  const fastify = Fastify()
  await fastify.register(responseCache, {
    redis: server.url,
    prefix,
    engine: { timeout: 100 },
    ...(l1 === false ? { l1 } : {}),
  })
  t.teardown(() => fastify.close())
  let calls = 0
  fastify.get(
    '/items/:id',
    { config: { cache: { ttl: '10m', tags: ['item:{params.id}'] } } },
    async (request) => {
      calls++
      return { id: (request.params as { id: string }).id, call: calls }
    },
  )
  await fastify.ready()
  return { fastify, calls: () => calls }
}

/** One GET, timed. */
async function timedGet(
  fastify: FastifyInstance,
  url: string,
): Promise<{ response: LightMyRequestResponse; ms: number }> {
  const started = Date.now()
  const response = await fastify.inject(url)
  return { response, ms: Date.now() - started }
}

/** The entries the route stored in Redis under `prefix`. */
async function storedEntries(admin: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = []
  let cursor = '0'
  do {
    const [next, found] = await admin.scan(cursor, 'MATCH', `${prefix}res:*`, 'COUNT', 1000)
    cursor = next
    keys.push(...found)
  } while (cursor !== '0')
  return keys
}

t.test('Redis + L1: Redis stopped mid-test, requests are answered by the handler or from L1', async (t) => {
  const server = await ownServer(t)
  const admin = adminClient(t, server.url)
  const prefix = uniquePrefix('rc-failure')
  const { fastify, calls } = await app(t, server, prefix, undefined)

  t.equal((await fastify.inject('/items/1')).headers['x-cache'], 'MISS', 'up: the first request is a MISS')
  t.equal((await fastify.inject('/items/1')).headers['x-cache'], 'HIT', 'up: the second a HIT')
  t.equal((await storedEntries(admin, prefix)).length, 1, 'up: the entry is in Redis')

  await server.stop()
  for (let round = 0; round < 3; round++) {
    const cached = await timedGet(fastify, '/items/1')
    t.equal(cached.response.statusCode, 200, `down #${round}: a cached URL answers 200`)
    t.equal(cached.response.headers['x-cache'], 'HIT', `down #${round}: from L1 (HIT)`)
    t.ok(cached.ms < BOUND_MS, `down #${round}: the HIT answered promptly (${cached.ms} ms)`)
  }
  const before = calls()
  for (let id = 2; id <= 8; id++) {
    const { response, ms } = await timedGet(fastify, `/items/${id}`)
    t.equal(response.statusCode, 200, `down: new URL /items/${id} answers 200`)
    t.equal(response.headers['x-cache'], 'MISS', `down: /items/${id} is a MISS answered by the handler`)
    t.same(
      response.json(),
      { id: String(id), call: before + id - 1 },
      `down: /items/${id} has the handler's body`,
    )
    t.ok(ms < BOUND_MS, `down: /items/${id} answered promptly (${ms} ms)`)
  }
  const again = await timedGet(fastify, '/items/5')
  t.equal(again.response.statusCode, 200, 'down: a URL loaded while Redis was down answers 200')
  t.match(again.response.headers['x-cache'], /^(HIT|MISS)$/, 'down: from L1 or the handler')
  t.ok(again.ms < BOUND_MS, `down: answered promptly (${again.ms} ms)`)

  await server.start()
  // After a restart Redis is empty; a new URL must land there once the engine uses Redis again.
  let attempt = 0
  await waitFor(
    async () => {
      attempt++
      const response = await fastify.inject(`/items/after-${attempt}`)
      if (response.statusCode !== 200) throw new Error(`status ${response.statusCode}`)
      return (await storedEntries(admin, prefix)).length > 0
    },
    { timeout: 10_000, interval: 100, message: 'nothing was stored in Redis after the restart' },
  )
  t.pass('after the restart, responses are stored in Redis again')
  const url = `/items/after-${attempt}`
  t.equal((await fastify.inject(url)).headers['x-cache'], 'HIT', 'after the restart, a HIT again')
  await fastify.close()
})

t.test('Redis only (l1: false): Redis stopped mid-test, the handler answers every request', async (t) => {
  const server = await ownServer(t)
  const admin = adminClient(t, server.url)
  const prefix = uniquePrefix('rc-failure-l2')
  const { fastify, calls } = await app(t, server, prefix, false)

  t.equal((await fastify.inject('/items/1')).headers['x-cache'], 'MISS', 'up: the first request is a MISS')
  t.equal((await fastify.inject('/items/1')).headers['x-cache'], 'HIT', 'up: the second a HIT (from Redis)')
  t.equal(calls(), 1, 'up: the handler ran once')

  await server.stop()
  for (let round = 1; round <= 8; round++) {
    const { response, ms } = await timedGet(fastify, '/items/1')
    t.equal(response.statusCode, 200, `down #${round}: 200, never a 5xx from the cache`)
    t.equal(response.headers['x-cache'], 'MISS', `down #${round}: a MISS answered by the handler`)
    t.same(response.json(), { id: '1', call: 1 + round }, `down #${round}: the handler's body`)
    t.ok(ms < BOUND_MS, `down #${round}: answered promptly (${ms} ms)`)
  }
  const burst = await Promise.all(
    Array.from({ length: 20 }, (_, i) => fastify.inject(`/items/burst-${i % 4}`)),
  )
  t.same(
    burst.map((response) => response.statusCode),
    Array(20).fill(200),
    'down: 20 concurrent requests all answered 200',
  )

  await server.start()
  await waitFor(
    async () => {
      const first = await fastify.inject('/items/back')
      if (first.statusCode !== 200) throw new Error(`status ${first.statusCode}`)
      const second = await fastify.inject('/items/back')
      return second.headers['x-cache'] === 'HIT'
    },
    { timeout: 10_000, interval: 100, message: 'no HIT from Redis after the restart' },
  )
  t.pass('after the restart, a HIT from Redis again')
  t.ok((await storedEntries(admin, prefix)).length > 0, 'after the restart, the entry is in Redis')
  await fastify.close()
})

t.test('Redis down before the first request: the app starts and answers', async (t) => {
  const server = await ownServer(t)
  await server.stop()
  const prefix = uniquePrefix('rc-failure-cold')
  const { fastify } = await app(t, server, prefix, undefined)
  for (let id = 1; id <= 3; id++) {
    const { response, ms } = await timedGet(fastify, `/items/${id}`)
    t.equal(response.statusCode, 200, `/items/${id}: 200 with Redis never reached`)
    t.equal(response.headers['x-cache'], 'MISS', `/items/${id}: a MISS answered by the handler`)
    t.ok(ms < BOUND_MS, `/items/${id}: answered promptly (${ms} ms)`)
  }
  const hit = await fastify.inject('/items/1')
  t.equal(hit.headers['x-cache'], 'HIT', 'L1 still caches while Redis is unreachable')
  const started = Date.now()
  await fastify.close()
  t.ok(Date.now() - started < BOUND_MS, 'closing with Redis down does not hang')
})
