// write() calls made close together share one Redis call on a single Redis: these tests check that
// nothing a caller relies on is lost to the sharing.
import { createCache, createWriteBehind } from '@larder/core'
import { sharedRedis, sharedRedisUrl, startRedisServer, waitFor } from '@larder/test-support'
import t, { type Test } from 'tap'
import { flushInto, testDatabases } from './fixtures/databases.js'
import { drained } from './fixtures/drained.js'

const { redis, prefix } = sharedRedis(t)
const databases = testDatabases()
t.teardown(async () => {
  for (const db of databases) await db.close()
})

const quiet = { debug() {}, warn() {}, error() {} }

const upsert = flushInto

async function newCache(t: Test, p: string) {
  const cache = createCache({ redis: sharedRedisUrl, prefix: p, logger: quiet })
  t.teardown(() => cache.close())
  await cache.ready()
  return cache
}

for (const db of databases) {
  t.test(
    `${db.name}: 1,000 write() calls at once over 100 keys all land, the last value of each key`,
    async (t) => {
      const table = await db.table(t, 'wb_burst')
      const p = prefix('wb-burst')
      const writing = await newCache(t, p)
      const other = await newCache(t, p)
      const writer = createWriteBehind({ cache: writing, name: 'burst', flush: upsert(table), interval: 50 })
      t.teardown(() => writer.close())
      // Make the 100 keys cached in the other process's L1, so a stale copy there would show.
      for (let k = 0; k < 100; k++) await other.set(`item:${k}`, { i: -1 })

      const writes = Array.from({ length: 1_000 }, (_, i) => writer.write(`item:${i % 100}`, { i }))
      const settled = await Promise.allSettled(writes)
      t.equal(settled.filter((s) => s.status === 'rejected').length, 0, 'every write() resolved')

      const last = (k: number) => ({ i: 900 + k })
      const here = await Promise.all(Array.from({ length: 100 }, (_, k) => writing.get(`item:${k}`)))
      t.same(
        here,
        Array.from({ length: 100 }, (_, k) => last(k)),
        "the writer's cache reads the last value of each key",
      )
      const there = await Promise.all(Array.from({ length: 100 }, (_, k) => other.get(`item:${k}`)))
      t.same(
        there,
        Array.from({ length: 100 }, (_, k) => last(k)),
        'so does another process (its L1 copies dropped)',
      )
      t.same(await redis.hget(`${p}item:7`, 'v'), JSON.stringify(last(7)), 'Redis holds the last value')

      await drained(writer, {
        timeout: 10_000,
        message: 'never flushed',
      })
      const rows = await table.rows()
      t.equal(rows.size, 100, 'every key reached the database')
      t.ok(
        Array.from({ length: 100 }, (_, k) => rows.get(`item:${k}`) === JSON.stringify(last(k))).every(
          Boolean,
        ),
        'each with its last value',
      )
      const stats = await writer.stats()
      t.equal(stats.written, 1_000, 'all 1,000 writes counted')
      t.equal(stats.flushed, 1_000, 'and acknowledged after a successful flush')
    },
  )
}

t.test('Redis stopped: every write of the batch rejects with the error', async (t) => {
  const server = await startRedisServer()
  const cache = createCache({ redis: server.url, prefix: 'wbb:', timeout: 200, logger: quiet })
  const writer = createWriteBehind({ cache, name: 'down', interval: 50, flush: () => {} })
  t.teardown(async () => {
    await server.start()
    await writer.close().catch(() => {})
    await cache.close()
    await server.close()
  })
  await cache.ready()
  await writer.write('before', 1)
  t.equal(await cache.get('before'), 1, 'with Redis up a write lands')

  await server.stop()
  const settled = await Promise.allSettled(
    Array.from({ length: 20 }, (_, i) => writer.write(`during:${i}`, i)),
  )
  const reasons = settled.map((s) => (s.status === 'rejected' ? s.reason : undefined))
  t.ok(reasons[0] instanceof Error, `the first write rejected with the Redis error (${reasons[0]})`)
  t.ok(
    reasons.every((reason) => reason === reasons[0]),
    'all 20 rejected with that same error (made together, they shared one Redis call)',
  )
  t.equal(await cache.get('during:3'), undefined, 'a write that failed is not served from L1')
  await server.start()
  await waitFor(() => writer.stats().then(() => true), { message: 'Redis never came back' })
  t.equal((await writer.stats()).written, 1, 'and none of them is counted as written')
})

t.test('a batch whose script fails rejects every write in it, and caches none of them', async (t) => {
  const p = prefix('wb-fail')
  const cache = await newCache(t, p)
  const writer = createWriteBehind({ cache, name: 'broken', interval: 50, flush: () => {} })
  t.teardown(() => writer.close().catch(() => {}))
  await writer.write('ok', 1)
  // The stream replaced by a string: the script's first XADD fails with WRONGTYPE.
  const stream = `${p}{wb:broken}`
  await drained(writer)
  await redis.del(stream)
  await redis.set(stream, 'not a stream')
  t.teardown(() => redis.del(stream))

  const settled = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => writer.write(`k:${i}`, i)))
  t.ok(
    settled.every((s) => s.status === 'rejected' && /WRONGTYPE/.test(String(s.reason))),
    "every write rejected with Redis's error",
  )
  t.equal(await cache.get('k:4'), undefined, 'none of them is readable from the cache')
  t.equal(await redis.exists(`${p}k:4`), 0, 'nor in Redis')
})

t.test('an entry written by write() is the entry cache.set writes (set.lua), tags included', async (t) => {
  const p = prefix('wb-same')
  const cache = await newCache(t, p)
  const writer = createWriteBehind({ cache, name: 'same', interval: 50, flush: () => {} })
  t.teardown(() => writer.close())
  const options = {
    ttl: 60_000,
    staleWhileRevalidate: 5_000,
    staleIfError: 9_000,
    earlyRefresh: 1,
    tags: ['shop'],
  }
  // A lock left on the key must go, as a cache.set removes it.
  await redis.hset(`${p}b`, 'lk', 'someone', 'lu', Date.now() + 10_000, 'fn', 'someone')
  await cache.set('a', { x: 1 }, options)
  await writer.write('b', { x: 1 }, options)
  const a = await redis.hgetall(`${p}a`)
  const b = await redis.hgetall(`${p}b`)
  t.same(Object.keys(b).sort(), Object.keys(a).sort(), 'the same fields')
  for (const field of ['v', 't']) t.equal(b[field], a[field], `the same ${field}`)
  // 'm': kind, fresh/stale/error deadlines, creation, loader ms, early beta; the times from their own clock reads.
  const meta = (entry: Record<string, string>) => {
    const [kind, fresh, stale, error, created, ...rest] = (entry.m ?? '').split(',')
    const spans = [fresh, stale, error].map((time) => Number(time) - Number(created))
    return [kind, ...spans, ...rest]
  }
  t.same(meta(b), meta(a), 'the same metadata: kind, deadlines after creation, loader ms, early beta')
  const [ttlA, ttlB] = [await redis.pttl(`${p}a`), await redis.pttl(`${p}b`)]
  t.ok(Math.abs(ttlA - ttlB) < 1_000 && ttlB > 60_000, `the same expiry (${ttlA} and ${ttlB} ms)`)

  await cache.invalidateTags(['shop'])
  t.equal(await cache.get('b'), undefined, 'invalidating its tag drops the written value')
})

t.test('a consumer acknowledging ahead of an older pending batch: lag stays exact', async (t) => {
  const p = prefix('wb-ahead')
  const [slowCache, fastCache] = [await newCache(t, p), await newCache(t, p)]
  let release = (): void => {}
  const held = new Promise<void>((resolve) => (release = resolve))
  let slowGot = 0
  const slow = createWriteBehind({
    cache: slowCache,
    name: 'ahead',
    interval: 50,
    flush: async (batch) => {
      slowGot += batch.length
      await held
    },
  })
  t.teardown(async () => {
    release()
    await slow.close()
  })
  // Made together: one script call adds all 10 to the stream, so one read hands them all to `slow`.
  await Promise.all(Array.from({ length: 10 }, (_, i) => slow.write(`old:${i}`, i)))
  await waitFor(() => slowGot === 10, { message: 'the slow consumer never read the first writes' })

  const fastGot: string[] = []
  const fast = createWriteBehind({
    cache: fastCache,
    name: 'ahead',
    interval: 50,
    flush: (batch) => void fastGot.push(...batch.map((item) => item.key)),
  })
  t.teardown(() => fast.close())
  for (let i = 0; i < 10; i++) await fast.write(`new:${i}`, i)
  await waitFor(() => fastGot.length === 10, { message: 'the fast consumer never flushed' })
  await waitFor(async () => (await fast.stats()).lag === 10, { message: 'lag never came down to 10' })
  t.equal((await fast.stats()).lag, 10, 'the lag counts only the 10 writes still held by the slow consumer')

  release()
  await drained(fast, { message: 'never drained' })
  t.equal(await redis.xlen(`${p}{wb:ahead}`), 0, 'and the stream is empty once they are flushed')
})
