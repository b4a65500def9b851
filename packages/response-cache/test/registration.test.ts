import fastifyRedis from '@fastify/redis'
import { Cache, createCache } from '@larder/core'
import responseCache, { type ResponseCacheOptions } from '@larder/response-cache'
import { sharedRedis, sharedRedisUrl, waitFor } from '@larder/test-support'
import Fastify, { type FastifyInstance, type RouteOptions } from 'fastify'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { storedEntries } from './helpers/entries.js'

// Registration (issue 3, "Registration"): options are checked at `register`, route configs when the
// route is declared, the engine comes from the right place, onClose closes only what the plugin
// opened, routes without config.cache are left alone and fastify.cache is the engine.

const { redis, prefix } = sharedRedis(t)

/** Options as a user might mistype them: the plugin must catch at runtime what types would not. */
function loose(options: Record<string, unknown>): ResponseCacheOptions {
  return options as ResponseCacheOptions
}

function instance(t: Test): FastifyInstance {
  const fastify = Fastify()
  t.teardown(() => fastify.close())
  return fastify
}

async function app(t: Test, options: ResponseCacheOptions = {}): Promise<FastifyInstance> {
  const fastify = instance(t)
  await fastify.register(responseCache, options)
  return fastify
}

function entryKeys(p: string): Promise<string[]> {
  return storedEntries(redis, `${p}*`)
}

/** The shared Redis URL with a client name, so CLIENT LIST shows whether those connections are open. */
function namedUrl(name: string): string {
  const url = new URL(sharedRedisUrl)
  url.searchParams.set('connectionName', name)
  return url.toString()
}

async function connectionsNamed(name: string): Promise<number> {
  const list = String(await redis.client('LIST'))
  return list.split('\n').filter((line) => line.split(' ').includes(`name=${name}`)).length
}

const LARDER_HEADERS = [
  'x-cache',
  'cache-status',
  'etag',
  'age',
  'cache-control',
  'surrogate-key',
  'cache-tag',
]

t.test('an unknown or invalid plugin option fails register, naming the option', async (t) => {
  const cases: Array<[what: string, options: Record<string, unknown>, message: RegExp]> = [
    ['an unknown option', { redis: sharedRedisUrl, ttl: '10m' }, /unknown option 'ttl'/],
    ['a misspelt option', { prefx: 'larder:' }, /unknown option 'prefx'/],
    ['defaults.ttl not a duration', { defaults: { ttl: 'soon' } }, /defaults\.ttl.*"soon"/],
    [
      'defaults.staleIfError negative',
      { defaults: { ttl: '1m', staleIfError: -1 } },
      /defaults\.staleIfError/,
    ],
    ['an unknown default', { defaults: { ttl: '1m', tags: ['x'] } }, /defaults: unknown option 'tags'/],
    ['defaults not an object', { defaults: '10m' }, /defaults: expected an object/],
    ['maxEntryBytes not a size', { maxEntryBytes: 'huge' }, /maxEntryBytes.*"huge"/],
    ['cache not an engine', { cache: { get() {} } }, /@larder\/response-cache cache: expected a Cache/],
    ['l1.maxBytes not a size', { l1: { maxBytes: 'lots' } }, /maxBytes/],
  ]
  for (const [what, options, message] of cases) {
    const fastify = instance(t)
    await t.rejects(
      async () => {
        await fastify.register(responseCache, loose(options))
      },
      { message },
      `${what}: register rejects with ${message}`,
    )
  }
})

t.test('a bad config.cache fails when the route is declared, naming the route and the option', async (t) => {
  const handler = async () => ({ ok: true })
  const cases: Array<[what: string, config: Record<string, unknown>, message: RegExp]> = [
    ['ttl missing', { tags: ['x'] }, /config\.cache of \/bad: ttl: required/],
    ['an unknown option', { ttl: '1m', maxAge: 60 }, /config\.cache of \/bad: unknown option 'maxAge'/],
    ['ttl not a duration', { ttl: 'forever' }, /config\.cache\.ttl of \/bad: .*"forever"/],
    ['ttl zero', { ttl: 0 }, /config\.cache of \/bad: ttl: expected a duration > 0/],
    [
      'staleWhileRevalidate not a duration',
      { ttl: '1m', staleWhileRevalidate: 'a while' },
      /config\.cache\.staleWhileRevalidate of \/bad/,
    ],
    ['notFoundTtl not a duration', { ttl: '1m', notFoundTtl: true }, /config\.cache\.notFoundTtl of \/bad/],
    [
      'vary not an array',
      { ttl: '1m', vary: 'accept-language' },
      /config\.cache of \/bad: vary: expected an array/,
    ],
    ['query not an array', { ttl: '1m', query: 'page' }, /config\.cache of \/bad: query: expected an array/],
    ['key not a function', { ttl: '1m', key: 'id' }, /config\.cache of \/bad: key: expected a function/],
    [
      'private not a function',
      { ttl: '1m', private: true },
      /config\.cache of \/bad: private: expected a function/,
    ],
    [
      'a tag template with another root',
      { ttl: '1m', tags: ['item:{body.id}'] },
      /config\.cache\.tags of \/bad/,
    ],
  ]
  for (const [what, config, message] of cases) {
    // Declared at the top level after `await register`, the error is thrown by fastify.get itself.
    const fastify = await app(t)
    t.throws(
      () => fastify.get('/bad', { config: { cache: loose(config) as never } }, handler),
      { message },
      `${what}: fastify.get throws ${message}`,
    )
  }

  // Declared inside a plugin, the same error rejects ready() (and the plugin's awaited register), with
  // the route's full URL.
  const fastify = await app(t)
  fastify.register(
    async (child) => {
      child.get(
        '/in-plugin',
        { config: { cache: loose({ ttl: '1m', staleIfError: 'eventually' }) as never } },
        handler,
      )
    },
    { prefix: '/v1' },
  )
  await t.rejects(
    async () => {
      await fastify.ready()
    },
    { message: /config\.cache\.staleIfError of \/v1\/in-plugin: .*"eventually"/ },
    'in a plugin: ready() rejects, naming /v1/in-plugin and staleIfError',
  )
})

t.test('defaults fill in a route config', async (t) => {
  const fastify = await app(t, { defaults: { ttl: '1m', staleWhileRevalidate: '10s' } })
  let calls = 0
  fastify.get('/defaults', { config: { cache: loose({}) as never } }, async () => ({ calls: ++calls }))
  fastify.get('/override', { config: { cache: { ttl: '2m' } } }, async () => ({ calls: ++calls }))
  const first = await fastify.inject('/defaults')
  t.equal(first.headers['x-cache'], 'MISS', 'a route with config.cache {} is cached with the default ttl')
  t.equal(first.headers['cache-control'], 'public, max-age=60, stale-while-revalidate=10', 'the default TTLs')
  t.equal((await fastify.inject('/defaults')).headers['x-cache'], 'HIT', 'and served from the cache')
  const override = await fastify.inject('/override')
  t.equal(
    override.headers['cache-control'],
    'public, max-age=120, stale-while-revalidate=10',
    'the route ttl wins',
  )
})

t.test('without a redis option, fastify.redis from @fastify/redis is used and never closed', async (t) => {
  const p = prefix('reg-fastify-redis')
  const client = new Redis(sharedRedisUrl)
  t.teardown(() => client.quit())
  const fastify = Fastify()
  await fastify.register(fastifyRedis, { client })
  await fastify.register(responseCache, { prefix: p })
  fastify.get('/stored', { config: { cache: { ttl: '10m' } } }, async () => ({ in: 'redis' }))
  t.equal((await fastify.inject('/stored')).headers['x-cache'], 'MISS', 'first: MISS')
  const stored = await waitFor(async () => (await entryKeys(`${p}res:`)).length === 1, {
    message: 'no entry reached Redis under the prefix',
  })
  t.ok(stored, 'the entry is in Redis under the prefix: the engine uses fastify.redis')
  const cached = await fastify.cache.wrap('query:1', () => ({ rows: 3 }), { ttl: '1m' })
  t.same(cached, { rows: 3 }, 'fastify.cache.wrap works')
  await waitFor(async () => (await redis.exists(`${p}query:1`)) === 1, {
    message: 'query entry not in Redis',
  })
  t.pass('fastify.cache.wrap stored the query result in Redis too')

  await fastify.close()
  t.equal(client.status, 'ready', 'after fastify.close(): the client handed to @fastify/redis is still open')
  t.equal(await client.ping(), 'PONG', 'and still answers')
})

t.test('a client passed as redis is not closed at fastify.close()', async (t) => {
  const p = prefix('reg-client')
  const client = new Redis(sharedRedisUrl)
  t.teardown(() => client.quit())
  const fastify = Fastify()
  await fastify.register(responseCache, { redis: client, prefix: p })
  fastify.get('/stored', { config: { cache: { ttl: '10m' } } }, async () => ({ ok: true }))
  t.equal((await fastify.inject('/stored')).headers['x-cache'], 'MISS', 'first: MISS')
  await waitFor(async () => (await entryKeys(`${p}res:`)).length === 1, { message: 'no entry in Redis' })
  await fastify.close()
  t.equal(client.status, 'ready', 'the handed client is still open')
  t.equal(await client.ping(), 'PONG', 'and still answers')
})

t.test('a cache option is the engine, and fastify.close() does not close it', async (t) => {
  const p = prefix('reg-given')
  const name = `larder-given-${process.pid}-${Date.now()}`
  const engine = createCache({ redis: namedUrl(name), prefix: p, l1: false })
  t.teardown(() => engine.close())
  const fastify = Fastify()
  await fastify.register(responseCache, { cache: engine })
  t.equal(fastify.cache, engine, 'fastify.cache is the engine handed over')
  let calls = 0
  fastify.get('/given', { config: { cache: { ttl: '10m' } } }, async () => ({ calls: ++calls }))
  t.equal((await fastify.inject('/given')).headers['x-cache'], 'MISS', 'first: MISS')
  t.equal((await fastify.inject('/given')).headers['x-cache'], 'HIT', 'second: HIT')
  t.equal(calls, 1, 'the handler ran once')
  t.equal((await entryKeys(`${p}res:`)).length, 1, "the route's entry is in the given engine's Redis prefix")
  t.ok((await connectionsNamed(name)) >= 1, "the engine's connection is open")

  await fastify.close()
  await engine.set('after-close', { still: 'working' }, { ttl: '1m' })
  t.same(
    await engine.get('after-close'),
    { still: 'working' },
    'after fastify.close(): the engine still reads and writes Redis',
  )
  t.ok((await connectionsNamed(name)) >= 1, "after fastify.close(): the engine's connection is still open")
})

t.test('an engine the plugin created from a URL is closed at fastify.close()', async (t) => {
  const name = `larder-owned-${process.pid}-${Date.now()}`
  const fastify = Fastify()
  await fastify.register(responseCache, { redis: namedUrl(name), prefix: prefix('reg-owned') })
  fastify.get('/owned', { config: { cache: { ttl: '10m' } } }, async () => ({ ok: true }))
  t.equal((await fastify.inject('/owned')).headers['x-cache'], 'MISS', 'first: MISS')
  t.ok((await connectionsNamed(name)) >= 1, 'the plugin opened a connection to Redis')
  await fastify.close()
  const closed = await waitFor(async () => (await connectionsNamed(name)) === 0, {
    message: 'the connections the plugin opened are still open after fastify.close()',
  })
  t.ok(closed, 'after fastify.close(): no connection the plugin opened is left')
})

t.test("the engine logs through Fastify's own logger", async (t) => {
  const lines: string[] = []
  const fastify = Fastify({
    logger: {
      level: 'warn',
      stream: {
        write(line: string) {
          lines.push(line)
        },
      },
    },
  })
  t.teardown(() => fastify.close())
  // Nothing listens on port 1: every Redis call fails, and the engine says so.
  await fastify.register(responseCache, { redis: 'redis://127.0.0.1:1', engine: { timeout: 50 } })
  fastify.get('/down', { config: { cache: { ttl: '10m' } } }, async () => ({ ok: true }))
  const response = await fastify.inject('/down')
  t.equal(response.statusCode, 200, 'Redis unreachable: the handler still answers')
  t.same(response.json(), { ok: true }, 'with its body')
  const logged = await waitFor(() => lines.find((line) => line.includes('larder: Redis')), {
    message: 'the engine never logged through fastify.log',
  })
  t.match(
    JSON.parse(logged ?? '{}'),
    { msg: /^larder: Redis/, level: 50 },
    "a pino line from Fastify's logger",
  )
})

t.test('a route without config.cache is untouched', async (t) => {
  const fastify = await app(t)
  const hooksSeen = new Map<string, RouteOptions>()
  fastify.addHook('onRoute', (routeOptions) => {
    hooksSeen.set(`${String(routeOptions.method)} ${routeOptions.url}`, routeOptions)
  })
  let calls = 0
  const ownHook = async () => {}
  fastify.get('/plain', async () => ({ calls: ++calls }))
  fastify.get('/own-hooks', { onSend: [ownHook] }, async () => ({ calls: ++calls }))
  fastify.get('/disabled', { config: { cache: false } }, async () => ({ calls: ++calls }))
  fastify.get('/cached', { config: { cache: { ttl: '1m' } } }, async () => ({ calls: ++calls }))

  for (const url of ['/plain', '/own-hooks', '/disabled']) {
    for (const method of ['GET', 'HEAD'] as const) {
      const before = calls
      const first = await fastify.inject({ method, url })
      const second = await fastify.inject({ method, url })
      t.equal(calls, before + 2, `${method} ${url}: the handler ran every time`)
      for (const name of LARDER_HEADERS) {
        t.notOk(name in first.headers || name in second.headers, `${method} ${url}: no ${name} header`)
      }
    }
  }

  const larderHooks = (routeOptions: RouteOptions | undefined) =>
    ['onRequest', 'onSend', 'onResponse', 'onRequestAbort'].flatMap((name) => {
      const hooks = routeOptions?.[name as 'onRequest']
      const list: unknown[] = hooks === undefined ? [] : Array.isArray(hooks) ? hooks : [hooks]
      return list
        .map((hook) => (typeof hook === 'function' ? hook.name : ''))
        .filter((hookName) => hookName.startsWith('larder'))
    })
  for (const key of ['GET /plain', 'HEAD /plain', 'GET /own-hooks', 'GET /disabled']) {
    t.same(larderHooks(hooksSeen.get(key)), [], `${key}: no hooks added`)
  }
  t.same(hooksSeen.get('GET /own-hooks')?.onSend, [ownHook], 'GET /own-hooks: its own hooks unchanged')
  t.ok(larderHooks(hooksSeen.get('GET /cached')).length > 0, 'GET /cached: the cache hooks (the check works)')
  t.equal(
    (await fastify.inject('/cached')).headers['x-cache'],
    'MISS',
    'the cached route beside them is cached',
  )
})

t.test('fastify.cache is decorated with the engine the routes use', async (t) => {
  const fastify = await app(t)
  t.ok(fastify.hasDecorator('cache'), 'fastify.cache is decorated')
  t.ok(fastify.cache instanceof Cache, 'fastify.cache is a @larder/core Cache')
  let loads = 0
  const query = () =>
    fastify.cache.wrap(
      'products:count',
      () => {
        loads++
        return { count: 42 }
      },
      { ttl: '1m', tags: ['products'] },
    )
  t.same(await query(), { count: 42 }, 'wrap returns the loader result')
  t.same(await query(), { count: 42 }, 'wrap again returns the cached result')
  t.equal(loads, 1, 'the query ran once')
  await fastify.cache.invalidateTags(['products'])
  await query()
  t.equal(loads, 2, 'invalidateTags made wrap run the query again')

  let calls = 0
  fastify.get('/route', { config: { cache: { ttl: '1m', tags: ['products'] } } }, async () => ({
    calls: ++calls,
  }))
  const before = fastify.cache.stats()
  t.equal((await fastify.inject('/route')).headers['x-cache'], 'MISS', 'route: MISS')
  t.equal((await fastify.inject('/route')).headers['x-cache'], 'HIT', 'route: HIT')
  const after = fastify.cache.stats()
  t.equal(after.loaderCalls - before.loaderCalls, 1, "the route's MISS is a load in fastify.cache")
  t.ok(after.hits > before.hits, "the route's HIT is a hit in fastify.cache")
  await fastify.cache.invalidateTags(['products'])
  t.equal(
    (await fastify.inject('/route')).headers['x-cache'],
    'MISS',
    'fastify.cache.invalidateTags reaches route entries',
  )
})
