import { createCache } from '@larder/core'
import { sharedRedis, sharedRedisUrl } from '@larder/test-support'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { cacheConformance } from './conformance.js'

const { prefix } = sharedRedis(t)

// L1 in front of Redis, as most apps run it.
cacheConformance(t, async (options) => {
  const cache = createCache({ ...options, redis: sharedRedisUrl, prefix: prefix('tiered') })
  await cache.ready()
  t.teardown(() => cache.close())
  return cache
})

/** Two processes' worth of caches: separate connections, same prefix, L1 on in both. */
async function pair(t: Test, name: string) {
  const p = prefix(name)
  const a = createCache({ redis: sharedRedisUrl, prefix: p })
  const client = new Redis(sharedRedisUrl)
  const b = createCache({ redis: client, prefix: p })
  await Promise.all([a.ready(), b.ready()])
  t.teardown(async () => {
    await a.close()
    await b.close()
    await client.quit()
  })
  return { a, b }
}

t.test('a second instance reads what the first stored, from Redis then from its L1', async (t) => {
  const { a, b } = await pair(t, 'share')
  await a.set('k', { v: 1 })
  t.same(await b.get('k'), { v: 1 }, 'b reads it')
  t.same(await b.get('k'), { v: 1 }, 'and again')
  t.equal(b.stats().l2Hits, 1, 'the first read came from Redis')
  t.equal(b.stats().l1Hits, 1, 'the second from L1')
})

t.test(
  'the bus: overwrite, delete, tags and patterns reach the other L1 before the promise resolves',
  async (t) => {
    const { a, b } = await pair(t, 'bus')
    await a.set('k', 'v1', { tags: ['t'] })
    await a.set('user:1:a', 'x')
    t.equal(await b.get('k'), 'v1', 'b caches v1 in its L1')
    t.equal(await b.get('user:1:a'), 'x', 'b caches user:1:a in its L1')

    await a.set('k', 'v2', { tags: ['t'] })
    t.equal(await b.get('k'), 'v2', 'an overwrite on a drops the copy in b')

    await a.invalidateTags(['t'])
    t.equal(await b.get('k'), undefined, 'invalidateTags on a: b no longer serves it')

    await b.get('user:1:a')
    await a.invalidatePattern('user:1:*')
    t.equal(await b.get('user:1:a'), undefined, 'invalidatePattern on a: gone from b')

    await a.set('k', 'v3')
    t.equal(await b.get('k'), 'v3', 'b reads the new value')
    await a.delete('k')
    t.equal(await b.get('k'), undefined, 'delete on a: gone from b')
  },
)
