import rateLimit, { type ExceededInfo, type RateLimitOptions } from '@larder/rate-limit'
import { sharedRedis } from '@larder/test-support'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import t, { type Test } from 'tap'

// Issue 5, point 4: per-route override, several limits on one route, `false` exemption, `skip`,
// `allowList`, `cost` — on real Redis.

const shared = sharedRedis(t)
const client = shared.redis
const prefix = shared.prefix('rate-routes')

let apps = 0
async function app(t: Test, options: RateLimitOptions, routes: (fastify: FastifyInstance) => void) {
  const fastify = Fastify()
  await fastify.register(rateLimit, {
    redis: client,
    prefix: `${prefix}${++apps}:`,
    timeout: 2_000,
    ...options,
  })
  routes(fastify)
  t.teardown(() => fastify.close())
  return fastify
}

async function codes(fastify: FastifyInstance, n: number, url: string, headers = {}): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) out.push((await fastify.inject({ url, headers })).statusCode)
  return out
}

t.test('a per-route override replaces the global limit and counts on its own', async (t) => {
  const fastify = await app(t, { limit: 3, window: '1m' }, (f) => {
    f.get('/login', { config: { rateLimit: { limit: 2, algorithm: 'sliding-log' } } }, async () => 'in')
    f.get('/items', async () => 'items')
  })
  t.same(await codes(fastify, 3, '/login'), [200, 200, 429], 'the route allows its own 2')
  const login = await fastify.inject('/login')
  t.equal(
    login.headers['ratelimit-policy'],
    '"default";q=2;w=60',
    'its policy: 2 per 60 s (window inherited)',
  )
  t.same(await codes(fastify, 4, '/items'), [200, 200, 200, 429], 'the global 3 are untouched by /login')
})

t.test('several limits on one route: each counts, the tightest decides', async (t) => {
  const fastify = await app(t, { limit: 100 }, (f) => {
    f.get(
      '/search',
      {
        config: {
          rateLimit: [
            { limit: 2, window: '1s', name: 'burst' },
            { limit: 3, window: '1h', name: 'hourly', algorithm: 'sliding-log' },
          ],
        },
      },
      async () => 'found',
    )
  })
  const first = await fastify.inject('/search')
  t.equal(
    first.headers['ratelimit-policy'],
    '"burst";q=2;w=1, "hourly";q=3;w=3600',
    'RateLimit-Policy lists both policies',
  )
  t.match(first.headers.ratelimit, /^"burst";r=1;t=\d+, "hourly";r=2;t=3600$/, 'RateLimit lists both')
  const second = await fastify.inject('/search')
  t.equal(second.statusCode, 200, 'the second fits both')
  const third = await fastify.inject('/search')
  t.equal(third.statusCode, 429, 'the third is over the 2/s burst limit')
  t.match(third.json().detail, /"burst"/, 'the problem names the limit that refused')
  t.same(await codes(fastify, 2, '/search'), [429, 429], 'still refused')
})

t.test('config.rateLimit false exempts a route from the global limit', async (t) => {
  const fastify = await app(t, { limit: 1 }, (f) => {
    f.get('/health', { config: { rateLimit: false } }, async () => 'ok')
    f.get('/items', async () => 'items')
  })
  t.same(await codes(fastify, 5, '/health'), [200, 200, 200, 200, 200], 'never limited')
  const health = await fastify.inject('/health')
  t.equal(health.headers.ratelimit, undefined, 'and says no RateLimit header')
  t.same(await codes(fastify, 2, '/items'), [200, 429], 'other routes are limited')
})

t.test('skip: skipped requests are neither limited nor counted', async (t) => {
  const fastify = await app(
    t,
    { limit: 1, skip: async (request: FastifyRequest) => request.headers['x-internal'] === 'yes' },
    (f) => f.get('/items', async () => 'items'),
  )
  t.same(await codes(fastify, 3, '/items', { 'x-internal': 'yes' }), [200, 200, 200], 'skipped: all served')
  t.same(await codes(fastify, 2, '/items'), [200, 429], 'the others were not counted against the limit')
})

t.test('allowList: IPs and CIDR ranges, or a function', async (t) => {
  const fastify = await app(t, { limit: 1, allowList: ['10.0.0.0/8', '2001:db8::1', '192.168.1.7'] }, (f) =>
    f.get('/items', async () => 'items'),
  )
  for (const ip of ['10.1.2.3', '2001:db8::1', '192.168.1.7']) {
    const served = []
    for (let i = 0; i < 3; i++)
      served.push((await fastify.inject({ url: '/items', remoteAddress: ip })).statusCode)
    t.same(served, [200, 200, 200], `${ip} is never limited`)
  }
  const other = []
  for (let i = 0; i < 2; i++)
    other.push((await fastify.inject({ url: '/items', remoteAddress: '11.0.0.1' })).statusCode)
  t.same(other, [200, 429], 'an address outside the list is limited')

  const byFunction = await app(
    t,
    { limit: 1, allowList: (request) => request.headers['x-key'] === 'partner' },
    (f) => f.get('/items', async () => 'items'),
  )
  t.same(await codes(byFunction, 3, '/items', { 'x-key': 'partner' }), [200, 200, 200], 'the function allows')
  t.same(await codes(byFunction, 2, '/items'), [200, 429], 'others are limited')
})

t.test('cost: a request can count for more than one', async (t) => {
  const fastify = await app(t, { limit: 10, algorithm: 'sliding-log' }, (f) => {
    f.post(
      '/bulk',
      { config: { rateLimit: { cost: (request) => Number(request.headers['x-items'] ?? 1) } } },
      async () => 'ok',
    )
    f.get('/export', { config: { rateLimit: { cost: 4 } } }, async () => 'ok')
  })
  const seven = await fastify.inject({ method: 'POST', url: '/bulk', headers: { 'x-items': '7' } })
  t.equal(seven.statusCode, 200, 'a bulk request of 7 fits')
  t.match(seven.headers.ratelimit, /r=3;/, '3 remain after it')
  const four = await fastify.inject({ method: 'POST', url: '/bulk', headers: { 'x-items': '4' } })
  t.equal(four.statusCode, 429, 'a bulk request of 4 does not')
  const three = await fastify.inject({ method: 'POST', url: '/bulk', headers: { 'x-items': '3' } })
  t.equal(three.statusCode, 200, 'one of 3 does: the refused 4 was not counted')
  t.same(await codes(fastify, 3, '/export'), [200, 200, 429], 'a fixed cost of 4: two fit in 10')
  const bad = await fastify.inject({ method: 'POST', url: '/bulk', headers: { 'x-items': '-1' } })
  t.equal(bad.statusCode, 500, 'a cost function returning a negative number is a server error, not a bypass')

  const noKey = await app(t, { limit: 1, key: () => undefined as unknown as string }, (f) =>
    f.get('/items', async () => 'items'),
  )
  t.equal(
    (await noKey.inject('/items')).statusCode,
    500,
    'a key function returning no string is a server error',
  )
})

t.test("onExceeded hears about every refusal; HEAD shares the GET route's count", async (t) => {
  const heard: ExceededInfo[] = []
  const fastify = await app(
    t,
    { limit: 2, key: () => 'k', onExceeded: (_request, info) => heard.push(info) },
    (f) => f.get('/items', { config: { rateLimit: { limit: 2, name: 'items' } } }, async () => 'items'),
  )
  t.equal((await fastify.inject({ method: 'HEAD', url: '/items' })).statusCode, 200, 'a HEAD is served')
  t.same(await codes(fastify, 3, '/items'), [200, 429, 429], 'and counted with the GETs')
  t.equal(heard.length, 2, 'onExceeded was called for both refusals')
  t.match(
    heard[0],
    { name: 'items', key: 'k', limit: 2, window: 60_000, retryAfter: Number },
    'with the details',
  )
  t.same(
    fastify.rateLimitStats(),
    { allowed: 2, refused: 2, fallbacks: 0, unavailable: 0, redisErrors: 0 },
    'stats',
  )
})

t.test("hook 'preHandler': a key can read the body (logins per IP and e-mail)", async (t) => {
  const loginKey = (request: FastifyRequest) => `${request.ip}:${(request.body as { email?: string }).email}`
  const fastify = await app(t, { limit: 100 }, (f) => {
    f.post(
      '/login',
      { config: { rateLimit: { limit: 2, algorithm: 'sliding-log', key: loginKey, hook: 'preHandler' } } },
      async () => 'in',
    )
  })
  const login = (email: string) =>
    fastify.inject({ method: 'POST', url: '/login', payload: { email } }).then((r) => r.statusCode)
  t.same(
    [await login('a@x.io'), await login('a@x.io'), await login('a@x.io')],
    [200, 200, 429],
    'a@x.io: 2 tries',
  )
  t.equal(await login('b@x.io'), 200, 'b@x.io from the same IP has its own 2')

  const global = await app(t, { limit: 1, hook: 'preHandler', key: () => 'one' }, (f) =>
    f.get('/items', async () => 'items'),
  )
  t.same(await codes(global, 2, '/items'), [200, 429], 'the global limit can run in preHandler too')
  t.equal((await global.inject('/missing')).statusCode, 429, 'and still limits 404s')
})
