import { Readable } from 'node:stream'
import responseCache, { type ResponseCacheOptions } from '@larder/response-cache'
import { sharedRedis, sharedRedisUrl, waitFor } from '@larder/test-support'
import Fastify, { type FastifyInstance, type FastifyRequest, type LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { storedEntries } from './helpers/entries.js'

// The HTTP side of the route cache (issue 3, points 1-5 and 9): what a client sees, whether the handler
// ran, and what landed in Redis.

const { redis, prefix } = sharedRedis(t)

type Mode = 'L1 only' | 'L1 + Redis' | 'Redis only (l1: false)'
const MODES: readonly Mode[] = ['L1 only', 'L1 + Redis', 'Redis only (l1: false)']

function modeOptions(mode: Mode, name: string): ResponseCacheOptions {
  if (mode === 'L1 only') return {}
  const options: ResponseCacheOptions = { redis: sharedRedisUrl, prefix: prefix(name) }
  if (mode === 'Redis only (l1: false)') options.l1 = false
  return options
}

async function app(t: Test, options: ResponseCacheOptions = {}): Promise<FastifyInstance> {
  const fastify = Fastify()
  await fastify.register(responseCache, options)
  t.teardown(() => fastify.close())
  return fastify
}

/** Entry keys (not tag versions) stored in Redis under `prefix`, optionally for one route pattern. */
function entryKeys(p: string, route = ''): Promise<string[]> {
  return storedEntries(redis, `${p}res:${route}*`)
}

type Verdict = 'HIT' | 'MISS' | 'STALE' | 'BYPASS'

/** RFC 9211 Cache-Status values that say the same as each X-Cache verdict. */
const CACHE_STATUS: Record<Verdict, RegExp> = {
  HIT: /^larder; hit(?!.*fwd=)/,
  STALE: /^larder; hit; fwd=stale/,
  MISS: /^larder; fwd=miss(;|$)/,
  BYPASS: /^larder; fwd=(bypass|method)(;|$)/,
}

/** Asserts X-Cache and Cache-Status agree on `expected` (and, for a BYPASS, on why). */
function verdict(
  t: Test,
  response: LightMyRequestResponse,
  expected: Verdict,
  what: string,
  detail?: string,
): void {
  t.equal(response.headers['x-cache'], expected, `${what}: X-Cache ${expected}`)
  const status = String(response.headers['cache-status'] ?? '')
  t.match(status, CACHE_STATUS[expected], `${what}: Cache-Status says ${expected} too (${status})`)
  if (detail !== undefined) t.match(status, `detail=${detail}`, `${what}: Cache-Status detail=${detail}`)
}

/** Repeats a GET until `accept` likes the response (polling a TTL or an Age), and returns that response. */
async function injectUntil(
  fastify: FastifyInstance,
  url: string,
  accept: (response: LightMyRequestResponse) => boolean,
  message: string,
): Promise<LightMyRequestResponse> {
  let last: LightMyRequestResponse | undefined
  await waitFor(
    async () => {
      last = await fastify.inject(url)
      return accept(last)
    },
    { timeout: 3000, interval: 50, message },
  )
  if (last === undefined) throw new Error(message)
  return last
}

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name]
  return typeof value === 'string' ? value : undefined
}

// ---------------------------------------------------------------------------------------------------
// 1. MISS then HIT

for (const mode of MODES) {
  t.test(`first GET is a MISS, the second a HIT without the handler (${mode})`, async (t) => {
    const options = modeOptions(mode, 'http-hit')
    const fastify = await app(t, options)
    let calls = 0
    fastify.get('/products/:id', { config: { cache: { ttl: '10m' } } }, async (request) => {
      calls++
      return { id: Number((request.params as { id: string }).id), name: 'Darjeeling', price: 12.5 }
    })

    const first = await fastify.inject('/products/7')
    t.equal(first.statusCode, 200, 'first: 200')
    verdict(t, first, 'MISS', 'first')
    t.equal(calls, 1, 'first: the handler ran')
    t.match(first.headers.etag, /^"[^"]+"$/, 'first: a strong ETag')
    t.equal(first.headers.age, '0', 'first: Age 0')

    const second = await fastify.inject('/products/7')
    verdict(t, second, 'HIT', 'second')
    t.equal(calls, 1, 'second: the handler did not run')
    t.ok(second.rawPayload.equals(first.rawPayload), 'second: byte-identical body')
    t.equal(second.statusCode, first.statusCode, 'second: same status')
    t.equal(second.headers['content-type'], first.headers['content-type'], 'second: same content-type')
    t.equal(second.headers.etag, first.headers.etag, 'second: same ETag')
    t.match(second.headers.age, /^\d+$/, 'second: an Age header in whole seconds')

    const other = await fastify.inject('/products/8')
    verdict(t, other, 'MISS', 'another id')
    t.equal(calls, 2, 'another id runs the handler')
    t.not(other.headers.etag, first.headers.etag, 'another body, another ETag')

    const aged = await injectUntil(
      fastify,
      '/products/7',
      (response) => Number(response.headers.age) >= 1,
      'Age never reached 1 second',
    )
    verdict(t, aged, 'HIT', 'a second later')
    t.equal(calls, 2, 'a second later: still the first body, the handler did not run again')
    t.ok(aged.rawPayload.equals(first.rawPayload), 'a second later: same bytes')

    if (options.prefix !== undefined) {
      const p = options.prefix
      const stored = await waitFor(async () => (await entryKeys(p, '/products/:id')).length === 2, {
        message: 'the two entries never reached Redis',
      })
      t.ok(stored, 'both entries are in Redis under the prefix')
      // Another instance (an empty L1, like another process) is served from Redis without its handler.
      const other = await app(t, { ...options })
      let otherCalls = 0
      other.get('/products/:id', { config: { cache: { ttl: '10m' } } }, async () => {
        otherCalls++
        return { from: 'the other instance' }
      })
      const fromRedis = await other.inject('/products/7')
      verdict(t, fromRedis, 'HIT', 'another instance')
      t.equal(otherCalls, 0, 'another instance: its handler did not run')
      t.ok(fromRedis.rawPayload.equals(first.rawPayload), 'another instance: byte-identical body')
      t.equal(fromRedis.headers.etag, first.headers.etag, 'another instance: same ETag')
      t.equal(
        fromRedis.headers['content-type'],
        first.headers['content-type'],
        'another instance: same content-type',
      )
      t.ok(Number(fromRedis.headers.age) >= 1, 'another instance: Age counts from when it was stored')
    }
  })
}

// ---------------------------------------------------------------------------------------------------
// 2. HEAD

for (const mode of MODES) {
  t.test(`HEAD is served from the GET entry, with no body (${mode})`, async (t) => {
    const fastify = await app(t, modeOptions(mode, 'http-head'))
    let calls = 0
    fastify.get('/teas/:id', { config: { cache: { ttl: '10m' } } }, async (request) => {
      calls++
      return { id: (request.params as { id: string }).id, name: 'Sencha' }
    })

    const get = await fastify.inject('/teas/1')
    verdict(t, get, 'MISS', 'GET')
    const head = await fastify.inject({ method: 'HEAD', url: '/teas/1' })
    t.equal(head.statusCode, 200, 'HEAD: 200')
    verdict(t, head, 'HIT', 'HEAD after GET')
    t.equal(head.body, '', 'HEAD: no body')
    t.equal(head.headers['content-type'], get.headers['content-type'], 'HEAD: the GET content-type')
    t.equal(head.headers.etag, get.headers.etag, 'HEAD: the GET ETag')
    t.equal(calls, 1, 'HEAD: the handler did not run')

    // A HEAD on an empty key runs the handler but must not store a bodiless entry for GETs.
    const coldHead = await fastify.inject({ method: 'HEAD', url: '/teas/2' })
    t.equal(coldHead.statusCode, 200, 'HEAD first: 200')
    t.equal(coldHead.body, '', 'HEAD first: no body')
    t.equal(calls, 2, 'HEAD first: the handler ran')
    const afterHead = await fastify.inject('/teas/2')
    verdict(t, afterHead, 'MISS', 'GET after a HEAD on an empty key')
    t.same(afterHead.json(), { id: '2', name: 'Sencha' }, 'GET after HEAD: the full body')
    const again = await fastify.inject('/teas/2')
    verdict(t, again, 'HIT', 'GET again')
    t.same(again.json(), { id: '2', name: 'Sencha' }, 'GET again: the full body from the cache')
  })
}

for (const mode of MODES) {
  t.test(
    `a HEAD on an empty key does not break single-flight for the GETs beside it (${mode})`,
    async (t) => {
      const fastify = await app(t, modeOptions(mode, 'http-head-burst'))
      let calls = 0
      fastify.get('/slow', { config: { cache: { ttl: '10m' } } }, async () => {
        calls++
        await new Promise((resolve) => setTimeout(resolve, 50))
        return { slow: true }
      })
      await fastify.ready()
      const head = fastify.inject({ method: 'HEAD', url: '/slow' })
      const gets = Array.from({ length: 5 }, () => fastify.inject('/slow'))
      const [headResponse, ...getResponses] = await Promise.all([head, ...gets])
      t.equal(headResponse?.body, '', 'HEAD: no body')
      for (const [i, response] of getResponses.entries()) {
        t.same(response.json(), { slow: true }, `GET ${i}: the body`)
      }
      const verdicts = getResponses.map((response) => response.headers['x-cache']).sort()
      t.same(verdicts, ['HIT', 'HIT', 'HIT', 'HIT', 'MISS'], 'one GET loaded, the others shared its response')
      t.equal(calls, 2, 'the handler ran for the HEAD and once for the five GETs')
    },
  )
}

// ---------------------------------------------------------------------------------------------------
// 3. If-None-Match

for (const mode of MODES) {
  t.test(`If-None-Match: 304 for this URL's ETag only (${mode})`, async (t) => {
    const fastify = await app(t, modeOptions(mode, 'http-304'))
    let calls = 0
    fastify.get('/items/:id', { config: { cache: { ttl: '10m' } } }, async (request) => {
      calls++
      return { id: (request.params as { id: string }).id, body: 'a body unique to this id' }
    })

    const one = await fastify.inject('/items/1')
    verdict(t, one, 'MISS', 'item 1')
    const etag = one.headers.etag as string
    t.match(etag, /^"[^"]+"$/, 'item 1 has a strong ETag')

    const conditional = await fastify.inject({ url: '/items/1', headers: { 'if-none-match': etag } })
    t.equal(conditional.statusCode, 304, 'matching ETag: 304')
    t.equal(conditional.body, '', '304: no body')
    t.equal(conditional.headers.etag, etag, '304: carries the ETag')
    verdict(t, conditional, 'HIT', '304')
    t.equal(calls, 1, '304: the handler was not called')

    for (const [form, value] of [
      ['weak', `W/${etag}`],
      ['in a list', `"nope", ${etag}, "other"`],
      ['weak in a list', `"nope",W/${etag}`],
      ['*', '*'],
    ] as const) {
      const response = await fastify.inject({ url: '/items/1', headers: { 'if-none-match': value } })
      t.equal(response.statusCode, 304, `${form} (${value}): 304`)
      t.equal(response.body, '', `${form}: no body`)
    }
    t.equal(calls, 1, 'the handler was never called for a conditional request')

    const stale = await fastify.inject({
      url: '/items/1',
      headers: { 'if-none-match': '"not-it", W/"nor-this"' },
    })
    t.equal(stale.statusCode, 200, 'a non-matching list: 200')
    t.ok(stale.rawPayload.equals(one.rawPayload), 'a non-matching list: the full cached body')
    verdict(t, stale, 'HIT', 'non-matching list')

    // Item 1's ETag sent for item 2: never a 304, whether item 2 is cached or not.
    const twoCold = await fastify.inject({ url: '/items/2', headers: { 'if-none-match': etag } })
    t.equal(twoCold.statusCode, 200, "another URL's ETag on an empty key: 200")
    t.same(twoCold.json(), { id: '2', body: 'a body unique to this id' }, 'item 2 body')
    verdict(t, twoCold, 'MISS', "another URL's ETag on an empty key")
    const twoCached = await fastify.inject({ url: '/items/2', headers: { 'if-none-match': etag } })
    t.equal(twoCached.statusCode, 200, "another URL's ETag on a cached key: 200, no cross-URL 304")
    t.same(twoCached.json(), { id: '2', body: 'a body unique to this id' }, 'item 2 body from the cache')
    verdict(t, twoCached, 'HIT', "another URL's ETag on a cached key")
    t.not(twoCached.headers.etag, etag, 'item 2 has its own ETag')
    const twoOwn = await fastify.inject({
      url: '/items/2',
      headers: { 'if-none-match': twoCached.headers.etag as string },
    })
    t.equal(twoOwn.statusCode, 304, "item 2's own ETag: 304")
    t.equal(calls, 2, 'the handler ran once per item')
  })
}

// ---------------------------------------------------------------------------------------------------
// 4. Cache-Control

t.test('Cache-Control tells downstream caches the route TTLs', async (t) => {
  const fastify = await app(t, modeOptions('L1 + Redis', 'http-cc'))
  fastify.get(
    '/plain/:id',
    { config: { cache: { ttl: '10m', staleWhileRevalidate: '1m', staleIfError: '1h', tags: ['plain'] } } },
    async () => ({ ok: true }),
  )
  fastify.get(
    '/cdn/:id',
    {
      config: {
        cache: {
          ttl: '10m',
          staleWhileRevalidate: '30s',
          tags: ['product:{params.id}', 'products'],
          cdn: true,
        },
      },
    },
    async () => ({ ok: true }),
  )
  fastify.get(
    '/private',
    {
      config: {
        cache: { ttl: '5m', private: (request) => header(request, 'x-user'), cdn: true, tags: ['me'] },
      },
    },
    async (request) => ({ user: header(request, 'x-user') }),
  )

  for (const expected of ['MISS', 'HIT'] as const) {
    const plain = await fastify.inject('/plain/1')
    verdict(t, plain, expected, `plain ${expected}`)
    t.equal(
      plain.headers['cache-control'],
      'public, max-age=600, stale-while-revalidate=60, stale-if-error=3600',
      `plain ${expected}: max-age, stale-while-revalidate, stale-if-error`,
    )
    t.notOk('surrogate-key' in plain.headers, `plain ${expected}: no Surrogate-Key without cdn`)
    t.notOk('cache-tag' in plain.headers, `plain ${expected}: no Cache-Tag without cdn`)

    const cdn = await fastify.inject('/cdn/42')
    verdict(t, cdn, expected, `cdn ${expected}`)
    t.equal(
      cdn.headers['cache-control'],
      'public, max-age=600, s-maxage=600, stale-while-revalidate=30',
      `cdn ${expected}: s-maxage as well`,
    )
    t.equal(
      cdn.headers['surrogate-key'],
      'product:42 products',
      `cdn ${expected}: Surrogate-Key, resolved tags`,
    )
    t.equal(cdn.headers['cache-tag'], 'product:42,products', `cdn ${expected}: Cache-Tag, resolved tags`)

    const mine = await fastify.inject({ url: '/private', headers: { 'x-user': 'alice' } })
    verdict(t, mine, expected, `private ${expected}`)
    t.equal(
      mine.headers['cache-control'],
      'private, max-age=300',
      `private ${expected}: private, no s-maxage`,
    )
  }
  const other = await fastify.inject('/cdn/43')
  t.equal(other.headers['surrogate-key'], 'product:43 products', 'tags resolved per request')
})

// ---------------------------------------------------------------------------------------------------
// 5. Never cached: BYPASS

t.test('POST and PUT on a cached route are BYPASS and never fill the GET entry', async (t) => {
  const fastify = await app(t, modeOptions('L1 + Redis', 'http-method'))
  let calls = 0
  fastify.route({
    method: ['GET', 'POST', 'PUT'],
    url: '/orders',
    config: { cache: { ttl: '10m' } },
    handler: async (request) => {
      calls++
      return { method: request.method, calls }
    },
  })

  const post = await fastify.inject({ method: 'POST', url: '/orders', payload: { a: 1 } })
  verdict(t, post, 'BYPASS', 'POST')
  t.same(post.json(), { method: 'POST', calls: 1 }, 'POST answered by the handler')
  const put = await fastify.inject({ method: 'PUT', url: '/orders', payload: { a: 1 } })
  verdict(t, put, 'BYPASS', 'PUT')
  const postAgain = await fastify.inject({ method: 'POST', url: '/orders', payload: { a: 1 } })
  verdict(t, postAgain, 'BYPASS', 'POST again')
  t.same(postAgain.json(), { method: 'POST', calls: 3 }, 'POST again ran the handler')

  const get = await fastify.inject('/orders')
  verdict(t, get, 'MISS', 'GET after POSTs (the POSTs stored nothing)')
  t.same(get.json(), { method: 'GET', calls: 4 }, 'GET ran the handler')
  const getAgain = await fastify.inject('/orders')
  verdict(t, getAgain, 'HIT', 'GET again')
  t.same(getAgain.json(), { method: 'GET', calls: 4 }, 'GET again: the cached GET body')
  const postAfter = await fastify.inject({ method: 'POST', url: '/orders', payload: { a: 1 } })
  verdict(t, postAfter, 'BYPASS', 'POST with a cached GET entry')
  t.same(postAfter.json(), { method: 'POST', calls: 5 }, 'POST is never served the GET entry')
})

t.test('only cacheable statuses are stored', async (t) => {
  const fastify = await app(t, modeOptions('L1 + Redis', 'http-status'))
  const calls = new Map<number, number>()
  fastify.get('/status/:code', { config: { cache: { ttl: '10m' } } }, async (request, reply) => {
    const code = Number((request.params as { code: string }).code)
    calls.set(code, (calls.get(code) ?? 0) + 1)
    reply.code(code)
    if (code >= 300 && code < 400) reply.header('location', `/moved/${code}`)
    if (code === 204) return reply.send()
    return { code }
  })
  fastify.get('/throws', { config: { cache: { ttl: '10m' } } }, async () => {
    calls.set(-1, (calls.get(-1) ?? 0) + 1)
    throw new Error('boom')
  })

  for (const code of [201, 202, 302, 303, 307, 400, 403, 500, 503]) {
    for (const attempt of [1, 2]) {
      const response = await fastify.inject(`/status/${code}`)
      t.equal(response.statusCode, code, `${code} #${attempt}: the handler's status`)
      verdict(t, response, 'BYPASS', `${code} #${attempt}`, `status-${code}`)
    }
    t.equal(calls.get(code), 2, `${code}: not cached, the handler ran both times`)
  }
  for (const attempt of [1, 2]) {
    const response = await fastify.inject('/throws')
    t.equal(response.statusCode, 500, `thrown error #${attempt}: 500`)
    verdict(t, response, 'BYPASS', `thrown error #${attempt}`, 'status-500')
  }
  t.equal(calls.get(-1), 2, 'a thrown error is not cached')

  for (const code of [200, 203, 204, 300, 301, 308, 410]) {
    const first = await fastify.inject(`/status/${code}`)
    verdict(t, first, 'MISS', `${code} first`)
    const second = await fastify.inject(`/status/${code}`)
    verdict(t, second, 'HIT', `${code} second`)
    t.equal(second.statusCode, code, `${code}: the cached status`)
    t.equal(second.body, first.body, `${code}: the cached body`)
    if (code >= 300 && code < 400)
      t.equal(second.headers.location, `/moved/${code}`, `${code}: Location kept`)
    t.equal(calls.get(code), 1, `${code}: cached, the handler ran once`)
  }
})

for (const mode of MODES) {
  t.test(`a 404 lives notFoundTtl, a 200 of the same route its ttl (${mode})`, async (t) => {
    const fastify = await app(t, modeOptions(mode, 'http-404'))
    const calls = { present: 0, missing: 0 }
    fastify.get(
      '/things/:id',
      { config: { cache: { ttl: '10m', notFoundTtl: 150 } } },
      async (request, reply) => {
        const { id } = request.params as { id: 'present' | 'missing' }
        calls[id]++
        if (id === 'missing') return reply.code(404).send({ message: 'no such thing' })
        return { id }
      },
    )

    verdict(t, await fastify.inject('/things/present'), 'MISS', '200 first')
    const missing = await fastify.inject('/things/missing')
    t.equal(missing.statusCode, 404, '404 first: 404')
    verdict(t, missing, 'MISS', '404 first')
    const cached = await fastify.inject('/things/missing')
    t.equal(cached.statusCode, 404, '404 second: 404')
    verdict(t, cached, 'HIT', '404 second, within notFoundTtl')
    t.same(cached.json(), { message: 'no such thing' }, '404 second: the cached body')
    t.equal(calls.missing, 1, 'the 404 was cached')

    const expired = await injectUntil(
      fastify,
      '/things/missing',
      (response) => response.headers['x-cache'] === 'MISS',
      'the 404 never expired',
    )
    t.equal(expired.statusCode, 404, 'after notFoundTtl: 404 again')
    t.equal(calls.missing, 2, 'after notFoundTtl: the handler ran again')
    const present = await fastify.inject('/things/present')
    verdict(t, present, 'HIT', 'the 200 stored before the 404 outlives it')
    t.equal(calls.present, 1, 'the 200 was not reloaded')
  })
}

t.test("a cached 404 tells downstream caches notFoundTtl, not the route's ttl", async (t) => {
  const fastify = await app(t)
  fastify.get(
    '/gone/:id',
    { config: { cache: { ttl: '10m', notFoundTtl: '30s', cdn: true } } },
    async (request, reply) => {
      if ((request.params as { id: string }).id === 'nope') return reply.code(404).send({ message: 'nope' })
      return { ok: true }
    },
  )
  for (const expected of ['MISS', 'HIT'] as const) {
    const notFound = await fastify.inject('/gone/nope')
    verdict(t, notFound, expected, `404 ${expected}`)
    t.equal(
      notFound.headers['cache-control'],
      'public, max-age=30, s-maxage=30',
      `404 ${expected}: max-age and s-maxage are notFoundTtl`,
    )
    const found = await fastify.inject('/gone/yes')
    t.equal(
      found.headers['cache-control'],
      'public, max-age=600, s-maxage=600',
      `200 ${expected}: the route ttl`,
    )
  }
})

t.test('a response that sets a cookie or says no-store/private is not cached', async (t) => {
  const options = modeOptions('L1 + Redis', 'http-refuse')
  const fastify = await app(t, options)
  const calls = { cookie: 0, noStore: 0, private: 0 }
  fastify.get('/cookie', { config: { cache: { ttl: '10m' } } }, async (_request, reply) => {
    calls.cookie++
    reply.header('set-cookie', `sid=${calls.cookie}; HttpOnly`)
    return { calls: calls.cookie }
  })
  fastify.get('/no-store', { config: { cache: { ttl: '10m' } } }, async (_request, reply) => {
    calls.noStore++
    reply.header('cache-control', 'no-store')
    return { calls: calls.noStore }
  })
  fastify.get('/private', { config: { cache: { ttl: '10m' } } }, async (_request, reply) => {
    calls.private++
    reply.header('cache-control', 'private, max-age=60')
    return { calls: calls.private }
  })

  for (const attempt of [1, 2]) {
    const cookie = await fastify.inject('/cookie')
    verdict(t, cookie, 'BYPASS', `Set-Cookie #${attempt}`, 'set-cookie')
    t.equal(
      cookie.headers['set-cookie'],
      `sid=${attempt}; HttpOnly`,
      `Set-Cookie #${attempt}: the cookie reaches the client`,
    )
    t.same(cookie.json(), { calls: attempt }, `Set-Cookie #${attempt}: a fresh body`)

    const noStore = await fastify.inject('/no-store')
    verdict(t, noStore, 'BYPASS', `no-store #${attempt}`, 'no-store')
    t.equal(
      noStore.headers['cache-control'],
      'no-store',
      `no-store #${attempt}: the handler's Cache-Control kept`,
    )
    t.same(noStore.json(), { calls: attempt }, `no-store #${attempt}: a fresh body`)

    const priv = await fastify.inject('/private')
    verdict(t, priv, 'BYPASS', `private #${attempt}`, 'private')
    t.equal(
      priv.headers['cache-control'],
      'private, max-age=60',
      `private #${attempt}: the handler's Cache-Control kept`,
    )
    t.same(priv.json(), { calls: attempt }, `private #${attempt}: a fresh body`)
  }
  t.same(calls, { cookie: 2, noStore: 2, private: 2 }, 'every handler ran twice')
  t.same(await entryKeys(options.prefix as string), [], 'nothing was stored in Redis')
})

interface Echo {
  auth: string | null
  cookie: string | null
}

t.test('requests with Authorization or a Cookie bypass unless the route opts in', async (t) => {
  const fastify = await app(t, modeOptions('L1 + Redis', 'http-credentials'))
  let calls = 0
  const echo = async (request: FastifyRequest): Promise<Echo> => {
    calls++
    return { auth: header(request, 'authorization') ?? null, cookie: header(request, 'cookie') ?? null }
  }
  fastify.get('/public', { config: { cache: { ttl: '10m' } } }, echo)
  fastify.get('/by-token', { config: { cache: { ttl: '10m', vary: ['authorization'] } } }, echo)
  fastify.get(
    '/per-user',
    { config: { cache: { ttl: '10m', private: (request) => header(request, 'x-user') } } },
    echo,
  )

  const anonymous = await fastify.inject('/public')
  verdict(t, anonymous, 'MISS', 'anonymous')
  verdict(t, await fastify.inject('/public'), 'HIT', 'anonymous again')
  for (const headers of [{ authorization: 'Bearer alice' }, { cookie: 'sid=alice' }]) {
    const name = Object.keys(headers)[0] as string
    for (const attempt of [1, 2]) {
      const before = calls
      const response = await fastify.inject({ url: '/public', headers })
      verdict(t, response, 'BYPASS', `${name} #${attempt}`, 'credentials')
      t.equal(calls, before + 1, `${name} #${attempt}: the handler ran although the URL is cached`)
      t.not(response.body, anonymous.body, `${name} #${attempt}: not the anonymous body`)
    }
  }

  // vary: ['authorization'] opts in to Authorization: one entry per token.
  const alice = await fastify.inject({ url: '/by-token', headers: { authorization: 'Bearer alice' } })
  verdict(t, alice, 'MISS', 'vary authorization, alice')
  const aliceAgain = await fastify.inject({ url: '/by-token', headers: { authorization: 'Bearer alice' } })
  verdict(t, aliceAgain, 'HIT', 'vary authorization, alice again')
  t.equal(aliceAgain.json<Echo>().auth, 'Bearer alice', "alice gets alice's body")
  const bob = await fastify.inject({ url: '/by-token', headers: { authorization: 'Bearer bob' } })
  verdict(t, bob, 'MISS', 'vary authorization, bob')
  t.equal(bob.json<Echo>().auth, 'Bearer bob', "bob gets bob's body, never alice's")
  // ... but not to session cookies, which the key does not vary on.
  verdict(t, await fastify.inject('/by-token'), 'MISS', 'vary authorization, anonymous')
  for (const attempt of [1, 2]) {
    const session = await fastify.inject({ url: '/by-token', headers: { cookie: `sid=carol${attempt}` } })
    verdict(t, session, 'BYPASS', `vary authorization, a session cookie #${attempt}`, 'credentials')
    t.equal(session.json<Echo>().cookie, `sid=carol${attempt}`, `session cookie #${attempt}: its own body`)
  }

  // private: cached per user, credentials or not.
  for (const user of ['alice', 'bob']) {
    const headers = { 'x-user': user, cookie: `sid=${user}`, authorization: `Bearer ${user}` }
    const first = await fastify.inject({ url: '/per-user', headers })
    verdict(t, first, 'MISS', `private, ${user}`)
    const second = await fastify.inject({ url: '/per-user', headers })
    verdict(t, second, 'HIT', `private, ${user} again`)
    t.equal(second.json<Echo>().cookie, `sid=${user}`, `private: ${user} gets ${user}'s body`)
  }
})

t.test('every response of a cached route carries Cache-Status with the X-Cache verdict', async (t) => {
  const fastify = await app(t)
  fastify.route({
    method: ['GET', 'POST'],
    url: '/every/:id',
    config: { cache: { ttl: '10m' } },
    handler: async (request, reply) => {
      if ((request.params as { id: string }).id === 'error') reply.code(500)
      return { ok: true }
    },
  })
  const responses: Array<[string, LightMyRequestResponse]> = [
    ['MISS', await fastify.inject('/every/1')],
    ['HIT', await fastify.inject('/every/1')],
    ['HEAD', await fastify.inject({ method: 'HEAD', url: '/every/1' })],
    ['304', await fastify.inject({ url: '/every/1', headers: { 'if-none-match': '*' } })],
    ['POST', await fastify.inject({ method: 'POST', url: '/every/1' })],
    ['500', await fastify.inject('/every/error')],
    ['Authorization', await fastify.inject({ url: '/every/1', headers: { authorization: 'Basic eDp5' } })],
  ]
  for (const [what, response] of responses) {
    const xCache = String(response.headers['x-cache'])
    t.ok(xCache in CACHE_STATUS, `${what}: X-Cache is one of HIT/MISS/STALE/BYPASS (${xCache})`)
    verdict(t, response, xCache as Verdict, what)
  }
})

// ---------------------------------------------------------------------------------------------------
// 9. Bodies

for (const mode of MODES) {
  t.test(`bodies: objects, strings and Buffers round-trip (${mode})`, async (t) => {
    const fastify = await app(t, modeOptions(mode, 'http-bodies'))
    const calls = { object: 0, counted: 0, string: 0, buffer: 0 }
    let serialized = 0
    fastify.get(
      '/object',
      {
        config: { cache: { ttl: '10m' } },
        schema: {
          response: {
            200: { type: 'object', properties: { id: { type: 'integer' }, name: { type: 'string' } } },
          },
        },
      },
      async () => {
        calls.object++
        return { id: 1, name: 'Oolong', passwordHash: 'must never be sent' }
      },
    )
    fastify.get(
      '/counted',
      {
        config: { cache: { ttl: '10m' } },
        schema: { response: { 200: { type: 'object' } } },
        serializerCompiler: () => (data) => {
          serialized++
          return JSON.stringify({ serializedBy: 'route', data })
        },
      },
      async () => {
        calls.counted++
        return { n: 1 }
      },
    )
    fastify.get('/string', { config: { cache: { ttl: '10m' } } }, async (_request, reply) => {
      calls.string++
      reply.type('text/plain; charset=utf-8')
      return 'plain text, ünïcödé ✓\nsecond line'
    })
    const binary = Buffer.from([0x00, 0xff, 0x0a, 0x0d, 0x80, 0x7b, 0x22, 0x0a, 0x00, 0xfe, 0xc3, 0x28])
    fastify.get('/buffer', { config: { cache: { ttl: '10m' } } }, async (_request, reply) => {
      calls.buffer++
      reply.type('image/x-test')
      return binary
    })

    for (const expected of ['MISS', 'HIT'] as const) {
      const object = await fastify.inject('/object')
      verdict(t, object, expected, `object ${expected}`)
      t.equal(object.body, '{"id":1,"name":"Oolong"}', `object ${expected}: the schema serializer's output`)
      t.equal(object.headers['content-type'], 'application/json; charset=utf-8', `object ${expected}: JSON`)

      const counted = await fastify.inject('/counted')
      verdict(t, counted, expected, `counted ${expected}`)
      t.equal(
        counted.body,
        '{"serializedBy":"route","data":{"n":1}}',
        `counted ${expected}: the route serializer's output`,
      )

      const text = await fastify.inject('/string')
      verdict(t, text, expected, `string ${expected}`)
      t.equal(text.body, 'plain text, ünïcödé ✓\nsecond line', `string ${expected}: same text`)
      t.equal(text.headers['content-type'], 'text/plain; charset=utf-8', `string ${expected}: content-type`)

      const buffer = await fastify.inject('/buffer')
      verdict(t, buffer, expected, `Buffer ${expected}`)
      t.ok(buffer.rawPayload.equals(binary), `Buffer ${expected}: the same bytes`)
      t.equal(buffer.headers['content-type'], 'image/x-test', `Buffer ${expected}: content-type`)
    }
    t.same(calls, { object: 1, counted: 1, string: 1, buffer: 1 }, 'every handler ran once')
    t.equal(serialized, 1, 'the body was serialized once, by the route serializer, and never again on a HIT')
  })
}

t.test('streams and bodies above maxEntryBytes are not cached', async (t) => {
  const options = { ...modeOptions('L1 + Redis', 'http-large'), maxEntryBytes: '1kb' }
  const fastify = await app(t, options)
  const calls = { stream: 0, big: 0, small: 0 }
  fastify.get('/stream', { config: { cache: { ttl: '10m' } } }, async (_request, reply) => {
    calls.stream++
    reply.type('text/plain')
    return Readable.from([Buffer.from('chunk one, '), Buffer.from('chunk two')])
  })
  fastify.get('/big', { config: { cache: { ttl: '10m' } } }, async (_request, reply) => {
    calls.big++
    reply.type('text/plain')
    return 'x'.repeat(2048)
  })
  fastify.get('/small', { config: { cache: { ttl: '10m' } } }, async (_request, reply) => {
    calls.small++
    reply.type('text/plain')
    return 'x'.repeat(1000)
  })

  for (const attempt of [1, 2]) {
    const stream = await fastify.inject('/stream')
    t.equal(stream.statusCode, 200, `stream #${attempt}: 200`)
    t.equal(stream.body, 'chunk one, chunk two', `stream #${attempt}: the whole body`)
    verdict(t, stream, 'BYPASS', `stream #${attempt}`, 'stream')

    const big = await fastify.inject('/big')
    t.equal(big.body, 'x'.repeat(2048), `2 KiB body #${attempt}: the whole body`)
    verdict(t, big, 'BYPASS', `2 KiB body #${attempt}`, 'too-large')
  }
  t.equal(calls.stream, 2, 'a stream is not cached: the handler ran twice')
  t.equal(calls.big, 2, 'a body above maxEntryBytes is not cached: the handler ran twice')

  verdict(t, await fastify.inject('/small'), 'MISS', '1000-byte body')
  verdict(t, await fastify.inject('/small'), 'HIT', '1000-byte body again')
  t.equal(calls.small, 1, 'a body under maxEntryBytes is cached')
  const p = options.prefix as string
  await waitFor(async () => (await entryKeys(p, '/small')).length === 1, {
    message: 'the small entry never reached Redis',
  })
  t.same(await entryKeys(p, '/stream'), [], 'no stream entry in Redis')
  t.same(await entryKeys(p, '/big'), [], 'no oversized entry in Redis')
})
