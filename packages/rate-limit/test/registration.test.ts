import rateLimit, {
  type Decision,
  MemoryStore,
  rateLimit as named,
  type RateLimitOptions,
  type RateLimitStore,
} from '@larder/rate-limit'
import { cleanupPrefix, sharedRedisUrl, uniquePrefix } from '@larder/test-support'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import t from 'tap'

async function register(options: unknown) {
  const fastify = Fastify()
  try {
    await fastify.register(rateLimit, options as RateLimitOptions)
    await fastify.ready()
  } finally {
    await fastify.close()
  }
}

t.test('exports: the default and the named export are the same plugin', async (t) => {
  t.equal(rateLimit, named, 'default === rateLimit')
})

t.test('bad options fail at registration, naming the option', async (t) => {
  const cases: Array<[unknown, RegExp, string]> = [
    [{ limit: 0 }, /limit: expected an integer > 0, got number 0/, 'limit 0'],
    [{ limit: 1.5 }, /limit: expected an integer > 0/, 'a fractional limit'],
    [{ window: 'soon' }, /window: expected milliseconds/, 'an unparseable window'],
    [{ window: 0 }, /window: expected a duration > 0/, 'a zero window'],
    [
      { algorithm: 'fixed' },
      /algorithm: expected 'sliding-window' or 'sliding-log', got "fixed"/,
      'algorithm',
    ],
    [{ key: 'ip' }, /key: expected a function/, 'key not a function'],
    [{ cost: -1 }, /cost: expected an integer >= 0 or a function/, 'negative cost'],
    [{ skip: true }, /skip: expected a function/, 'skip not a function'],
    [{ onExceeded: 1 }, /onExceeded: expected a function/, 'onExceeded'],
    [{ allowList: ['not-an-ip'] }, /allowList: expected IPs or CIDR ranges/, 'a bad allowList entry'],
    [{ allowList: ['10.0.0.0/33'] }, /allowList: expected IPs or CIDR ranges/, 'a bad CIDR'],
    [{ allowList: 'x' }, /allowList: expected an array/, 'allowList not an array'],
    [{ headers: 'all' }, /headers: expected 'draft' or 'legacy' or 'both'/, 'headers'],
    [{ failMode: 'maybe' }, /failMode: expected 'open' or 'closed'/, 'failMode'],
    [{ timeout: 0 }, /timeout: expected a duration > 0/, 'timeout 0'],
    [{ maxKeys: -5 }, /maxKeys: expected an integer > 0/, 'maxKeys'],
    [{ prefix: 5 }, /prefix: expected a string/, 'prefix'],
    [{ store: {} }, /store: expected a RateLimitStore/, 'store'],
    [{ redis: 42 }, /redis: expected an ioredis client/, 'redis'],
    [{ name: 'a"b' }, /name: expected 1-64 printable ASCII/, 'a policy name with a quote'],
    [{ hook: 'onSend' }, /hook: expected 'onRequest' or 'preHandler'/, 'hook'],
    [{ limits: 5 }, /unknown option 'limits'/, 'an unknown option'],
  ]
  for (const [options, message, what] of cases) {
    await t.rejects(
      register(options),
      { code: /^LARDER_(INVALID|UNKNOWN)_OPTION$|LARDER_INVALID_DURATION/, message },
      what,
    )
  }
})

t.test('bad per-route config fails when the route is added, naming the route', async (t) => {
  const cases: Array<[unknown, RegExp, string]> = [
    [{ limit: -1 }, /config\.rateLimit of GET \/x\.limit: expected an integer > 0/, 'a bad limit'],
    [{ limt: 5 }, /config\.rateLimit of GET \/x: unknown option 'limt'/, 'a typo'],
    [[], /at least one limit/, 'an empty list'],
    [[{ name: 'a' }, { name: 'a' }], /distinct names/, 'duplicate names'],
    ['5/min', /expected an object, an array of them or false/, 'a string'],
    [[{ cost: 'x' }], /config\.rateLimit of GET \/x\[0\]\.cost/, 'an item of a list'],
  ]
  for (const [config, message, what] of cases) {
    const fastify = Fastify()
    await fastify.register(rateLimit, {})
    t.throws(
      () => fastify.get('/x', { config: { rateLimit: config as false } }, async () => 'x'),
      { message },
      what,
    )
    await fastify.close()
  }
})

t.test('no Redis: a memory store limits this process', async (t) => {
  const fastify = Fastify()
  await fastify.register(rateLimit, { limit: 2, window: '1m' })
  fastify.get('/', async () => 'ok')
  t.teardown(() => fastify.close())
  const codes = []
  for (let i = 0; i < 3; i++) codes.push((await fastify.inject('/')).statusCode)
  t.same(codes, [200, 200, 429], 'the third is refused')
})

t.test('store: a MemoryStore with a fake clock drives the plugin without sleeping', async (t) => {
  let now = 1_700_000_000_000
  const store = new MemoryStore({ now: () => now })
  t.teardown(() => store.close())
  const fastify = Fastify()
  await fastify.register(rateLimit, { store, limit: 2, window: '10s', algorithm: 'sliding-log' })
  fastify.get('/', async () => 'ok')
  t.teardown(() => fastify.close())
  await fastify.inject('/')
  now += 4_000
  await fastify.inject('/')
  const refused = await fastify.inject('/')
  t.equal(refused.statusCode, 429, 'the third is refused')
  t.equal(refused.headers['retry-after'], '6', 'Retry-After: the first request leaves the window in 6 s')
  t.equal(
    refused.headers.ratelimit,
    '"default";r=0;t=10',
    'RateLimit: whole again when the newest leaves, 10 s',
  )
  now += 6_000
  t.equal((await fastify.inject('/')).statusCode, 200, 'six seconds later one fits again')
})

t.test('a custom store that fails: open falls back to memory with the same limits', async (t) => {
  const broken: RateLimitStore = {
    consume: (): Promise<Decision> => Promise.reject(new Error('store down')),
    close: async () => {},
  }
  const fastify = Fastify()
  await fastify.register(rateLimit, { store: broken, limit: 1 })
  fastify.get('/', async () => 'ok')
  t.teardown(() => fastify.close())
  t.equal((await fastify.inject('/')).statusCode, 200, 'served from the fallback')
  t.equal((await fastify.inject('/')).statusCode, 429, 'and limited by it')
  t.match(fastify.rateLimitStats(), { fallbacks: 2, redisErrors: 2 }, 'counted')
})

t.test('fastify.redis is used when no redis option is given; a URL is connected and closed', async (t) => {
  const client = new Redis(sharedRedisUrl)
  const prefix = uniquePrefix('rate-registration')
  t.teardown(async () => {
    await cleanupPrefix(client, prefix)
    client.disconnect()
  })
  const fastify = Fastify()
  // As @fastify/redis would (its types are not this package's dependency).
  fastify.decorate('redis', client as never)
  await fastify.register(rateLimit, { prefix, limit: 3, key: () => 'decorated' })
  fastify.get('/', async () => 'ok')
  await fastify.inject('/')
  t.equal((await client.keys(`${prefix}*`)).length, 1, 'the count went to fastify.redis')
  await fastify.close()
  t.equal(client.status, 'ready', 'a handed client is not closed')

  const byUrl = Fastify()
  await byUrl.register(rateLimit, {
    redis: sharedRedisUrl,
    prefix: `${prefix}url:`,
    limit: 3,
    key: () => 'url',
  })
  byUrl.get('/', async () => 'ok')
  t.equal((await byUrl.inject('/')).statusCode, 200, 'served through a connection it opened')
  t.equal((await client.keys(`${prefix}url:*`)).length, 1, 'counted in Redis')
  await byUrl.close()

  const byOptions = Fastify()
  const { port } = new URL(sharedRedisUrl)
  await byOptions.register(rateLimit, {
    redis: { port: Number(port || 6379) },
    prefix: `${prefix}opt:`,
    limit: 3,
  })
  byOptions.get('/', async () => 'ok')
  t.equal((await byOptions.inject('/')).statusCode, 200, 'ioredis options work too')
  await byOptions.close()
})
