import rateLimit from '@larder/rate-limit'
import { cleanupPrefix, sharedRedisUrl, uniquePrefix } from '@larder/test-support'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'

// Issue 5, point 3: exactness across instances. Two Fastify instances, each with its own Redis
// connection, share one limit: 300 concurrent requests with one key and limit 100 (sliding log) →
// exactly 100 allowed.

const prefix = uniquePrefix('rate-exact')

async function instance(t: Test, algorithm: 'sliding-log' | 'sliding-window'): Promise<FastifyInstance> {
  const client = new Redis(sharedRedisUrl)
  const fastify = Fastify()
  await fastify.register(rateLimit, {
    redis: client,
    prefix,
    limit: 100,
    window: '1m',
    algorithm,
    key: () => 'one-client',
    // Bounded, but generous: 300 concurrent scripts must not fall back to memory on a busy test host.
    timeout: '5s',
  })
  fastify.get('/login', async () => 'ok')
  t.teardown(async () => {
    await fastify.close()
    client.disconnect()
  })
  return fastify
}

for (const algorithm of ['sliding-log', 'sliding-window'] as const) {
  t.test(
    `${algorithm}: 300 concurrent requests over two instances, limit 100 → exactly 100 served`,
    async (t) => {
      const admin = new Redis(sharedRedisUrl)
      t.teardown(async () => {
        await cleanupPrefix(admin, prefix)
        admin.disconnect()
      })
      const a = await instance(t, algorithm)
      const b = await instance(t, algorithm)
      const responses = await Promise.all(
        Array.from({ length: 300 }, (_, i) => (i % 2 === 0 ? a : b).inject('/login')),
      )
      const served = responses.filter((r) => r.statusCode === 200).length
      const refused = responses.filter((r) => r.statusCode === 429).length
      t.equal(served, 100, 'exactly 100 served')
      t.equal(refused, 200, 'the other 200 refused')
      t.equal(
        a.rateLimitStats().fallbacks + b.rateLimitStats().fallbacks,
        0,
        'every decision came from Redis',
      )
      await cleanupPrefix(admin, prefix)
    },
  )
}
