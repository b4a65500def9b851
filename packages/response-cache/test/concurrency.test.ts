import { once } from 'node:events'
import { request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import responseCache from '@larder/response-cache'
import { cleanupPrefix, sharedRedisUrl, uniquePrefix } from '@larder/test-support'
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type LightMyRequestResponse,
} from 'fastify'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'

// Issue 3, point 7: concurrent misses for one key make one call to the handler, in one process and
// across processes sharing Redis; when the one response is not cacheable, nobody hangs.

interface Tier {
  name: string
  redis: boolean
}

const TIERS: Tier[] = [
  { name: 'L1 only', redis: false },
  { name: 'Redis + L1', redis: true },
]

/** A prefix in the shared Redis, removed when the test ends. */
function redisPrefix(t: Test, name: string): string {
  const prefix = uniquePrefix(`rc-concurrency-${name}`)
  const admin = new Redis(sharedRedisUrl)
  t.teardown(async () => {
    await cleanupPrefix(admin, prefix)
    await admin.quit()
  })
  return prefix
}

async function app(t: Test, redis: { prefix: string } | undefined): Promise<FastifyInstance> {
  const fastify = Fastify()
  await fastify.register(
    responseCache,
    redis === undefined ? {} : { redis: sharedRedisUrl, prefix: redis.prefix },
  )
  t.teardown(() => fastify.close())
  return fastify
}

/** `count` GETs of `url` at once. */
function burst(fastify: FastifyInstance, url: string, count: number): Promise<LightMyRequestResponse[]> {
  return Promise.all(Array.from({ length: count }, () => fastify.inject(url)))
}

/** How many responses have each value of `what` (an `X-Cache` verdict, a status). */
function countBy(
  responses: LightMyRequestResponse[],
  what: (response: LightMyRequestResponse) => unknown,
): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const response of responses) {
    const value = String(what(response))
    counts[value] = (counts[value] ?? 0) + 1
  }
  return counts
}

const verdict = (response: LightMyRequestResponse) => response.headers['x-cache']

for (const tier of TIERS) {
  t.test(`${tier.name}: 100 concurrent misses for one key run the handler once`, async (t) => {
    const fastify = await app(t, tier.redis ? { prefix: redisPrefix(t, 'one') } : undefined)
    let calls = 0
    fastify.get('/slow/:id', { config: { cache: { ttl: '1m' } } }, async (request) => {
      const call = ++calls
      await sleep(50)
      return { id: (request.params as { id: string }).id, call }
    })
    await fastify.ready()

    const responses = await burst(fastify, '/slow/7', 100)
    t.equal(calls, 1, 'the handler ran once for 100 concurrent requests')
    t.same(
      responses.map((response) => response.statusCode),
      Array(100).fill(200),
      'every request got a 200',
    )
    const bodies = new Set(responses.map((response) => response.body))
    t.equal(bodies.size, 1, 'every request got the same body')
    t.same(JSON.parse(responses[0]?.body ?? ''), { id: '7', call: 1 }, "the body is the one handler call's")
    t.equal(countBy(responses, verdict).MISS, 1, 'exactly one request is the MISS that ran the handler')
    t.equal(new Set(responses.map((r) => r.headers.etag)).size, 1, 'every request got the same ETag')

    const after = await fastify.inject('/slow/7')
    t.equal(after.headers['x-cache'], 'HIT', 'the next request is a HIT')
    t.equal(calls, 1, 'the handler still ran once')
  })
}

t.test('two Fastify instances sharing Redis: 50 + 50 concurrent misses run the handler once', async (t) => {
  const prefix = redisPrefix(t, 'two')
  let calls = 0
  const handler = async () => {
    const call = ++calls
    await sleep(50)
    return { list: ['a', 'b'], call }
  }
  const first = await app(t, { prefix })
  const second = await app(t, { prefix })
  for (const fastify of [first, second]) {
    fastify.get('/shared', { config: { cache: { ttl: '1m' } } }, handler)
    await fastify.ready()
  }

  const [fromFirst, fromSecond] = await Promise.all([
    burst(first, '/shared', 50),
    burst(second, '/shared', 50),
  ])
  const responses = [...fromFirst, ...fromSecond]
  t.equal(calls, 1, 'the handler ran once across both instances')
  t.same(
    responses.map((response) => response.statusCode),
    Array(100).fill(200),
    'every request on both instances got a 200',
  )
  t.equal(new Set(responses.map((response) => response.body)).size, 1, 'every request got the same body')
  t.equal(countBy(responses, verdict).MISS, 1, 'exactly one request in all is a MISS')

  const [againFirst, againSecond] = [await first.inject('/shared'), await second.inject('/shared')]
  t.equal(againFirst.headers['x-cache'], 'HIT', 'the first instance serves a HIT afterwards')
  t.equal(againSecond.headers['x-cache'], 'HIT', 'the second instance serves a HIT afterwards')
  t.equal(calls, 1, 'the handler still ran once')
})

for (const tier of TIERS) {
  t.test(
    `${tier.name}: when the lead's response sets a cookie, the waiting requests run their own handler`,
    async (t) => {
      const fastify = await app(t, tier.redis ? { prefix: redisPrefix(t, 'cookie') } : undefined)
      let calls = 0
      fastify.get('/cookie', { config: { cache: { ttl: '1m' } } }, async (_request, reply) => {
        const call = ++calls
        await sleep(20)
        reply.header('set-cookie', `visit=${call}; Path=/`)
        return { call }
      })
      await fastify.ready()

      const responses = await burst(fastify, '/cookie', 20)
      t.same(
        responses.map((response) => response.statusCode),
        Array(20).fill(200),
        'every request got a 200',
      )
      t.equal(calls, 20, 'each request ran its own handler (nothing was shared)')
      t.equal(
        new Set(responses.map((response) => response.headers['set-cookie'])).size,
        20,
        'each client got its own cookie, never another request’s',
      )
      t.same(countBy(responses, verdict), { BYPASS: 20 }, 'every response is a BYPASS')

      const after = await fastify.inject('/cookie')
      t.equal(after.headers['x-cache'], 'BYPASS', 'a later request is not served from the cache either')
      t.equal(calls, 21, 'and ran the handler')
    },
  )

  t.test(`${tier.name}: when the lead answers 500, the waiting requests run their own handler`, async (t) => {
    const fastify = await app(t, tier.redis ? { prefix: redisPrefix(t, 'error') } : undefined)
    let calls = 0
    fastify.get('/flaky', { config: { cache: { ttl: '1m' } } }, async (_request, reply) => {
      const call = ++calls
      await sleep(20)
      if (call === 1) return reply.code(500).send({ error: 'first call fails' })
      return { call }
    })
    await fastify.ready()

    const responses = await burst(fastify, '/flaky', 20)
    const statuses = countBy(responses, (response) => response.statusCode)
    t.same(statuses, { 500: 1, 200: 19 }, 'only the lead got the 500; every waiter got a 200')
    t.equal(calls, 20, 'each waiter ran its own handler')
    for (const response of responses.filter((r) => r.statusCode === 200)) {
      t.equal(response.headers['x-cache'], 'BYPASS', 'a waiter handled by its own handler says BYPASS')
    }

    const fresh = await fastify.inject('/flaky')
    t.equal(fresh.statusCode, 200, 'a later request succeeds')
    t.equal(fresh.headers['x-cache'], 'MISS', 'and fills the cache (MISS)')
    const hit = await fastify.inject('/flaky')
    t.equal(hit.headers['x-cache'], 'HIT', 'the request after that is a HIT')
    t.equal(hit.body, fresh.body, 'with the stored body')
    t.equal(calls, 21, 'the handler ran once more in all')
  })
}

t.test(
  'two instances sharing Redis: a lead whose response is not cacheable leaves no one hanging',
  async (t) => {
    const prefix = redisPrefix(t, 'two-cookie')
    let calls = 0
    const handler = async (_request: FastifyRequest, reply: FastifyReply) => {
      const call = ++calls
      await sleep(20)
      reply.header('set-cookie', `visit=${call}; Path=/`)
      return { call }
    }
    const first = await app(t, { prefix })
    const second = await app(t, { prefix })
    for (const fastify of [first, second]) {
      fastify.get('/cookie', { config: { cache: { ttl: '1m' } } }, handler)
      await fastify.ready()
    }

    const [fromFirst, fromSecond] = await Promise.all([
      burst(first, '/cookie', 10),
      burst(second, '/cookie', 10),
    ])
    const responses = [...fromFirst, ...fromSecond]
    t.same(
      responses.map((response) => response.statusCode),
      Array(20).fill(200),
      'every request on both instances got a 200',
    )
    t.equal(calls, 20, 'each request ran its own handler')
    t.equal(
      new Set(responses.map((response) => response.headers['set-cookie'])).size,
      20,
      'no client got another request’s cookie',
    )
  },
)

/** `promise`, or a failure if it has not settled in 5 s: the requests it stands for hang. */
function unlessHanging<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const hang = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} never got an answer`)), 5_000)
  })
  return Promise.race([promise, hang]).finally(() => clearTimeout(timer))
}

for (const tier of TIERS) {
  t.test(`${tier.name}: a lead whose reply is hijacked leaves no one hanging`, async (t) => {
    const fastify = await app(t, tier.redis ? { prefix: redisPrefix(t, 'hijack') } : undefined)
    let calls = 0
    fastify.get('/raw', { config: { cache: { ttl: '1m' } } }, async (_request, reply) => {
      const call = ++calls
      await sleep(20)
      if (call > 1) return { call }
      // Written past Fastify: its onSend hooks never see this response.
      reply.hijack()
      reply.raw.writeHead(200, { 'content-type': 'text/plain' })
      reply.raw.end('written by hand')
      return reply
    })
    await fastify.ready()

    const responses = await unlessHanging(burst(fastify, '/raw', 10), 'the requests waiting on the lead')
    t.same(
      countBy(responses, (response) => response.statusCode),
      { 200: 10 },
      'every request got a 200',
    )
    t.equal(responses.filter((response) => response.body === 'written by hand').length, 1, 'the lead’s own')
    t.equal(calls, 10, 'each waiter ran its own handler')
    t.equal(countBy(responses, verdict).BYPASS, 9, 'the waiters say BYPASS')

    const fresh = await fastify.inject('/raw')
    t.equal(fresh.headers['x-cache'], 'MISS', 'a later request fills the cache')
    t.equal((await fastify.inject('/raw')).headers['x-cache'], 'HIT', 'and the next one is a HIT')
  })
}

t.test('a lead whose client goes away, and whose handler never answers, leaves no one hanging', async (t) => {
  const fastify = await app(t, undefined)
  let calls = 0
  let leadStarted: () => void = () => {}
  const started = new Promise<void>((resolve) => (leadStarted = resolve))
  fastify.get('/stuck', { config: { cache: { ttl: '1m' } } }, async (_request, reply) => {
    const call = ++calls
    if (call > 1) return { call }
    leadStarted()
    await once(reply.raw, 'close')
    // A handler stuck on something its client's departure never resolves.
    return new Promise(() => {})
  })
  await fastify.listen({ host: '127.0.0.1', port: 0 })
  const { port } = fastify.server.address() as AddressInfo

  const client = request({ host: '127.0.0.1', port, path: '/stuck' })
  client.on('error', () => {})
  client.end()
  await started
  const waiting = burst(fastify, '/stuck', 5)
  await sleep(20)
  client.destroy()

  const responses = await unlessHanging(waiting, 'the requests waiting on the abandoned lead')
  t.same(
    countBy(responses, (response) => response.statusCode),
    { 200: 5 },
    'every waiter got a 200',
  )
  t.same(countBy(responses, verdict), { BYPASS: 5 }, 'from its own handler (BYPASS)')
  t.equal(calls, 6, 'each waiter ran its own handler')
})
