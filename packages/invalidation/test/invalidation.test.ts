import { gunzipSync, gzipSync } from 'node:zlib'
import { waitFor } from '@larder/test-support'
import type { LightMyRequestResponse } from 'fastify'
import t from 'tap'
import { cached, logSink, productApp, redisClient, Store, testPrefix } from './fixtures/app.js'

// Issue 4, "Tests": a successful write makes the cached reads it touches fresh, on every instance
// sharing Redis, before its response leaves; a failed write or a rejected request invalidates nothing.

t.test(
  '1. GET HIT → PUT → the next GET is a MISS with the new data, on both instances (L1 on)',
  async (t) => {
    const prefix = testPrefix(t, 'inv-put')
    const store = new Store()
    const a = await productApp(t, { store, prefix })
    const b = await productApp(t, { store, prefix })

    t.equal((await a.inject('/products/1')).headers['x-cache'], 'MISS', 'A: the first GET is a MISS')
    // Both instances end up serving the old entry from their own L1 (the entry reaches L1 once the
    // MISS's store, and its bus message, have settled).
    for (const [name, app] of [
      ['A', a],
      ['B', b],
    ] as const) {
      // waitFor resolves with the check's truthy result: the response.
      const served = (await waitFor(
        async () => {
          const l1Hits = app.cache.stats().l1Hits
          const response = await app.inject('/products/1')
          return response.headers['x-cache'] === 'HIT' && app.cache.stats().l1Hits === l1Hits + 1 && response
        },
        { message: `${name} never served /products/1 from its L1` },
      )) as LightMyRequestResponse
      t.pass(`${name}: GET /products/1 is a HIT from ${name}'s own L1`)
      t.same(served.json(), { id: 1, name: 'Tea' }, `${name}: with the old data`)
    }
    const reads = store.reads

    const put = await a.inject({ method: 'PUT', url: '/products/1', payload: { name: 'Green tea' } })
    t.equal(put.statusCode, 200, 'A: the PUT succeeds')
    t.equal(store.writes, 1, 'the write ran once')

    const afterOnB = await b.inject('/products/1')
    t.equal(afterOnB.headers['x-cache'], 'MISS', "B: the GET right after the PUT's response is a MISS")
    t.same(afterOnB.json(), { id: 1, name: 'Green tea' }, 'B: with the new data')
    t.equal(store.reads, reads + 1, "B's GET ran the handler")
    const afterOnA = await a.inject('/products/1')
    t.same(
      afterOnA.json(),
      { id: 1, name: 'Green tea' },
      `A: the new data too (${afterOnA.headers['x-cache']})`,
    )
    t.equal(a.invalidation.stats().invalidations, 1, 'A counted one invalidation')
    t.equal(a.invalidation.stats().failures, 0, 'and no failure')
  },
)

t.test('1b. a PUT on instance B invalidates the entry A holds in L1, the other way round too', async (t) => {
  const prefix = testPrefix(t, 'inv-put-b')
  const store = new Store()
  const a = await productApp(t, { store, prefix })
  const b = await productApp(t, { store, prefix })
  await a.inject('/products')
  await cached(t, a, '/products', 'A: the list is cached')
  const put = await b.inject({ method: 'PUT', url: '/products/2', payload: { name: 'Espresso' } })
  t.equal(put.statusCode, 200, 'B: the PUT succeeds')
  const list = await a.inject('/products')
  t.equal(list.headers['x-cache'], 'MISS', 'A: the list tagged `products` is a MISS')
  t.same(
    list.json(),
    [
      { id: 1, name: 'Tea' },
      { id: 2, name: 'Espresso' },
    ],
    'A: the list has the new data',
  )
})

t.test('2. a POST that creates: the list and the cached 404 of {response.id} are fresh', async (t) => {
  const prefix = testPrefix(t, 'inv-post')
  const store = new Store()
  const a = await productApp(t, { store, prefix })
  const b = await productApp(t, { store, prefix })

  await a.inject('/products')
  await cached(t, a, '/products', 'A: the list is cached')
  await cached(t, b, '/products', 'B: the list is cached')
  const missing = await a.inject('/products/3')
  t.equal(missing.statusCode, 404, 'product 3 does not exist yet')
  await cached(t, a, '/products/3', 'the 404 is cached (notFoundTtl)')
  t.equal((await a.inject('/products/3')).statusCode, 404, 'and served as a 404')
  await cached(t, b, '/products/3', 'B: the 404 is cached too')

  const post = await a.inject({ method: 'POST', url: '/products', payload: { name: 'Matcha' } })
  t.equal(post.statusCode, 201, 'the POST creates')
  t.same(post.json(), { id: 3, name: 'Matcha' }, 'and answers the new id')

  const created = await b.inject('/products/3')
  t.equal(created.statusCode, 200, 'B: GET /products/3 is no longer the cached 404')
  t.equal(created.headers['x-cache'], 'MISS', 'B: it is a MISS: tag product:{response.id} was invalidated')
  t.same(created.json(), { id: 3, name: 'Matcha' }, 'B: with the created product')
  const listOnA = await a.inject('/products')
  t.equal(listOnA.headers['x-cache'], 'MISS', 'A: the list tagged `products` is a MISS')
  t.same(
    listOnA.json().map((product: { id: number }) => product.id),
    [1, 2, 3],
    'A: the list includes the new product',
  )
  const listOnB = await b.inject('/products')
  t.same(
    listOnB.json().map((product: { id: number }) => product.id),
    [1, 2, 3],
    `B: the list includes the new product (${listOnB.headers['x-cache']})`,
  )
})

t.test('3. a 4xx or 5xx mutation invalidates nothing', async (t) => {
  const prefix = testPrefix(t, 'inv-fail')
  const store = new Store()
  const a = await productApp(t, { store, prefix })
  const b = await productApp(t, { store, prefix })
  await a.inject('/products/1')
  await a.inject('/products')
  await cached(t, b, '/products/1', 'B: product 1 is cached')

  const cases = [
    { payload: {}, status: 422, what: 'a 422 from the handler' },
    { payload: { name: 'boom' }, status: 500, what: 'a 500 (the handler threw)' },
  ]
  for (const { payload, status, what } of cases) {
    const put = await a.inject({ method: 'PUT', url: '/products/1', payload })
    t.equal(put.statusCode, status, `${what}: the PUT answers ${status}`)
    for (const [name, app] of [
      ['A', a],
      ['B', b],
    ] as const) {
      const get = await app.inject('/products/1')
      t.equal(get.headers['x-cache'], 'HIT', `${what}: ${name}'s GET /products/1 is still a HIT`)
      t.same(get.json(), { id: 1, name: 'Tea' }, `${what}: ${name} serves the cached data`)
    }
    t.equal((await a.inject('/products')).headers['x-cache'], 'HIT', `${what}: the list is still a HIT`)
    t.equal(a.invalidation.stats().invalidations, 0, `${what}: no invalidation ran`)
  }
  const control = await a.inject({ method: 'PUT', url: '/products/1', payload: { name: 'x' } })
  t.equal(control.statusCode, 200, 'control: a valid PUT succeeds')
  t.equal(store.writes, 1, 'only the successful PUT wrote')
  t.equal(a.invalidation.stats().invalidations, 1, 'only the successful PUT invalidated')
  t.equal((await b.inject('/products/1')).headers['x-cache'], 'MISS', 'control: and B sees it at once')
})

t.test('4. a pattern removes user:123:* and leaves user:1234:*', async (t) => {
  const prefix = testPrefix(t, 'inv-pattern')
  const store = new Store()
  const redis = redisClient(t)
  const a = await productApp(t, { store, prefix })
  const b = await productApp(t, { store, prefix })

  await a.cache.set('user:123:profile', { name: 'Ada' }, { ttl: '10m' })
  await a.cache.set('user:1234:profile', { name: 'Grace' }, { ttl: '10m' })
  let loads = 0
  const orders = (id: string) =>
    a.cache.wrap(`user:${id}:orders`, async () => ({ id, load: ++loads }), { ttl: '10m' })
  t.same(await orders('123'), { id: '123', load: 1 }, 'user:123:orders is loaded')
  t.same(await orders('1234'), { id: '1234', load: 2 }, 'user:1234:orders is loaded')
  t.same(await orders('123'), { id: '123', load: 1 }, 'and then served from the cache')
  t.same(await b.cache.get('user:123:profile'), { name: 'Ada' }, "B: user:123:profile, now in B's L1")

  const put = await a.inject({ method: 'PUT', url: '/users/123' })
  t.equal(put.statusCode, 200, 'the PUT succeeds')

  t.equal(await a.cache.get('user:123:profile'), undefined, 'A: user:123:profile is gone')
  t.equal(await b.cache.get('user:123:profile'), undefined, "B: user:123:profile is gone from B's L1 too")
  t.same(await orders('123'), { id: '123', load: 3 }, 'user:123:orders is loaded again')
  t.same(await a.cache.get('user:1234:profile'), { name: 'Grace' }, 'user:1234:profile is still cached')
  t.same(await b.cache.get('user:1234:profile'), { name: 'Grace' }, 'B: user:1234:profile is still cached')
  t.same(await orders('1234'), { id: '1234', load: 2 }, 'user:1234:orders is still cached (no load)')
  t.equal(await redis.exists(`${prefix}user:1234:profile`), 1, 'Redis still holds user:1234:profile')
  t.equal(await redis.exists(`${prefix}user:123:profile`), 0, 'Redis no longer holds user:123:profile')
})

t.test('6. a body value that would widen the invalidation is rejected before the write', async (t) => {
  const prefix = testPrefix(t, 'inv-reject')
  const store = new Store()
  const log = logSink()
  const a = await productApp(t, { store, prefix, log: { level: 'warn', stream: log.stream } })
  await a.cache.set('user:1:profile', { name: 'Ada' }, { ttl: '10m' })
  await a.cache.set('user:2:profile', { name: 'Grace' }, { ttl: '10m' })
  await a.inject('/products/1')
  await cached(t, a, '/products/1', 'product 1 is cached')

  const rejected = [
    { url: '/logout', method: 'POST', payload: { userId: '*' }, what: 'a pattern value `*`' },
    { url: '/logout', method: 'POST', payload: { userId: '1?' }, what: 'a pattern value `1?`' },
    { url: '/logout', method: 'POST', payload: { userId: '[12]' }, what: 'a pattern value `[12]`' },
    {
      url: '/logout',
      method: 'POST',
      payload: { userId: 'x'.repeat(10_240) },
      what: 'a 10 kB pattern value',
    },
    {
      url: '/products/1/category',
      method: 'PUT',
      payload: { category: '*' },
      what: 'a tag value `*`',
    },
    {
      url: '/products/1/category',
      method: 'PUT',
      payload: { category: 'x'.repeat(10_240) },
      what: 'a 10 kB tag value',
    },
    {
      url: '/products/1/category',
      method: 'PUT',
      payload: { category: 'tea leaves' },
      what: 'a tag value with whitespace',
    },
  ] as const
  for (const { url, method, payload, what } of rejected) {
    const response = await a.inject({ method, url, payload })
    t.equal(response.statusCode, 400, `${what}: 400`)
    t.match(
      response.json(),
      {
        statusCode: 400,
        error: 'Bad Request',
        message: /\{body\.(userId|category)\}.*1-256 characters/,
      },
      `${what}: the message names the template and the rule`,
    )
    t.ok(response.json().message.length < 300, `${what}: the message does not echo the whole value`)
  }
  t.equal(store.writes, 0, 'no handler ran: the writes were refused')
  t.equal(a.invalidation.stats().invalidations, 0, 'nothing was invalidated')
  t.same(await a.cache.get('user:1:profile'), { name: 'Ada' }, 'user:1:profile is still cached')
  t.same(await a.cache.get('user:2:profile'), { name: 'Grace' }, 'user:2:profile is still cached')
  t.equal((await a.inject('/products/1')).headers['x-cache'], 'HIT', 'product 1 is still a HIT')
  t.ok(
    log.lines.some((line) => line.level === 40 && line.msg === 'larder: invalidation targets rejected'),
    'each rejection is logged at warn level',
  )

  const accepted = await a.inject({ method: 'POST', url: '/logout', payload: { userId: '1' } })
  t.equal(accepted.statusCode, 200, 'control: a plain user id is accepted')
  t.equal(await a.cache.get('user:1:profile'), undefined, 'control: it removes user:1:*')
  t.same(await a.cache.get('user:2:profile'), { name: 'Grace' }, 'control: and leaves user:2:*')
})

t.test('6b. a template whose param or body field is missing is a 400 with a clear message', async (t) => {
  const prefix = testPrefix(t, 'inv-missing')
  const store = new Store()
  const a = await productApp(t, {
    store,
    prefix,
    routes: (fastify) =>
      fastify.put('/things/:id', { config: { invalidate: { tags: ['thing:{params.slug}'] } } }, async () => {
        store.writes++
        return { ok: true }
      }),
  })
  await a.inject('/products/1')

  const noParam = await a.inject({ method: 'PUT', url: '/things/1' })
  t.equal(noParam.statusCode, 400, 'a missing param: 400')
  t.match(noParam.json().message, /\{params\.slug\}.*got undefined/, 'the message names {params.slug}')

  const noBody = await a.inject({ method: 'PUT', url: '/products/1/category', payload: {} })
  t.equal(noBody.statusCode, 400, 'a missing body field: 400')
  t.match(noBody.json().message, /\{body\.category\}.*got undefined/, 'the message names {body.category}')

  const objectBody = await a.inject({
    method: 'PUT',
    url: '/products/1/category',
    payload: { category: { $ne: 1 } },
  })
  t.equal(objectBody.statusCode, 400, 'an object where a string is expected: 400')
  t.match(objectBody.json().message, /\{body\.category\}.*got an object/, 'the message says what it got')

  t.equal(store.writes, 0, 'no handler ran')
  t.equal(a.invalidation.stats().invalidations, 0, 'nothing was invalidated')
  t.equal((await a.inject('/products/1')).headers['x-cache'], 'HIT', 'product 1 is still a HIT')
})

t.test('6c. a filled tag, key or pattern the engine would refuse is a 400 before the write', async (t) => {
  const prefix = testPrefix(t, 'inv-whole')
  const store = new Store()
  const a = await productApp(t, {
    store,
    prefix,
    routes: (fastify) => {
      fastify.delete('/entries', { config: { invalidate: { keys: ['{body.key}'] } } }, async () => {
        store.writes++
        return { deleted: true }
      })
    },
  })
  await a.inject('/products/1')

  // Each filled value is within 1-256 characters, but the whole tag is not.
  const longTag = await a.inject({
    method: 'PUT',
    url: '/products/1/category',
    payload: { category: 'x'.repeat(250) },
  })
  t.equal(longTag.statusCode, 400, 'a tag over 256 characters in total: 400')
  t.match(longTag.json().message, /category:\{body\.category\}/, 'the message names the template')

  const reservedKey = await a.inject({ method: 'DELETE', url: '/entries', payload: { key: '{t}:product:1' } })
  t.equal(reservedKey.statusCode, 400, "a key in the engine's reserved tag space: 400")
  t.match(reservedKey.json().message, /\{t\}/, 'the message names the reserved prefix')

  t.equal(store.writes, 0, 'no handler ran')
  t.equal(a.invalidation.stats().invalidations, 0, 'nothing was invalidated')
  t.equal((await a.inject('/products/1')).headers['x-cache'], 'HIT', 'product 1 is still a HIT')
})

t.test('function targets: patterns may hold globs, and run after a 2xx only', async (t) => {
  const prefix = testPrefix(t, 'inv-fn')
  const store = new Store()
  const a = await productApp(t, {
    store,
    prefix,
    routes: (fastify) => {
      fastify.put<{ Params: { id: string } }>(
        '/accounts/:id',
        {
          config: {
            invalidate: {
              patterns: (request) => [`user:${(request.params as { id: string }).id}:*`],
              tags: (_request, _reply, payload) => [`account:${(payload as { id: string }).id}`],
            },
          },
        },
        async (request) => {
          store.writes++
          return { id: request.params.id }
        },
      )
    },
  })
  await a.cache.set('user:7:profile', { name: 'Ada' }, { ttl: '10m' })
  await a.cache.set('user:77:profile', { name: 'Grace' }, { ttl: '10m' })
  await a.cache.set('account-view:7', { balance: 1 }, { ttl: '10m', tags: ['account:7'] })
  const put = await a.inject({ method: 'PUT', url: '/accounts/7' })
  t.equal(put.statusCode, 200, 'the PUT succeeds')
  t.equal(await a.cache.get('user:7:profile'), undefined, 'the function pattern removed user:7:*')
  t.same(await a.cache.get('user:77:profile'), { name: 'Grace' }, 'and left user:77:*')
  t.equal(
    await a.cache.get('account-view:7'),
    undefined,
    'the function tag (from the payload) was invalidated',
  )
})

t.test('fastify.invalidate({ tags, keys, patterns }) for code paths that are not routes', async (t) => {
  const prefix = testPrefix(t, 'inv-api')
  const store = new Store()
  const a = await productApp(t, { store, prefix })
  const b = await productApp(t, { store, prefix })
  await a.inject('/products/1')
  await a.inject('/products/2')
  await a.cache.set('report:daily', { total: 1 }, { ttl: '10m' })
  await a.cache.set('report:weekly', { total: 7 }, { ttl: '10m' })
  await a.cache.set('user:5:feed', ['a'], { ttl: '10m' })
  await a.cache.set('user:55:feed', ['b'], { ttl: '10m' })
  t.same(await b.cache.get('report:daily'), { total: 1 }, "B holds report:daily (now in B's L1)")
  t.same(await b.cache.get('user:5:feed'), ['a'], "B holds user:5:feed (now in B's L1)")
  await cached(t, b, '/products/1', 'B: product 1 is cached')

  await a.invalidate({ tags: ['product:1'], keys: ['report:daily'], patterns: ['user:5:*'] })

  t.equal((await b.inject('/products/1')).headers['x-cache'], 'MISS', 'B: the tag product:1 was invalidated')
  t.equal((await b.inject('/products/2')).headers['x-cache'], 'HIT', 'B: product:2 was not')
  t.equal(await b.cache.get('report:daily'), undefined, 'B: the key report:daily is gone')
  t.same(await b.cache.get('report:weekly'), { total: 7 }, 'B: report:weekly is not')
  t.equal(await b.cache.get('user:5:feed'), undefined, 'B: user:5:* is gone')
  t.same(await b.cache.get('user:55:feed'), ['b'], 'B: user:55:* is not')
  t.equal(await a.cache.get('report:daily'), undefined, 'A: report:daily is gone too')
  t.equal(a.invalidation.stats().invalidations, 1, 'counted as one invalidation')

  await t.rejects(
    a.invalidate({ tags: ['all products'] }),
    { code: 'LARDER_INVALID_OPTION', message: /1-256 characters without whitespace/ },
    'a caller error (a tag with whitespace) rejects: it is not retried',
  )
  t.equal(a.invalidation.stats().pending, 0, 'and nothing is queued for retry')
})

t.test(
  '{response.id} still works when an instance onSend hook rewrote the payload (as @fastify/compress does)',
  async (t) => {
    const prefix = testPrefix(t, 'inv-encoded')
    const store = new Store()
    const a = await productApp(t, {
      store,
      prefix,
      routes: (fastify) => {
        // Registered on the instance, so it runs before the route's own onSend hooks, as compress does.
        fastify.addHook('onSend', async (request, reply, payload) => {
          if (request.headers['accept-encoding'] !== 'gzip' || typeof payload !== 'string') return payload
          reply.header('content-encoding', 'gzip')
          return gzipSync(payload)
        })
      },
    })
    const missing = await a.inject('/products/3')
    t.equal(missing.statusCode, 404, 'product 3 does not exist yet')
    await cached(t, a, '/products/3', 'and its 404 is cached')

    const post = await a.inject({
      method: 'POST',
      url: '/products',
      payload: { name: 'Matcha' },
      headers: { 'accept-encoding': 'gzip' },
    })
    t.equal(post.statusCode, 201, 'the POST creates')
    t.equal(post.headers['content-encoding'], 'gzip', 'and its response was compressed')
    t.same(JSON.parse(gunzipSync(post.rawPayload).toString()), { id: 3, name: 'Matcha' }, 'with the new id')
    const created = await a.inject('/products/3')
    t.equal(created.statusCode, 200, 'GET /products/3 is no longer the cached 404')
    t.equal(created.headers['x-cache'], 'MISS', 'the tag product:{response.id} was invalidated')
  },
)

t.test('a 2xx whose payload lacks a {response.x} field fails loudly, not silently', async (t) => {
  const prefix = testPrefix(t, 'inv-no-id')
  const store = new Store()
  const log = logSink()
  const a = await productApp(t, {
    store,
    prefix,
    log: { level: 'error', stream: log.stream },
    routes: (fastify) => {
      fastify.post('/imports', { config: { invalidate: { tags: ['product:{response.id}'] } } }, async () => {
        store.writes++
        return { imported: true }
      })
    },
  })
  const response = await a.inject({ method: 'POST', url: '/imports' })
  t.equal(response.statusCode, 500, 'the request fails')
  t.match(
    response.json().message,
    /\{response\.id\} in "product:\{response\.id\}".*got undefined/,
    'the message names the template and what it found',
  )
  t.ok(
    log.lines.some((line) => line.level === 50 && /\{response\.id\}/.test(JSON.stringify(line.err))),
    'and it is logged at error level',
  )
  t.equal(a.invalidation.stats().invalidations, 0, 'no partial invalidation ran')
})
