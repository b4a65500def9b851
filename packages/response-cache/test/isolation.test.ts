import responseCache from '@larder/response-cache'
import { sharedRedis, sharedRedisUrl, waitFor } from '@larder/test-support'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import t, { type Test } from 'tap'
import { storedEntries } from './helpers/entries.js'

// What one request's response must never carry into another's: another user's or tenant's body, the
// first requester's per-request headers, a variant the key does not separate, or credentials in Redis.

const { redis, prefix } = sharedRedis(t)

async function app(t: Test, name: string, options: { querystringParser?: (s: string) => unknown } = {}) {
  const serverOptions: FastifyServerOptions = {}
  if (options.querystringParser) serverOptions.querystringParser = options.querystringParser as never
  const fastify = Fastify(serverOptions)
  const p = prefix(name)
  await fastify.register(responseCache, { redis: sharedRedisUrl, prefix: p })
  t.teardown(() => fastify.close())
  return { fastify, prefix: p }
}

function get(fastify: FastifyInstance, url: string, headers: Record<string, string> = {}) {
  return fastify.inject({ method: 'GET', url, headers })
}

t.test(
  'a route that varies on credentials is never cacheable by shared caches, and says what it varies on',
  async (t) => {
    const { fastify } = await app(t, 'iso-credentials')
    fastify.get(
      '/me',
      { config: { cache: { ttl: '1m', vary: ['authorization'], cdn: true } } },
      (request) => ({
        user: request.headers.authorization,
      }),
    )
    fastify.get(
      '/lang',
      { config: { cache: { ttl: '1m', vary: ['accept-language'], cdn: true } } },
      () => 'hi',
    )
    const me = await get(fastify, '/me', { authorization: 'Bearer a' })
    t.match(me.headers['cache-control'], /^private, max-age=60/, 'private, for the user agent only')
    t.notMatch(me.headers['cache-control'], /s-maxage|public/, 'no s-maxage, not public')
    t.equal(me.headers.vary, 'authorization', 'Vary names the header the key separates')
    const hit = await get(fastify, '/me', { authorization: 'Bearer a' })
    t.equal(hit.headers['x-cache'], 'HIT')
    t.equal(hit.headers.vary, 'authorization', 'and the hit says so too')
    const lang = await get(fastify, '/lang', { 'accept-language': 'fr' })
    t.match(lang.headers['cache-control'], /^public, .*s-maxage=60/, 'a non-credential vary stays shareable')
    t.equal(lang.headers.vary, 'accept-language', 'with its Vary')
  },
)

t.test('credentials the key varies on are stored in Redis as digests, not as they were sent', async (t) => {
  const { fastify, prefix: p } = await app(t, 'iso-digest')
  fastify.get('/me', { config: { cache: { ttl: '1m', vary: ['authorization'] } } }, () => 'mine')
  await get(fastify, '/me', { authorization: 'Bearer s3cr3t-token' })
  // The entry is written just after the response.
  await waitFor(async () => (await storedEntries(redis, `${p}res:*`)).length > 0, { message: 'never stored' })
  const keys = await storedEntries(redis, `${p}res:*`)
  t.ok(keys.length > 0, 'the response was stored')
  t.ok(
    keys.every((key) => !key.includes('s3cr3t')),
    'no key name contains the token',
  )
})

t.test('routes constrained to different hosts keep separate entries', async (t) => {
  const { fastify } = await app(t, 'iso-host')
  fastify.get('/', { constraints: { host: 'a.example' }, config: { cache: { ttl: '1m' } } }, () => 'tenant A')
  fastify.get('/', { constraints: { host: 'b.example' }, config: { cache: { ttl: '1m' } } }, () => 'tenant B')
  t.equal((await get(fastify, '/', { host: 'a.example' })).body, 'tenant A')
  const b = await get(fastify, '/', { host: 'b.example' })
  t.equal(b.body, 'tenant B', "b.example gets its own body, not A's cached one")
  t.equal(b.headers['x-cache'], 'MISS')
  t.equal(
    (await get(fastify, '/', { host: 'a.example' })).headers['x-cache'],
    'HIT',
    'A is still cached for A',
  )
})

t.test('query values parsed into objects key apart', async (t) => {
  // A parser that builds nested objects, as qs does: ?filter[owner]=alice → { filter: { owner: 'alice' } }.
  const nested = (text: string) => {
    const out: Record<string, Record<string, string>> = {}
    for (const pair of text.split('&')) {
      const match = /^(\w+)\[(\w+)\]=(.*)$/.exec(pair)
      if (match)
        out[match[1] as string] = { ...out[match[1] as string], [match[2] as string]: match[3] as string }
    }
    return out
  }
  const { fastify } = await app(t, 'iso-query', { querystringParser: nested })
  fastify.get('/orders', { config: { cache: { ttl: '1m' } } }, (request) => ({ query: request.query }))
  const alice = await get(fastify, '/orders?filter[owner]=alice')
  const bob = await get(fastify, '/orders?filter[owner]=bob')
  t.same(JSON.parse(bob.body), { query: { filter: { owner: 'bob' } } }, "bob gets his orders, not alice's")
  t.equal(bob.headers['x-cache'], 'MISS')
  t.equal((await get(fastify, '/orders?filter[owner]=alice')).body, alice.body, 'alice still hits her own')
})

t.test("a hit keeps the headers this request's hooks set, not the first requester's", async (t) => {
  const { fastify } = await app(t, 'iso-headers')
  fastify.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', String(request.headers['x-request-id']))
    reply.header('access-control-allow-origin', String(request.headers.origin))
  })
  fastify.get('/shared', { config: { cache: { ttl: '1m' } } }, () => 'same for all')
  await get(fastify, '/shared', { 'x-request-id': 'req-1', origin: 'https://a.example' })
  const hit = await get(fastify, '/shared', { 'x-request-id': 'req-2', origin: 'https://b.example' })
  t.equal(hit.headers['x-cache'], 'HIT')
  t.equal(hit.headers['x-request-id'], 'req-2', 'its own request id')
  t.equal(hit.headers['access-control-allow-origin'], 'https://b.example', 'its own CORS origin')
})

t.test('a response that varies on a header the key does not separate is not stored', async (t) => {
  const { fastify } = await app(t, 'iso-vary')
  let calls = 0
  fastify.get('/greeting', { config: { cache: { ttl: '1m' } } }, (request, reply) => {
    calls++
    reply.header('vary', 'Accept-Language')
    return request.headers['accept-language'] === 'fr' ? 'bonjour' : 'hello'
  })
  const fr = await get(fastify, '/greeting', { 'accept-language': 'fr' })
  t.equal(fr.headers['x-cache'], 'BYPASS')
  t.match(fr.headers['cache-status'], /detail=vary/, 'Cache-Status says why')
  t.equal((await get(fastify, '/greeting', { 'accept-language': 'en' })).body, 'hello', 'en gets English')
  t.equal(calls, 2, 'the handler answered both')
})

t.test('an unbuildable CDN tag on a memory hit is a bypass, not a 500', async (t) => {
  const { fastify } = await app(t, 'iso-tags')
  fastify.get(
    '/t',
    { config: { cache: { ttl: '1m', cdn: true, query: ['page'], tags: ['list:{query.cat}'] } } },
    () => 'list',
  )
  t.equal((await get(fastify, '/t?page=1&cat=shoes')).statusCode, 200)
  await waitFor(async () => (await get(fastify, '/t?page=1&cat=shoes')).headers['x-cache'] === 'HIT', {
    message: 'the entry never became a hit',
  })
  const without = await get(fastify, '/t?page=1')
  t.equal(without.statusCode, 200, 'answered by the handler')
  t.equal(without.headers['x-cache'], 'BYPASS')
})

t.test('If-None-Match never turns a cached redirect or 404 into a 304', async (t) => {
  const { fastify } = await app(t, 'iso-304')
  fastify.get('/old', { config: { cache: { ttl: '1m' } } }, (_request, reply) => reply.redirect('/new', 301))
  fastify.get('/gone', { config: { cache: { ttl: '1m' } } }, (_request, reply) => reply.code(404).send('no'))
  for (const url of ['/old', '/gone']) {
    const first = await get(fastify, url)
    const again = await get(fastify, url, { 'if-none-match': String(first.headers.etag) })
    t.equal(again.headers['x-cache'], 'HIT', `${url}: served from the cache`)
    t.equal(again.statusCode, first.statusCode, `${url}: with its own status, not 304`)
    t.equal((await get(fastify, url, { 'if-none-match': '*' })).statusCode, first.statusCode, `${url}: * too`)
  }
})

t.test("a response sent before the cache's hook ran still carries Cache-Status", async (t) => {
  const { fastify } = await app(t, 'iso-early')
  let calls = 0
  fastify.get(
    '/guarded',
    {
      onRequest: async (request, reply) => {
        if (request.headers['x-token'] !== 'ok') await reply.code(401).send('no')
      },
      config: { cache: { ttl: '1m' } },
    },
    () => {
      calls++
      return 'secret'
    },
  )
  const refused = await get(fastify, '/guarded')
  t.equal(refused.statusCode, 401)
  t.equal(refused.headers['x-cache'], 'BYPASS', 'X-Cache says it was not cached')
  t.match(refused.headers['cache-status'], /^larder; fwd=bypass; detail=not-reached$/, 'and Cache-Status why')
  t.equal((await get(fastify, '/guarded', { 'x-token': 'ok' })).headers['x-cache'], 'MISS', 'allowed: a miss')
  t.equal(calls, 1)
})
