import { setTimeout as sleep } from 'node:timers/promises'
import responseCache, { type ResponseCacheOptions } from '@larder/response-cache'
import { cleanupPrefix, sharedRedisUrl, uniquePrefix, waitFor } from '@larder/test-support'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'

// Issue 3, point 8: stale-while-revalidate answers at once from the stale entry and refreshes it once
// in the background; stale-if-error answers with the stale entry when the handler fails.

interface Tier {
  name: string
  options(t: Test): ResponseCacheOptions
}

const TIERS: Tier[] = [
  { name: 'L1 only', options: () => ({}) },
  {
    name: 'Redis, l1: false',
    options: (t) => {
      const prefix = uniquePrefix('rc-stale')
      const admin = new Redis(sharedRedisUrl)
      t.teardown(async () => {
        await cleanupPrefix(admin, prefix)
        await admin.quit()
      })
      return { redis: sharedRedisUrl, prefix, l1: false }
    },
  },
]

/** Longer than the routes' 100 ms TTL: the entry is past its freshness after this. */
const PAST_TTL_MS = 150

async function app(t: Test, tier: Tier): Promise<FastifyInstance> {
  const fastify = Fastify()
  await fastify.register(responseCache, tier.options(t))
  t.teardown(() => fastify.close())
  return fastify
}

/** A promise the test resolves when it chooses: holds a handler mid-call. */
function gate(): { opened: Promise<void>; open(): void } {
  let open = () => {}
  const opened = new Promise<void>((resolve) => {
    open = resolve
  })
  return { opened, open }
}

for (const tier of TIERS) {
  t.test(`${tier.name}: stale-while-revalidate serves STALE at once and refreshes once`, async (t) => {
    const fastify = await app(t, tier)
    let calls = 0
    const refreshGate = gate()
    let refreshFinished = false
    fastify.get('/news', { config: { cache: { ttl: '100ms', staleWhileRevalidate: '5s' } } }, async () => {
      const call = ++calls
      if (call > 1) {
        // The refresh is held until the test has seen the stale answers.
        await refreshGate.opened
        refreshFinished = true
      }
      return { version: call }
    })
    await fastify.ready()

    const first = await fastify.inject('/news')
    t.equal(first.headers['x-cache'], 'MISS', 'the first request is a MISS')
    t.same(first.json(), { version: 1 }, 'with the first body')
    await sleep(PAST_TTL_MS)

    const stale = await fastify.inject('/news')
    t.equal(stale.statusCode, 200, 'the request after the TTL gets a 200')
    t.equal(stale.headers['x-cache'], 'STALE', 'marked X-Cache: STALE')
    t.match(stale.headers['cache-status'], /fwd=stale/, 'and Cache-Status says it was stale')
    t.equal(stale.body, first.body, 'with the old body')
    t.notOk(refreshFinished, 'answered while the refresh was still running (it did not wait for it)')
    await waitFor(() => calls === 2, { message: 'the background refresh did not start' })

    const during = await Promise.all([
      fastify.inject('/news'),
      fastify.inject('/news'),
      fastify.inject('/news'),
    ])
    for (const response of during) {
      t.equal(response.headers['x-cache'], 'STALE', 'a request during the refresh is STALE too')
      t.equal(response.body, first.body, 'with the old body')
    }
    t.equal(calls, 2, 'exactly one background refresh ran the handler')

    refreshGate.open()
    const fresh = await waitFor(
      async () => {
        const response = await fastify.inject('/news')
        if (response.headers['x-cache'] !== 'HIT') throw new Error(`X-Cache ${response.headers['x-cache']}`)
        return response
      },
      { message: 'no HIT after the refresh' },
    )
    t.same(fresh.json(), { version: 2 }, 'after the refresh, requests get a HIT with the new body')
    t.equal(fresh.headers.age, '0', 'the refreshed entry is new (Age 0)')
    t.equal(calls, 2, 'the handler ran once for the refresh, and not for the HITs')
  })

  t.test(`${tier.name}: stale-if-error serves the stale body when the handler throws`, async (t) => {
    const fastify = await app(t, tier)
    let calls = 0
    let failing = false
    fastify.get('/prices', { config: { cache: { ttl: '100ms', staleIfError: '5s' } } }, async () => {
      const call = ++calls
      if (failing) throw new Error('database down')
      return { version: call }
    })
    await fastify.ready()

    const first = await fastify.inject('/prices')
    t.equal(first.headers['x-cache'], 'MISS', 'the first request is a MISS')
    await sleep(PAST_TTL_MS)

    failing = true
    const stale = await fastify.inject('/prices')
    t.equal(calls, 2, 'the handler ran (and threw)')
    t.equal(stale.statusCode, 200, 'the client gets 200, not the error')
    t.equal(stale.headers['x-cache'], 'STALE', 'marked X-Cache: STALE')
    t.equal(stale.body, first.body, 'with the old body')
    t.equal(stale.headers['content-type'], first.headers['content-type'], 'and the old content-type')
    t.equal(stale.headers.etag, first.headers.etag, 'and the old ETag')

    failing = false
    const recovered = await fastify.inject('/prices')
    t.equal(recovered.statusCode, 200, 'once the handler works again it answers')
    t.equal(recovered.headers['x-cache'], 'MISS', 'with a MISS that stores the new body')
    t.same(recovered.json(), { version: 3 }, 'the new body')
    const hit = await fastify.inject('/prices')
    t.equal(hit.headers['x-cache'], 'HIT', 'then a HIT')
    t.same(hit.json(), { version: 3 }, 'with the new body')
  })

  t.test(`${tier.name}: stale-if-error serves the stale body when the handler answers 503`, async (t) => {
    const fastify = await app(t, tier)
    let calls = 0
    let failing = false
    fastify.get(
      '/stock',
      { config: { cache: { ttl: '100ms', staleIfError: '5s' } } },
      async (_request, reply) => {
        const call = ++calls
        if (failing) return reply.code(503).header('retry-after', '5').send({ error: 'busy' })
        return { version: call }
      },
    )
    await fastify.ready()

    const first = await fastify.inject('/stock')
    await sleep(PAST_TTL_MS)
    failing = true
    const stale = await fastify.inject('/stock')
    t.equal(calls, 2, 'the handler ran (and answered 503)')
    t.equal(stale.statusCode, 200, 'the client gets 200, not the 503')
    t.equal(stale.headers['x-cache'], 'STALE', 'marked X-Cache: STALE')
    t.equal(stale.body, first.body, 'with the old body')
    t.equal(stale.headers['retry-after'], undefined, "none of the 503's headers leak into the stale answer")
  })

  t.test(`${tier.name}: without staleIfError the client gets the handler's error`, async (t) => {
    const fastify = await app(t, tier)
    let calls = 0
    let failing = false
    fastify.get('/plain', { config: { cache: { ttl: '100ms' } } }, async () => {
      const call = ++calls
      if (failing) throw new Error('database down')
      return { version: call }
    })
    await fastify.ready()

    const first = await fastify.inject('/plain')
    t.equal(first.headers['x-cache'], 'MISS', 'the first request is a MISS')
    await sleep(PAST_TTL_MS)
    failing = true
    const failed = await fastify.inject('/plain')
    t.equal(calls, 2, 'the handler ran (and threw)')
    t.equal(failed.statusCode, 500, 'the client gets the 500')
    t.not(failed.body, first.body, 'not the old body')
    t.not(failed.headers['x-cache'], 'STALE', 'nothing is served stale')
  })
}

t.test('stale-if-error window over: the client gets the error', async (t) => {
  const fastify = await app(t, TIERS[0] as Tier)
  let failing = false
  fastify.get('/short', { config: { cache: { ttl: '50ms', staleIfError: '50ms' } } }, async () => {
    if (failing) throw new Error('database down')
    return { ok: true }
  })
  await fastify.ready()

  t.equal((await fastify.inject('/short')).headers['x-cache'], 'MISS', 'the first request is a MISS')
  await sleep(PAST_TTL_MS)
  failing = true
  const failed = await fastify.inject('/short')
  t.equal(failed.statusCode, 500, 'past ttl + staleIfError the client gets the 500')
})

for (const tier of TIERS) {
  t.test(`${tier.name}: concurrent requests while the handler fails all get the stale body`, async (t) => {
    const fastify = await app(t, tier)
    let calls = 0
    let failing = false
    fastify.get('/busy', { config: { cache: { ttl: '100ms', staleIfError: '5s' } } }, async () => {
      const call = ++calls
      await sleep(20)
      if (failing) throw new Error('database down')
      return { version: call }
    })
    await fastify.ready()

    const first = await fastify.inject('/busy')
    await sleep(PAST_TTL_MS)
    failing = true
    const responses = await Promise.all(Array.from({ length: 10 }, () => fastify.inject('/busy')))
    t.same(
      responses.map((response) => response.statusCode),
      Array(10).fill(200),
      'every concurrent request got a 200',
    )
    t.same(
      responses.map((response) => response.headers['x-cache']),
      Array(10).fill('STALE'),
      'every one marked STALE',
    )
    t.ok(
      responses.every((response) => response.body === first.body),
      'every one with the old body',
    )
    t.equal(calls, 2, 'the failing handler ran once for all of them')
  })

  t.test(
    `${tier.name}: a failed background refresh keeps the stale body; a later one replaces it`,
    async (t) => {
      const fastify = await app(t, tier)
      let calls = 0
      let failing = false
      fastify.get('/feed', { config: { cache: { ttl: '100ms', staleWhileRevalidate: '5s' } } }, async () => {
        const call = ++calls
        if (failing) throw new Error('upstream down')
        return { version: call }
      })
      await fastify.ready()

      const first = await fastify.inject('/feed')
      await sleep(PAST_TTL_MS)
      failing = true
      const stale = await fastify.inject('/feed')
      t.equal(stale.headers['x-cache'], 'STALE', 'after the TTL: STALE')
      await waitFor(() => calls === 2, { message: 'the background refresh did not run' })
      // The failed refresh is over once another request can start a new one.
      const whileFailing = await waitFor(async () => {
        const response = await fastify.inject('/feed')
        if (calls < 3) throw new Error('no second refresh yet')
        return response
      })
      t.equal(whileFailing.statusCode, 200, 'after a failed refresh, requests still get a 200')
      t.equal(whileFailing.headers['x-cache'], 'STALE', 'marked STALE')
      t.equal(whileFailing.body, first.body, 'with the old body (the failure was not stored)')

      failing = false
      const fresh = await waitFor(async () => {
        const response = await fastify.inject('/feed')
        if (response.headers['x-cache'] !== 'HIT') throw new Error(`X-Cache ${response.headers['x-cache']}`)
        return response
      })
      t.equal(fresh.statusCode, 200, 'once the handler works, a refresh succeeds')
      t.not(fresh.body, first.body, 'and requests get a HIT with the new body')
    },
  )
}
