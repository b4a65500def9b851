import { Writable } from 'node:stream'
import rateLimit from '@larder/rate-limit'
import { type RedisServer, startRedisServer, uniquePrefix, waitFor } from '@larder/test-support'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'

// Issue 5, point 6: Redis stopped mid-test → open mode keeps limiting from memory, closed mode answers
// 503; both recover when Redis restarts (with an empty script cache), and no request waited longer than
// the timeout meanwhile.

const TIMEOUT_MS = 150
/** "Never hangs": the timeout plus room for a busy test host; ioredis's offline queue would wait far longer. */
const BOUND_MS = TIMEOUT_MS + 350

async function setup(t: Test, failMode: 'open' | 'closed') {
  const server: RedisServer = await startRedisServer()
  t.teardown(() => server.close())
  const admin = new Redis(server.url, { maxRetriesPerRequest: 1 })
  admin.on('error', () => {})
  t.teardown(() => admin.disconnect())
  const warnings: string[] = []
  const stream = new Writable({
    write(chunk, _encoding, done) {
      warnings.push(JSON.parse(String(chunk)).msg)
      done()
    },
  })
  const fastify: FastifyInstance = Fastify({ logger: { level: 'warn', stream } })
  const prefix = uniquePrefix('rate-failure')
  await fastify.register(rateLimit, {
    redis: server.url,
    prefix,
    limit: 5,
    window: '1m',
    algorithm: 'sliding-log',
    key: () => 'client',
    failMode,
    timeout: TIMEOUT_MS,
  })
  fastify.get('/items', async () => 'items')
  t.teardown(() => fastify.close())
  const storedUnits = async () => {
    const keys = await admin.keys(`${prefix}*`)
    return keys.length === 0 ? 0 : admin.zcard(keys[0] as string)
  }
  return { server, fastify, warnings, storedUnits }
}

async function timed(fastify: FastifyInstance, n: number) {
  const results: Array<{ status: number; ms: number }> = []
  for (let i = 0; i < n; i++) {
    const started = performance.now()
    const response = await fastify.inject('/items')
    results.push({ status: response.statusCode, ms: performance.now() - started })
  }
  return results
}

t.test('failMode open: limits from memory while Redis is down, then Redis again', async (t) => {
  const { server, fastify, warnings, storedUnits } = await setup(t, 'open')
  const before = await timed(fastify, 3)
  t.same(
    before.map((r) => r.status),
    [200, 200, 200],
    'served while Redis is up',
  )
  t.equal(await storedUnits(), 3, 'and counted in Redis')

  await server.stop()
  const down = await timed(fastify, 8)
  t.same(
    down.map((r) => r.status),
    [200, 200, 200, 200, 200, 429, 429, 429],
    'Redis down: the memory limiter applies the same limit of 5',
  )
  const slowest = Math.max(...down.map((r) => r.ms))
  t.ok(slowest < BOUND_MS, `no request waited on the dead Redis (slowest ${slowest.toFixed(0)} ms)`)
  t.ok(fastify.rateLimitStats().fallbacks >= 8, 'every decision was counted as a fallback')
  t.ok(
    warnings.some((msg) => msg.includes('limiting from process memory')),
    'a warning says the limiter runs from memory',
  )

  await server.start()
  const after = await waitFor(
    async () => {
      const [result] = await timed(fastify, 1)
      return (await storedUnits()) > 0 ? result : undefined
    },
    { timeout: 5_000, message: 'the limiter never went back to Redis' },
  )
  t.ok(after !== undefined && after.status === 200, 'after the restart, a request is served through Redis')
  t.ok(
    warnings.some((msg) => msg.includes('answers again')),
    'a warning says Redis is back',
  )
  const errors = fastify.rateLimitStats().redisErrors
  const back = await timed(fastify, 3)
  t.ok(
    back.every((r) => r.status === 200),
    'Redis counts afresh after its restart: served',
  )
  t.equal(
    fastify.rateLimitStats().redisErrors,
    errors,
    'no Redis error once it is back (NOSCRIPT was absorbed)',
  )
})

t.test('failMode closed: 503 while Redis is down, then limits through Redis again', async (t) => {
  const { server, fastify, storedUnits } = await setup(t, 'closed')
  t.same(
    (await timed(fastify, 2)).map((r) => r.status),
    [200, 200],
    'served while Redis is up',
  )
  await server.stop()
  const down = await timed(fastify, 5)
  t.same(
    down.map((r) => r.status),
    [503, 503, 503, 503, 503],
    'Redis down: every request is answered 503',
  )
  const slowest = Math.max(...down.map((r) => r.ms))
  t.ok(slowest < BOUND_MS, `promptly (slowest ${slowest.toFixed(0)} ms)`)
  const response = await fastify.inject('/items')
  t.match(response.headers['content-type'], /^application\/problem\+json/, 'the 503 is a problem+json')
  t.match(response.json(), { status: 503, title: 'Service Unavailable' }, 'saying the service is unavailable')
  t.ok(fastify.rateLimitStats().unavailable >= 6, 'and counted')

  await server.start()
  await waitFor(async () => (await fastify.inject('/items')).statusCode === 200, {
    timeout: 5_000,
    message: 'never served again after Redis came back',
  })
  t.ok((await storedUnits()) > 0, 'after the restart the limit is counted in Redis again')
  const codes = (await timed(fastify, 6)).map((r) => r.status)
  t.equal(codes.filter((c) => c === 429).length >= 1, true, 'and enforced through Redis (limit 5)')
  t.notOk(codes.includes(503), 'no 503 once Redis is back')
})
