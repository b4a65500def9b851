import responseCache from '@larder/response-cache'
import { cleanupPrefix, sharedRedisUrl, uniquePrefix, waitFor } from '@larder/test-support'
import Fastify, { type FastifyInstance, type FastifyRequest, type LightMyRequestResponse } from 'fastify'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { storedEntries } from './helpers/entries.js'

// Cache keys (issue 3, point 6): what shares an entry and what does not, counted in Redis, and tags
// built from the request that invalidate the right entries.

const redis = new Redis(sharedRedisUrl)
const prefixes: string[] = []
t.teardown(async () => {
  for (const prefix of prefixes) await cleanupPrefix(redis, prefix)
  await redis.quit()
})

interface App {
  fastify: FastifyInstance
  prefix: string
  /** Warnings Fastify's logger received. */
  warnings: string[]
}

/** A Fastify instance caching in L1 and in Redis under a prefix of its own. */
async function app(t: Test, name: string): Promise<App> {
  const prefix = uniquePrefix(name)
  prefixes.push(prefix)
  const warnings: string[] = []
  const fastify = Fastify({
    logger: {
      level: 'warn',
      stream: {
        write(line: string) {
          warnings.push(line)
        },
      },
    },
  })
  await fastify.register(responseCache, { redis: sharedRedisUrl, prefix })
  t.teardown(() => fastify.close())
  return { fastify, prefix, warnings }
}

/** Entry keys stored in Redis under `prefix`. */
function entryKeys(prefix: string): Promise<string[]> {
  return storedEntries(redis, `${prefix}res:*`)
}

/** Waits until Redis holds exactly `count` entries (the write follows the response), then returns them. */
async function expectEntries(t: Test, prefix: string, count: number, what: string): Promise<void> {
  let keys: string[] = []
  await waitFor(
    async () => {
      keys = await entryKeys(prefix)
      return keys.length >= count
    },
    { message: `${what}: fewer than ${count} entries reached Redis` },
  ).catch(() => {})
  t.equal(
    keys.length,
    count,
    `${what}: ${count} entr${count === 1 ? 'y' : 'ies'} in Redis (${keys.join(' ')})`,
  )
}

function xCache(response: LightMyRequestResponse): string | undefined {
  const value = response.headers['x-cache']
  return typeof value === 'string' ? value : undefined
}

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name]
  return typeof value === 'string' ? value : undefined
}

t.test('the key is the route pattern, the params and the sorted query', async (t) => {
  const { fastify, prefix } = await app(t, 'keys-query')
  let calls = 0
  const handler = async (request: FastifyRequest) => {
    calls++
    return { params: request.params, query: request.query, calls }
  }
  fastify.get('/search/:kind', { config: { cache: { ttl: '10m' } } }, handler)
  fastify.get('/find/:kind', { config: { cache: { ttl: '10m' } } }, handler)

  const first = await fastify.inject('/search/tea?b=1&a=2')
  t.equal(xCache(first), 'MISS', '?b=1&a=2: MISS')
  const reordered = await fastify.inject('/search/tea?a=2&b=1')
  t.equal(xCache(reordered), 'HIT', '?a=2&b=1 shares the entry of ?b=1&a=2')
  t.equal(reordered.body, first.body, 'same body')
  t.equal(calls, 1, 'the handler ran once for both orders')

  t.equal(xCache(await fastify.inject('/search/tea?a=2&b=2')), 'MISS', 'another value: another entry')
  t.equal(xCache(await fastify.inject('/search/tea?a=2')), 'MISS', 'fewer parameters: another entry')
  t.equal(xCache(await fastify.inject('/search/coffee?b=1&a=2')), 'MISS', 'another param: another entry')
  const otherRoute = await fastify.inject('/find/tea?b=1&a=2')
  t.equal(xCache(otherRoute), 'MISS', 'another route pattern with the same params and query: another entry')
  t.equal(calls, 5, 'each distinct request ran the handler once')
  await expectEntries(t, prefix, 5, 'five distinct requests')
})

t.test('one path parameter: each value its own entry, with or without a query string', async (t) => {
  const { fastify } = await app(t, 'keys-one-param')
  let calls = 0
  fastify.get('/items/:id', { config: { cache: { ttl: '10m' } } }, async (request) => ({
    id: (request.params as { id: string }).id,
    query: request.query,
    call: ++calls,
  }))
  const get = async (url: string) => {
    const response = await fastify.inject(url)
    return { verdict: xCache(response), body: response.json() as { id: string; call: number } }
  }

  t.same(await get('/items/1'), { verdict: 'MISS', body: { id: '1', query: {}, call: 1 } }, '/items/1: MISS')
  t.same(await get('/items/2'), { verdict: 'MISS', body: { id: '2', query: {}, call: 2 } }, '/items/2: MISS')
  t.same(
    await get('/items/1'),
    { verdict: 'HIT', body: { id: '1', query: {}, call: 1 } },
    '/items/1: its own HIT',
  )
  t.same(
    await get('/items/2'),
    { verdict: 'HIT', body: { id: '2', query: {}, call: 2 } },
    '/items/2: its own HIT',
  )
  const withQuery = await get('/items/1?x=1')
  t.same(withQuery, { verdict: 'MISS', body: { id: '1', query: { x: '1' }, call: 3 } }, '?x=1: another entry')
  t.equal((await get('/items/1?x=1')).verdict, 'HIT', '?x=1 again: a HIT')
  t.same(
    await get('/items/1'),
    { verdict: 'HIT', body: { id: '1', query: {}, call: 1 } },
    '/items/1 unchanged',
  )
  t.equal((await get('/items/a%20b')).body.id, 'a b', 'an encoded value')
  t.same((await get('/items/a%20b')).body, { id: 'a b', query: {}, call: 4 }, 'is a HIT of its own')
})

t.test('a query allowlist keeps cache-busting parameters out of the key', async (t) => {
  const { fastify, prefix } = await app(t, 'keys-allowlist')
  let calls = 0
  fastify.get('/products', { config: { cache: { ttl: '10m', query: ['page'] } } }, async (request) => {
    calls++
    return { page: (request.query as { page?: string }).page ?? '1', calls }
  })

  const page1 = await fastify.inject('/products?page=1')
  t.equal(xCache(page1), 'MISS', '?page=1: MISS')
  for (let i = 0; i < 20; i++) {
    const busted = await fastify.inject(`/products?page=1&x=${Math.random()}&_=${i}`)
    t.equal(xCache(busted), 'HIT', `?page=1 with random parameters #${i}: HIT`)
    t.equal(busted.body, page1.body, `random parameters #${i}: the ?page=1 body`)
  }
  t.equal(calls, 1, 'cache-busting parameters never reached the handler')
  await expectEntries(t, prefix, 1, 'after 20 cache-busting requests')

  const page2 = await fastify.inject('/products?x=junk&page=2')
  t.equal(xCache(page2), 'MISS', '?page=2: its own entry')
  t.same(page2.json(), { page: '2', calls: 2 }, '?page=2 body')
  await expectEntries(t, prefix, 2, 'after ?page=2')
})

t.test('vary: one entry per value of the named request header', async (t) => {
  const { fastify, prefix } = await app(t, 'keys-vary')
  let calls = 0
  fastify.get(
    '/greeting',
    { config: { cache: { ttl: '10m', vary: ['accept-language'] } } },
    async (request) => {
      calls++
      return { greeting: header(request, 'accept-language') === 'fr' ? 'bonjour' : 'hello' }
    },
  )
  const get = (language: string) =>
    fastify.inject({ url: '/greeting', headers: { 'accept-language': language } })

  const en = await get('en')
  t.equal(xCache(en), 'MISS', 'en: MISS')
  t.equal(xCache(await get('en')), 'HIT', 'en again: HIT')
  const fr = await get('fr')
  t.equal(xCache(fr), 'MISS', 'fr: its own entry')
  t.same(fr.json(), { greeting: 'bonjour' }, 'fr: the French body')
  const enAgain = await get('en')
  t.equal(xCache(enAgain), 'HIT', 'en after fr: HIT')
  t.same(enAgain.json(), { greeting: 'hello' }, 'en after fr: still the English body')
  const frAgain = await get('fr')
  t.same(frAgain.json(), { greeting: 'bonjour' }, 'fr again: the French body')
  t.equal(calls, 2, 'one handler call per language')
  await expectEntries(t, prefix, 2, 'two languages')
})

t.test('a custom key function replaces params and query', async (t) => {
  const { fastify, prefix } = await app(t, 'keys-custom')
  let calls = 0
  fastify.get(
    '/sku/:code',
    {
      config: {
        cache: { ttl: '10m', key: (request) => (request.params as { code: string }).code.toLowerCase() },
      },
    },
    async (request) => {
      calls++
      return { code: (request.params as { code: string }).code.toLowerCase() }
    },
  )
  t.equal(xCache(await fastify.inject('/sku/ABC?ref=mail')), 'MISS', '/sku/ABC: MISS')
  const lower = await fastify.inject('/sku/abc?ref=other')
  t.equal(xCache(lower), 'HIT', '/sku/abc shares the entry: the key function says they are the same')
  t.same(lower.json(), { code: 'abc' }, 'the shared body')
  t.equal(xCache(await fastify.inject('/sku/xyz')), 'MISS', '/sku/xyz: another key')
  t.equal(calls, 2, 'one handler call per key')
  await expectEntries(t, prefix, 2, 'two custom keys')
})

t.test('private: users never see each other’s bodies; no user is a BYPASS', async (t) => {
  const { fastify, prefix } = await app(t, 'keys-private')
  const calls: Record<string, number> = {}
  fastify.get(
    '/me',
    { config: { cache: { ttl: '10m', private: (request) => header(request, 'x-user') } } },
    async (request) => {
      const user = header(request, 'x-user') ?? 'anonymous'
      calls[user] = (calls[user] ?? 0) + 1
      return { user, secret: `${user}'s secret` }
    },
  )
  const as = (user: string) =>
    fastify.inject({ url: '/me', headers: { 'x-user': user, cookie: `sid=${user}-session` } })

  const alice = await as('alice')
  t.equal(xCache(alice), 'MISS', 'alice: MISS')
  const bob = await as('bob')
  t.equal(xCache(bob), 'MISS', "bob: MISS, not alice's entry")
  t.same(bob.json(), { user: 'bob', secret: "bob's secret" }, "bob gets bob's body")
  for (let round = 0; round < 3; round++) {
    const a = await as('alice')
    const b = await as('bob')
    t.equal(xCache(a), 'HIT', `round ${round}: alice HIT`)
    t.equal(xCache(b), 'HIT', `round ${round}: bob HIT`)
    t.same(a.json(), { user: 'alice', secret: "alice's secret" }, `round ${round}: alice gets only her body`)
    t.same(b.json(), { user: 'bob', secret: "bob's secret" }, `round ${round}: bob gets only his body`)
    t.equal(a.headers['cache-control'], 'private, max-age=600', `round ${round}: private Cache-Control`)
  }
  t.same(calls, { alice: 1, bob: 1 }, 'one handler call per user')

  for (const attempt of [1, 2]) {
    const nobody = await fastify.inject('/me')
    t.equal(xCache(nobody), 'BYPASS', `no user #${attempt}: BYPASS`)
    t.same(
      nobody.json(),
      { user: 'anonymous', secret: "anonymous's secret" },
      `no user #${attempt}: the handler's body`,
    )
  }
  t.equal(calls.anonymous, 2, 'requests without a user are never cached')
  await expectEntries(t, prefix, 2, 'two users')
})

t.test('tags from {params.x} and {query.x} templates invalidate the right entries', async (t) => {
  const { fastify, warnings } = await app(t, 'keys-tags')
  const prices: Record<string, number> = { '1': 10, '2': 20 }
  let calls = 0
  fastify.get(
    '/catalog/:id',
    { config: { cache: { ttl: '10m', tags: ['item:{params.id}', 'category:{query.category}'] } } },
    async (request) => {
      calls++
      const { id } = request.params as { id: string }
      return { id, price: prices[id] }
    },
  )
  const get = (url: string) => fastify.inject(url)

  t.equal(xCache(await get('/catalog/1?category=tea')), 'MISS', 'item 1: MISS')
  t.equal(xCache(await get('/catalog/2?category=coffee')), 'MISS', 'item 2: MISS')
  t.equal(xCache(await get('/catalog/1?category=tea')), 'HIT', 'item 1: HIT')

  prices['1'] = 11
  await fastify.cache.invalidateTags(['item:1'])
  const afterItem = await get('/catalog/1?category=tea')
  t.equal(xCache(afterItem), 'MISS', 'item:1 invalidated: MISS')
  t.same(afterItem.json(), { id: '1', price: 11 }, 'item:1 invalidated: the new data')
  const untouched = await get('/catalog/2?category=coffee')
  t.equal(xCache(untouched), 'HIT', 'item 2 is untouched by item:1')

  prices['1'] = 12
  prices['2'] = 22
  await fastify.cache.invalidateTags(['category:tea'])
  const afterCategory = await get('/catalog/1?category=tea')
  t.equal(xCache(afterCategory), 'MISS', 'category:tea invalidated: MISS')
  t.same(afterCategory.json(), { id: '1', price: 12 }, 'category:tea invalidated: the new data')
  const coffee = await get('/catalog/2?category=coffee')
  t.equal(xCache(coffee), 'HIT', 'category:coffee untouched')
  t.same(coffee.json(), { id: '2', price: 20 }, 'category:coffee: the old cached data')
  t.equal(calls, 4, 'the handler ran for the two misses and the two invalidations')

  // {query.category} cannot resolve without ?category=: served by the handler, with a warning.
  for (const attempt of [1, 2]) {
    const unresolved = await get('/catalog/2')
    t.equal(unresolved.statusCode, 200, `no ?category #${attempt}: 200, not a 500`)
    t.same(unresolved.json(), { id: '2', price: 22 }, `no ?category #${attempt}: the handler's body`)
    t.equal(xCache(unresolved), 'BYPASS', `no ?category #${attempt}: BYPASS`)
  }
  t.equal(calls, 6, 'an unresolvable tag is never cached')
  const warned = warnings.filter((line) => line.includes('query.category'))
  t.ok(warned.length >= 1, 'a warning names the template that could not resolve')
  t.match(warned[0] ?? '', /"level":40/, 'logged at warn level')
})
