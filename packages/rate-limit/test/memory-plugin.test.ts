import rateLimit, { MemoryStore, type RateLimitOptions } from '@larder/rate-limit'
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'

// The plugin on the memory store, which decides without a promise: the paths Redis tests do not take.

async function app(t: Test, options: RateLimitOptions, routes: (fastify: FastifyInstance) => void) {
  const fastify = Fastify()
  await fastify.register(rateLimit, options)
  routes(fastify)
  t.teardown(() => fastify.close())
  return fastify
}

t.test('several limits on one route: headers list each, the tightest refuses', async (t) => {
  const fastify = await app(t, {}, (f) => {
    f.get(
      '/search',
      {
        config: {
          rateLimit: [
            { limit: 2, window: '10s', name: 'burst' },
            { limit: 5, window: '1h', name: 'hourly', algorithm: 'sliding-log' },
          ],
        },
      },
      async () => 'found',
    )
  })
  const first = await fastify.inject('/search')
  t.equal(first.statusCode, 200)
  t.equal(first.headers['ratelimit-policy'], '"burst";q=2;w=10, "hourly";q=5;w=3600')
  t.match(first.headers.ratelimit, /^"burst";r=1;t=\d+, "hourly";r=4;t=3600$/)
  t.equal((await fastify.inject('/search')).statusCode, 200)
  const third = await fastify.inject('/search')
  t.equal(third.statusCode, 429, 'the burst limit refuses the third')
  t.match(third.json(), { status: 429, detail: /Rate limit "burst" exceeded: 2 per 10 s/ })
})

t.test('skip: sync true, sync false, a promise, and a throw', async (t) => {
  const fastify = await app(
    t,
    {
      limit: 1,
      skip: (request) => {
        const mode = request.headers['x-skip']
        if (mode === 'throw') throw new Error('skip failed')
        if (mode === 'async') return Promise.resolve(true)
        return mode === 'yes'
      },
    },
    (f) => f.get('/', async () => 'ok'),
  )
  const get = (skip: string) => fastify.inject({ url: '/', headers: { 'x-skip': skip } })
  t.equal((await get('yes')).statusCode, 200)
  t.equal((await get('async')).statusCode, 200)
  t.equal((await get('yes')).headers.ratelimit, undefined, 'a skipped request is not limited')
  t.equal((await get('no')).statusCode, 200, 'the first counted request')
  t.equal((await get('no')).statusCode, 429, 'the second is over the limit of 1')
  t.equal((await get('throw')).statusCode, 500, 'a throwing skip is an error, not a pass')
})

t.test('a throwing onExceeded answers 500', async (t) => {
  const fastify = await app(
    t,
    {
      limit: 1,
      onExceeded: () => {
        throw new Error('hook failed')
      },
    },
    (f) => f.get('/', async () => 'ok'),
  )
  t.equal((await fastify.inject('/')).statusCode, 200)
  t.equal((await fastify.inject('/')).statusCode, 500)
})

t.test('a throwing allowList, onExceeded or key on a route with several limits answers 500', async (t) => {
  const listed = await app(
    t,
    {
      limit: 5,
      allowList: (request) => {
        if (request.headers['x-bad'] !== undefined) throw new Error('list failed')
        return request.headers['x-vip'] !== undefined
      },
    },
    (f) => f.get('/', async () => 'ok'),
  )
  t.equal((await listed.inject('/')).statusCode, 200, 'not listed: limited and served')
  t.equal((await listed.inject({ url: '/', headers: { 'x-bad': '1' } })).statusCode, 500, 'a throwing list')

  const two = [
    {
      limit: 1,
      window: '1m',
      name: 'short',
      key: (request: { headers: Record<string, unknown> }) => String(request.headers['x-user']),
    },
    { limit: 5, window: '1h', name: 'long' },
  ]
  const several = await app(
    t,
    {
      onExceeded: () => {
        throw new Error('hook failed')
      },
    },
    (f) => {
      f.get('/two', { config: { rateLimit: two } }, async () => 'ok')
      f.get(
        '/keyless',
        { config: { rateLimit: [{ limit: 1, key: () => undefined as unknown as string }, { limit: 2 }] } },
        async () => 'ok',
      )
    },
  )
  const user = { url: '/two', headers: { 'x-user': 'a' } }
  t.equal((await several.inject(user)).statusCode, 200, 'fits in both limits')
  t.equal((await several.inject(user)).statusCode, 500, 'refused, and onExceeded threw: 500, not served')
  t.equal((await several.inject('/keyless')).statusCode, 500, 'a key that returns no string: 500')
})

t.test('clients taking turns keep separate counts', async (t) => {
  const byUser = await app(t, { limit: 2, key: (request) => String(request.headers['x-user']) }, (f) =>
    f.get('/', async () => 'ok'),
  )
  const user = async (name: string) =>
    (await byUser.inject({ url: '/', headers: { 'x-user': name } })).statusCode
  t.same([await user('a'), await user('b'), await user('a'), await user('b')], [200, 200, 200, 200])
  t.same([await user('a'), await user('b')], [429, 429])

  const byIp = await app(t, { limit: 2 }, (f) => f.get('/', async () => 'ok'))
  const ip = async (remoteAddress: string) => (await byIp.inject({ url: '/', remoteAddress })).statusCode
  const first = []
  for (const address of ['2001:db8:1:1::1', '2001:db8:2:2::1', '2001:db8:1:1::2', '2001:db8:2:2::2']) {
    first.push(await ip(address))
  }
  t.same(first, [200, 200, 200, 200], 'two /64s, two requests each')
  t.same([await ip('2001:db8:1:1::3'), await ip('2001:db8:2:2::3')], [429, 429], 'each /64 is full')
  t.equal(await ip('192.0.2.1'), 200, 'an IPv4 client has its own count')
})

t.test('a key function that stops returning a string answers 500', async (t) => {
  const fastify = await app(t, { key: (request) => request.headers['x-user'] as string }, (f) =>
    f.get('/', async () => 'ok'),
  )
  t.equal((await fastify.inject({ url: '/', headers: { 'x-user': 'a' } })).statusCode, 200)
  t.equal((await fastify.inject('/')).statusCode, 500)
})

t.test('the memory store evicts the least recently used key, counting reads as use', async (t) => {
  const store = new MemoryStore({ maxKeys: 2, pruneInterval: 0 })
  t.teardown(() => store.close())
  const spec = { limit: 5, window: 60_000, algorithm: 'sliding-window' } as const
  store.consumeNow('a', spec, 1)
  store.consumeNow('b', spec, 1)
  store.consumeNow('a', spec, 1)
  store.consumeNow('c', spec, 1)
  t.equal(store.size, 2)
  t.equal(store.consumeNow('a', spec, 1).remaining, 2, 'a, used after b, was kept (3 counted)')
  t.equal(store.consumeNow('b', spec, 1).remaining, 4, 'b was evicted: it starts again')

  // A run of one key's requests (keep-alive) skips the LRU lookup; the order must stay exact.
  const runs = new MemoryStore({ maxKeys: 2, pruneInterval: 0 })
  t.teardown(() => runs.close())
  for (const key of ['a', 'b', 'b', 'b', 'a', 'a']) runs.consumeNow(key, spec, 1)
  runs.consumeNow('c', spec, 1)
  t.equal(runs.consumeNow('a', spec, 1).remaining, 1, 'a, whose run came last, was kept (4 counted)')
  t.equal(runs.consumeNow('b', spec, 1).remaining, 4, 'b, whose run came first, was evicted')
})
