import rateLimit, { type RateLimitOptions } from '@larder/rate-limit'
import { sharedRedis } from '@larder/test-support'
import Fastify, { type FastifyInstance } from 'fastify'
import t from 'tap'
import { clientKey } from '../src/key.js'

// What is counted and against whom: a refused request counts against no limit, a huge cost is refused
// without harming anyone else, registrations in sibling contexts count apart, a route declared before
// the plugin still gets its own limits, and addresses in any notation key the same client.

const shared = sharedRedis(t)
let apps = 0

async function codes(fastify: FastifyInstance, n: number, url: string, headers = {}): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) out.push((await fastify.inject({ url, headers })).statusCode)
  return out
}

const STORES: Array<[name: string, options: () => RateLimitOptions]> = [
  ['memory', () => ({})],
  ['Redis', () => ({ redis: shared.redis, prefix: shared.prefix(`rate-count-${++apps}`), timeout: 2_000 })],
]

for (const [store, options] of STORES) {
  t.test(`${store}: a request refused by one limit is counted in none of a route's limits`, async (t) => {
    const fastify = Fastify()
    t.teardown(() => fastify.close())
    await fastify.register(rateLimit, { limit: 1000, window: '1m', ...options() })
    for (const algorithm of ['sliding-window', 'sliding-log'] as const) {
      fastify.get(`/${algorithm}`, {
        config: {
          rateLimit: [
            { name: 'burst', limit: 2, window: '10s', algorithm },
            { name: 'hour', limit: 10, window: '1h', algorithm },
          ],
        },
        handler: () => 'ok',
      })
    }
    for (const algorithm of ['sliding-window', 'sliding-log']) {
      t.same(
        await codes(fastify, 12, `/${algorithm}`),
        [200, 200, ...Array(10).fill(429)],
        `${algorithm}: two served, ten refused by the burst limit`,
      )
      const last = await fastify.inject(`/${algorithm}`)
      t.match(
        last.headers.ratelimit,
        /"hour";r=8;/,
        `${algorithm}: the hourly limit counted only the two served`,
      )
    }
  })

  t.test(`${store}: a cost of thousands on a sliding log is decided without harming anyone`, async (t) => {
    const fastify = Fastify()
    t.teardown(() => fastify.close())
    await fastify.register(rateLimit, { limit: 1000, window: '1m', failMode: 'closed', ...options() })
    fastify.get('/units', {
      config: {
        rateLimit: {
          limit: 100_000,
          window: '1m',
          algorithm: 'sliding-log',
          cost: (request) => Number(request.headers['x-units']),
        },
      },
      handler: () => 'ok',
    })
    fastify.get('/other', () => 'ok')
    const big = await fastify.inject({ url: '/units', headers: { 'x-units': '5000' } })
    t.equal(big.statusCode, 200, 'a request costing 5,000 units fits in 100,000')
    t.match(big.headers.ratelimit, /r=95000;/, 'and counts 5,000')
    for (let i = 0; i < 4; i++) await fastify.inject({ url: '/units', headers: { 'x-units': '5000' } })
    t.equal(
      (await fastify.inject('/other')).statusCode,
      200,
      'another route is still served (no store failure)',
    )
    t.equal(fastify.rateLimitStats().redisErrors, 0, 'no Redis error')
  })
}

t.test('registrations in sibling contexts on one Redis count apart', async (t) => {
  const fastify = Fastify()
  t.teardown(() => fastify.close())
  const common = { redis: shared.redis, prefix: shared.prefix('rate-siblings'), timeout: 2_000 }
  await fastify.register(
    async (api) => {
      await api.register(rateLimit, { ...common, limit: 100, window: '1m' })
      api.get('/items', () => 'ok')
    },
    { prefix: '/api' },
  )
  await fastify.register(
    async (auth) => {
      await auth.register(rateLimit, { ...common, limit: 5, window: '1m' })
      auth.get('/login', () => 'ok')
    },
    { prefix: '/auth' },
  )
  await codes(fastify, 5, '/api/items')
  t.equal((await fastify.inject('/auth/login')).statusCode, 200, 'five /api calls did not use up /auth')
  t.match((await fastify.inject('/auth/login')).headers.ratelimit, /r=3;/, '/auth counts its own requests')
})

t.test('a route declared before the plugin still gets its own config.rateLimit', async (t) => {
  const fastify = Fastify()
  t.teardown(() => fastify.close())
  fastify.get('/early', { config: { rateLimit: { limit: 2, window: '1m' } } }, () => 'ok')
  await fastify.register(rateLimit, { limit: 100, window: '1m' })
  t.same(await codes(fastify, 4, '/early'), [200, 200, 429, 429], 'limited at 2, not left unlimited')
})

t.test('one client in any notation is one key', async (t) => {
  const cases: Array<[string, string]> = [
    ['::ffff:102:304', '1.2.3.4'],
    ['0:0:0:0:0:ffff:1.2.3.4', '1.2.3.4'],
    ['0:0:0:0:0:ffff:102:304', '1.2.3.4'],
    ['1.2.3.4:5555', '1.2.3.4'],
    ['[2001:db8::1]:5555', '2001:db8:0:0::/64'],
  ]
  for (const [address, key] of cases) t.equal(clientKey(address), key, `${address} → ${key}`)
  t.not(clientKey('::1'), clientKey('::ffff:102:304'), 'loopback is not an IPv4-mapped client')
  t.not(clientKey('1.2.3.4:5555'), clientKey('1.9.9.9:5555'), 'two clients behind ports stay two')
})
