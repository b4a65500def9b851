import { type RedisServer, startRedisServer, uniquePrefix, waitFor } from '@larder/test-support'
import type { LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { cached, logSink, productApp, redisClient, Store } from './fixtures/app.js'

// Issue 4, point 5: Redis stopped during a PUT → the write still answers 2xx, this process's L1 is
// purged at once, the failure is logged at error level and counted, and once Redis is back the retried
// invalidation reaches it: the old entry is no longer served from Redis.

/**
 * A private Redis that keeps its data across stop()/start() (AOF), as a production Redis would: so
 * what is gone after the restart was removed by the retried invalidation, not lost with the process.
 */
async function persistentServer(t: Test): Promise<RedisServer> {
  const server = await startRedisServer({ args: ['--appendonly', 'yes', '--appendfsync', 'always'] })
  t.teardown(() => server.close())
  return server
}

t.test(
  '5. Redis stopped during a PUT: 2xx, L1 purged, and the retry invalidates Redis once it is back',
  async (t) => {
    const server = await persistentServer(t)
    const prefix = uniquePrefix('inv-down')
    const raw = redisClient(t, server.url)
    const store = new Store()
    const log = logSink()
    let stopDuringWrite = false
    // A: L1 on, short Redis timeout and breaker, short retries; it serves the PUT.
    const a = await productApp(t, {
      store,
      prefix,
      redis: server.url,
      engine: { timeout: 100, breaker: { threshold: 3, cooldown: 200 } },
      invalidation: { retry: { minDelay: 50, maxDelay: 200, attempts: 50 } },
      log: { level: 'warn', stream: log.stream },
      afterWrite: async () => {
        if (stopDuringWrite) await server.stop()
      },
    })
    // B: no L1, so every answer of B's is what Redis holds.
    const b = await productApp(t, { store, prefix, redis: server.url, l1: false, engine: { timeout: 100 } })

    t.equal((await a.inject('/products/1')).headers['x-cache'], 'MISS', 'A: product 1 is loaded')
    t.equal((await a.inject('/products/2')).headers['x-cache'], 'MISS', 'A: product 2 is loaded')
    await cached(t, a, '/products/1', 'A: product 1 is cached')
    for (const id of [1, 2]) await cached(t, b, `/products/${id}`, `B: product ${id} is a HIT from Redis`)
    const tagKey = (tag: string) => `${prefix}{t}:${tag}`
    const versionBefore = { 1: await raw.get(tagKey('product:1')), 2: await raw.get(tagKey('product:2')) }
    t.ok(versionBefore[1] && versionBefore[2], 'Redis holds a version of the tags product:1 and product:2')
    const reads = store.reads

    stopDuringWrite = true
    const put = await a.inject({ method: 'PUT', url: '/products/1', payload: { name: 'Green tea' } })
    stopDuringWrite = false
    t.equal(put.statusCode, 200, 'the PUT answers 200 although Redis went down during it')
    t.same(put.json(), { id: 1, name: 'Green tea' }, 'with the written data')
    t.equal(store.writes, 1, 'the write ran once')
    const stats = a.invalidation.stats()
    t.ok(stats.failures > 0, `the failed invalidation is counted (failures: ${stats.failures})`)
    t.equal(stats.abandoned, 0, 'and not given up')
    t.ok(
      log.lines.some(
        (line) => line.level === 50 && line.msg === 'larder: invalidation not confirmed by Redis, retrying',
      ),
      'an error-level log line says the invalidation is being retried',
    )

    const afterOnA = await a.inject('/products/1')
    t.equal(afterOnA.statusCode, 200, 'A: GET /products/1 answers while Redis is down')
    t.equal(afterOnA.headers['x-cache'], 'MISS', "A: a MISS, not a HIT: A's L1 copy was purged")
    t.same(afterOnA.json(), { id: 1, name: 'Green tea' }, 'A: the handler answered with the new data')
    t.equal(store.reads, reads + 1, 'A: the handler ran')

    await server.start()
    const after = redisClient(t, server.url)
    // Redis kept its data across the restart: product 2's entry and tag version are still there...
    t.equal(
      await after.get(tagKey('product:2')),
      versionBefore[2],
      'after the restart: product:2 tag unchanged',
    )
    const entries = await after.keys(`${prefix}res:*`)
    t.equal(entries.length, 2, 'after the restart: both entries are still in Redis')
    // ...and the retried invalidation gives product:1 a new version, which makes its entry unreadable.
    await waitFor(async () => (await after.get(tagKey('product:1'))) !== versionBefore[1], {
      timeout: 10_000,
      message: 'the retried invalidation never reached Redis',
    })
    t.pass('the retried invalidation gave the tag product:1 a new version in Redis')
    await waitFor(() => a.invalidation.stats().pending === 0, { message: 'a retry is still pending' })
    t.equal(a.invalidation.stats().abandoned, 0, 'nothing was abandoned')

    // B reads Redis only: once it talks to Redis again it never gets the old product 1 from it.
    const fresh = (await waitFor(
      async () => {
        const response = await b.inject('/products/1')
        t.same(
          response.json(),
          { id: 1, name: 'Green tea' },
          `B: never the old data (${response.headers['x-cache']})`,
        )
        return response.headers['x-cache'] === 'HIT' && response
      },
      { timeout: 10_000, message: 'B never got a HIT from Redis again' },
    )) as LightMyRequestResponse
    t.same(fresh.json(), { id: 1, name: 'Green tea' }, 'B: a HIT from Redis, of the new data')
    const untouched = await b.inject('/products/2')
    t.equal(untouched.headers['x-cache'], 'HIT', 'B: product 2 is still a HIT from Redis')
    t.same(untouched.json(), { id: 2, name: 'Coffee' }, 'B: with its data')
  },
)

t.test('5b. a retried invalidation is given up after its attempts, logged and counted', async (t) => {
  const server = await startRedisServer()
  t.teardown(() => server.close())
  const log = logSink()
  const a = await productApp(t, {
    store: new Store(),
    prefix: uniquePrefix('inv-abandon'),
    redis: server.url,
    engine: { timeout: 100, breaker: { threshold: 3, cooldown: 200 } },
    invalidation: { retry: { minDelay: 20, maxDelay: 40, attempts: 3 } },
    log: { level: 'error', stream: log.stream },
  })
  await server.stop()
  await a.invalidate({ tags: ['products'] })
  t.equal(a.invalidation.stats().pending, 1, 'fastify.invalidate resolves with the retry queued')
  await waitFor(() => a.invalidation.stats().abandoned === 1, { message: 'the retry was never given up' })
  t.equal(a.invalidation.stats().pending, 0, 'nothing is pending any more')
  t.equal(a.invalidation.stats().failures, 4, 'the first attempt and its 3 retries failed')
  t.ok(
    log.lines.some((line) => line.level === 50 && /abandoned/.test(line.msg)),
    'an error-level log line says it was abandoned',
  )
})

t.test(
  '5c. closing with retries still pending logs and counts them, never drops them silently',
  async (t) => {
    const server = await startRedisServer()
    t.teardown(() => server.close())
    const log = logSink()
    const a = await productApp(t, {
      store: new Store(),
      prefix: uniquePrefix('inv-close'),
      redis: server.url,
      engine: { timeout: 100, breaker: { threshold: 3, cooldown: 200 } },
      invalidation: { retry: { minDelay: '1m', maxDelay: '1m', attempts: 5 } },
      log: { level: 'error', stream: log.stream },
    })
    await server.stop()
    await a.invalidate({ tags: ['products'] })
    t.equal(a.invalidation.stats().pending, 1, 'a retry is queued')
    await a.close()
    t.equal(a.invalidation.stats().pending, 0, 'after close nothing is pending')
    t.equal(a.invalidation.stats().abandoned, 1, 'the dropped retry is counted as abandoned')
    t.ok(
      log.lines.some(
        (line) => line.level === 50 && /closing with invalidations not confirmed/.test(line.msg),
      ),
      'an error-level log line says so',
    )
  },
)
