import { createCache } from '@larder/core'
import { sharedRedis, sharedRedisUrl } from '@larder/test-support'
import { Redis } from 'ioredis'
import t from 'tap'
import { cacheConformance } from './conformance.js'

const { redis, prefix } = sharedRedis(t)

// Redis only: every read goes to Redis.
cacheConformance(t, async (options) => {
  const cache = createCache({ ...options, redis: sharedRedisUrl, l1: false, prefix: prefix('redis') })
  t.teardown(() => cache.close())
  return cache
})

t.test('values are stored binary-safe: a Buffer takes its own size in Redis', async (t) => {
  const p = prefix('binary')
  const cache = createCache({ redis, l1: false, prefix: p })
  t.teardown(() => cache.close())
  const bytes = Buffer.alloc(4096, 0xff)
  await cache.set('blob', bytes)
  t.equal(await redis.hstrlen(`${p}blob`, 'v'), 4096, '4096 bytes stored as 4096 bytes (no base64)')
  t.match(await redis.hget(`${p}blob`, 'm'), /^b,/, 'recorded as bytes')
})

t.test('over-long keys are hashed in Redis', async (t) => {
  const p = prefix('long')
  const cache = createCache({ redis, l1: false, prefix: p, maxKeyLength: 100 })
  t.teardown(() => cache.close())
  await cache.set('x'.repeat(5_000), 'v')
  const keys = await redis.keys(`${p}*`)
  t.equal(keys.length, 1, 'one key written')
  t.ok((keys[0] as string).length < p.length + 200, 'its name is short')
  t.equal(await cache.get('x'.repeat(5_000)), 'v', 'and it reads back')
})

t.test('expiry is enforced by Redis too: an expired entry is gone, not just ignored', async (t) => {
  const p = prefix('ttl')
  const cache = createCache({ redis, l1: false, prefix: p })
  t.teardown(() => cache.close())
  await cache.set('k', 'v', { ttl: '10s', staleWhileRevalidate: '5s' })
  const ttl = await redis.pttl(`${p}k`)
  t.ok(ttl > 14_000 && ttl <= 15_000, `Redis keeps it for ttl + stale window (${ttl} ms)`)
})

t.test('a handed client is not closed by the cache', async (t) => {
  const client = new Redis(sharedRedisUrl)
  const cache = createCache({ redis: client, prefix: prefix('handed') })
  await cache.set('k', 1)
  await cache.close()
  t.equal(await client.ping(), 'PONG', 'the client still answers after cache.close()')
  await client.quit()
})

t.test("freshness is judged on Redis's clock, whatever this host's clock says", async (t) => {
  const p = prefix('skew')
  const writer = createCache({ redis, l1: false, prefix: p })
  t.teardown(() => writer.close())
  await writer.set('plain', 'v', { ttl: '10m' })
  await writer.set('tagged', 't', { ttl: '10m', tags: ['g'] })
  // This process's clock runs an hour ahead of Redis's from now on, as on a badly set host.
  const realNow = Date.now
  Date.now = () => realNow() + 3_600_000
  t.teardown(() => {
    Date.now = realNow
  })
  const reader = createCache({ redis, l1: false, prefix: p })
  t.teardown(() => reader.close())
  t.equal(
    await reader.get('plain'),
    'v',
    'a 10-minute entry is fresh for a reader an hour ahead (HMGET read)',
  )
  t.equal(
    await reader.wrap('tagged', () => 'loaded', { tags: ['g'] }),
    't',
    'and through the script read, with tags',
  )
  const info = await reader.getEntry('plain')
  t.equal(info?.ageSeconds, 0, 'its age is measured on Redis too')
  await writer.set('short', 's', { ttl: 300 })
  await new Promise((resolve) => setTimeout(resolve, 400))
  t.equal(await reader.get('short'), undefined, 'and a 300 ms entry is gone 400 ms later')
})
