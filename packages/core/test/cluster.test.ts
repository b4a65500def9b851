import { randomBytes } from 'node:crypto'
import { type Cache, type CacheOptions, createCache } from '@larder/core'
import { type RedisCluster, startRedisCluster, uniquePrefix } from '@larder/test-support'
import { Cluster, type Redis } from 'ioredis'
import t, { type Test } from 'tap'

// Redis Cluster: every operation of the engine works when keys live on different masters, tag versions
// live in one slot, and pattern invalidation has to visit every master.

const cluster: RedisCluster = await startRedisCluster()
// Teardowns run last-registered first: caches (per subtest) close before clients, clients before the cluster.
t.teardown(() => cluster.close())

/** A Cluster client of its own, quit after the subtest's caches are closed. */
async function clusterClient(t: Test): Promise<Cluster> {
  const client = new Cluster(cluster.nodes)
  client.on('error', () => {})
  t.teardown(async () => {
    await client.quit().catch(() => client.disconnect())
  })
  // Loads the slot map, so nodes('master') lists every master.
  await client.ping()
  return client
}

function newCache(t: Test, client: Cluster, options: Omit<CacheOptions, 'redis'>): Cache {
  const cache = createCache({ ...options, redis: client })
  t.teardown(() => cache.close())
  return cache
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&')
}

/** Every key matching `pattern` on one master, found with SCAN. */
async function scanNode(node: Redis, pattern: string): Promise<string[]> {
  const found: string[] = []
  let cursor = '0'
  do {
    const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = next
    found.push(...keys)
  } while (cursor !== '0')
  return found
}

/** The keys matching `pattern` on each master, in the order of `nodes('master')`. */
async function keysPerMaster(client: Cluster, pattern: string): Promise<string[][]> {
  const masters = client.nodes('master')
  return Promise.all(masters.map((node) => scanNode(node, pattern)))
}

/** Entry keys only (tag versions live under prefix + '{t}'). */
function entryKeys(keys: string[], prefix: string): string[] {
  return keys.filter((key) => !key.startsWith(`${prefix}{t}`))
}

t.test('the cluster has three masters', async (t) => {
  const client = await clusterClient(t)
  t.equal(client.nodes('master').length, 3, 'three masters to spread keys over')
})

t.test('get, set and delete of 50 keys spread over every master', async (t) => {
  const client = await clusterClient(t)
  const prefix = uniquePrefix('cluster-crud')
  const cache = newCache(t, client, { prefix, l1: false })
  const keys = Array.from({ length: 50 }, (_, i) => `item:${i}`)

  await Promise.all(keys.map((key, i) => cache.set(key, { i, name: key })))
  const perMaster = (await keysPerMaster(client, `${escapeGlob(prefix)}item:*`)).map((keys) =>
    entryKeys(keys, prefix),
  )
  t.equal(perMaster.flat().length, 50, 'all 50 entries are stored in the cluster')
  t.ok(
    perMaster.every((keys) => keys.length > 0),
    `every master holds some of them (${perMaster.map((keys) => keys.length).join('/')})`,
  )

  const values = await Promise.all(keys.map((key) => cache.get(key)))
  t.same(
    values,
    keys.map((key, i) => ({ i, name: key })),
    'every key reads back its own value',
  )
  // Every master forgets its scripts, as after a restart: the reads send them again, with no error.
  await Promise.all(client.nodes('master').map((node) => node.script('FLUSH')))
  t.same(
    await Promise.all(keys.map((key) => cache.get(key))),
    keys.map((key, i) => ({ i, name: key })),
    'after SCRIPT FLUSH on every master every key still reads back (NOSCRIPT answered by EVAL)',
  )
  t.equal(cache.stats().l2Errors, 0, 'and that was not an L2 error')

  await cache.delete(...keys)
  const after = await Promise.all(keys.map((key) => cache.get(key)))
  t.ok(
    after.every((value) => value === undefined),
    'after one delete() of all 50 keys (different slots) none is readable',
  )
  const left = (await keysPerMaster(client, `${escapeGlob(prefix)}item:*`)).flat()
  t.same(left, [], 'and no entry is left on any master')
})

t.test('wrap is single-flight on a cluster', async (t) => {
  const client = await clusterClient(t)
  const prefix = uniquePrefix('cluster-flight')

  t.test('20 concurrent misses in one process: one loader call', async (t) => {
    const cache = newCache(t, client, { prefix })
    let calls = 0
    const loader = async () => {
      calls++
      await new Promise((resolve) => setTimeout(resolve, 50))
      return { loaded: calls }
    }
    const results = await Promise.all(Array.from({ length: 20 }, () => cache.wrap('flight', loader)))
    t.equal(calls, 1, 'the loader ran once')
    t.ok(
      results.every((value) => JSON.stringify(value) === JSON.stringify({ loaded: 1 })),
      'every caller got its value',
    )
  })

  t.test('10 + 10 concurrent misses in two instances with their own clients: one loader call', async (t) => {
    const other = await clusterClient(t)
    const a = newCache(t, client, { prefix })
    const b = newCache(t, other, { prefix })
    await Promise.all([a.ready(), b.ready()])
    let calls = 0
    const loader = async () => {
      calls++
      await new Promise((resolve) => setTimeout(resolve, 100))
      return 'shared'
    }
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).wrap('flight-2', loader)),
    )
    t.equal(calls, 1, 'the loader ran once across both instances (the lock lives in the cluster)')
    t.ok(
      results.every((value) => value === 'shared'),
      'every caller in both instances got the value',
    )
  })
})

t.test('invalidateTags on entries spread over every master', async (t) => {
  const keys = Array.from({ length: 30 }, (_, i) => `tagged:${i}`)

  /** Writes the tagged keys and one control entry with another tag, and checks they read back. */
  async function seed(t: Test, writer: Cache, reader: Cache): Promise<void> {
    await Promise.all(keys.map((key, i) => writer.set(key, i, { tags: ['group', `own:${i}`] })))
    await writer.set('control', 'kept', { tags: ['other'] })
    const before = await Promise.all(keys.map((key) => reader.get(key)))
    t.same(
      before,
      keys.map((_, i) => i),
      'every tagged entry is readable before the invalidation',
    )
  }

  async function checkGone(t: Test, reader: Cache, who: string): Promise<void> {
    const after = await Promise.all(keys.map((key) => reader.get(key)))
    t.ok(
      after.every((value) => value === undefined),
      `${who}: no entry tagged 'group' is readable once invalidateTags resolved`,
    )
    t.equal(await reader.get('control'), 'kept', `${who}: an entry with another tag is still readable`)
  }

  t.test('Redis only (l1: false)', async (t) => {
    const client = await clusterClient(t)
    const prefix = uniquePrefix('cluster-tags-l2')
    const cache = newCache(t, client, { prefix, l1: false })
    await seed(t, cache, cache)
    const perMaster = (await keysPerMaster(client, `${escapeGlob(prefix)}tagged:*`)).map((k) => k.length)
    t.ok(
      perMaster.every((n) => n > 0),
      `the tagged entries sit on every master (${perMaster.join('/')})`,
    )
    await cache.invalidateTags(['group'])
    await checkGone(t, cache, 'the same instance')
  })

  t.test('L1 on, one instance', async (t) => {
    const client = await clusterClient(t)
    const prefix = uniquePrefix('cluster-tags-l1')
    const cache = newCache(t, client, { prefix })
    await seed(t, cache, cache)
    const hits = cache.stats().l1Hits
    await Promise.all(keys.map((key) => cache.get(key)))
    t.equal(
      cache.stats().l1Hits - hits,
      keys.length,
      'the entries are served from L1 before the invalidation',
    )
    await cache.invalidateTags(['group'])
    await checkGone(t, cache, 'the same instance')
  })

  t.test("two instances with their own clients: the other's L1 copy is gone on resolve", async (t) => {
    const prefix = uniquePrefix('cluster-tags-pair')
    const a = newCache(t, await clusterClient(t), { prefix })
    const b = newCache(t, await clusterClient(t), { prefix })
    await Promise.all([a.ready(), b.ready()])
    await seed(t, a, b)
    const hits = b.stats().l1Hits
    await Promise.all(keys.map((key) => b.get(key)))
    t.equal(b.stats().l1Hits - hits, keys.length, 'b serves the entries from its own L1')
    await a.invalidateTags(['group'])
    // No waiting: b must have dropped its copies before a's promise resolved.
    await checkGone(t, b, 'the other instance')
    await checkGone(t, a, 'the invalidating instance')
  })
})

t.test("set, delete and invalidatePattern reach the other instance's L1 before they resolve", async (t) => {
  const prefix = uniquePrefix('cluster-bus')
  const a = newCache(t, await clusterClient(t), { prefix })
  const b = newCache(t, await clusterClient(t), { prefix })
  await Promise.all([a.ready(), b.ready()])
  const keys = Array.from({ length: 12 }, (_, i) => `bus:${i}`)

  await Promise.all(keys.map((key) => a.set(key, 'v1')))
  await Promise.all(keys.map((key) => b.get(key)))
  await Promise.all(keys.map((key) => a.set(key, 'v2')))
  t.same(
    await Promise.all(keys.map((key) => b.get(key))),
    keys.map(() => 'v2'),
    'an overwrite on a: b reads the new value at once, not its L1 copy',
  )

  await a.delete(...keys)
  t.ok(
    (await Promise.all(keys.map((key) => b.get(key)))).every((value) => value === undefined),
    'a delete on a: b no longer serves its L1 copies',
  )

  await Promise.all(keys.map((key) => a.set(key, 'v3')))
  t.same(
    await Promise.all(keys.map((key) => b.get(key))),
    keys.map(() => 'v3'),
    'b caches the rewritten keys in its L1',
  )
  t.equal(await a.invalidatePattern('bus:*'), keys.length, 'the pattern removes every key')
  t.ok(
    (await Promise.all(keys.map((key) => b.get(key)))).every((value) => value === undefined),
    'invalidatePattern on a: b no longer serves its L1 copies',
  )
})

t.test('a tag invalidated while a loader runs: its result is not readable afterwards', async (t) => {
  const prefix = uniquePrefix('cluster-race')
  const a = newCache(t, await clusterClient(t), { prefix })
  const b = newCache(t, await clusterClient(t), { prefix, l1: false })
  await Promise.all([a.ready(), b.ready()])

  let started: () => void = () => {}
  const loaderStarted = new Promise<void>((resolve) => (started = resolve))
  let finish: () => void = () => {}
  const loaderMayFinish = new Promise<void>((resolve) => (finish = resolve))
  let calls = 0
  const slowLoader = async () => {
    calls++
    started()
    await loaderMayFinish
    return 'before invalidation'
  }

  const pending = a.wrap('racy', slowLoader, { tags: ['live'] })
  await loaderStarted
  await a.invalidateTags(['live'])
  finish()
  t.equal(await pending, 'before invalidation', "the loader's caller still gets its value")
  t.equal(await a.get('racy'), undefined, 'the loading instance does not serve it afterwards')
  t.equal(await b.get('racy'), undefined, 'nor does another instance reading Redis')
  const next = await a.wrap(
    'racy',
    () => {
      calls++
      return 'after invalidation'
    },
    { tags: ['live'] },
  )
  t.equal(next, 'after invalidation', 'the next wrap loads a new value')
  t.equal(calls, 2, 'the loader ran again')
  t.equal(await b.get('racy'), 'after invalidation', 'the new value is readable everywhere')
})

t.test("invalidatePattern('user:123:*') on every master, and nothing else", async (t) => {
  const client = await clusterClient(t)
  const prefix = uniquePrefix('cluster-pattern')
  const cache = newCache(t, client, { prefix })
  const reader = newCache(t, await clusterClient(t), { prefix, l1: false })
  await Promise.all([cache.ready(), reader.ready()])

  const matching = Array.from({ length: 30 }, (_, i) => `user:123:${i}`)
  const others = ['user:1234:x', 'user:12:x', 'user:123', 'account:user:123:x']
  await Promise.all([...matching, ...others].map((key) => cache.set(key, key)))
  // Fill the L1 too, so the pattern has to reach it as well.
  await Promise.all(matching.map((key) => cache.get(key)))

  const pattern = `${escapeGlob(prefix)}user:123:*`
  const before = (await keysPerMaster(client, pattern)).map((keys) => keys.length)
  t.ok(
    before.every((n) => n > 0),
    `matching keys sit on every master (${before.join('/')})`,
  )

  const removed = await cache.invalidatePattern('user:123:*')
  t.equal(removed, matching.length, 'it reports the 30 matching keys as removed')

  const perMaster = await keysPerMaster(client, pattern)
  t.same(perMaster, [[], [], []], 'no matching key is left on any master (SCAN of each)')
  for (const c of [cache, reader]) {
    const values = await Promise.all(matching.map((key) => c.get(key)))
    t.ok(
      values.every((value) => value === undefined),
      `no matching key is readable through a Cluster ${c === cache ? 'cache with L1' : 'cache without L1'}`,
    )
    for (const key of others) t.equal(await c.get(key), key, `'${key}' does not match and is still readable`)
  }
  const kept = (await keysPerMaster(client, `${escapeGlob(prefix)}user:1234:x`)).flat()
  t.same(kept, [`${prefix}user:1234:x`], "'user:1234:x' is still stored on its master")
})

t.test('Buffer values round-trip byte for byte', async (t) => {
  const client = await clusterClient(t)
  const prefix = uniquePrefix('cluster-buffer')
  const writer = newCache(t, client, { prefix })
  const reader = newCache(t, await clusterClient(t), { prefix, l1: false })
  const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
  const random = randomBytes(64 * 1024)
  const utf8Invalid = Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0x00, 0xed, 0xa0, 0x80])
  const values: Array<[string, Buffer]> = [
    ['every-byte', everyByte],
    ['random', random],
    ['invalid-utf8', utf8Invalid],
    ['empty', Buffer.alloc(0)],
  ]
  for (const [key, bytes] of values) await writer.set(`bin:${key}`, bytes)
  for (const [key, bytes] of values) {
    const back = await reader.get<Buffer>(`bin:${key}`)
    t.ok(Buffer.isBuffer(back), `${key}: read back as a Buffer`)
    t.ok(back !== undefined && bytes.equals(back), `${key}: the same ${bytes.length} bytes`)
  }
  const loaded = await reader.wrap('bin:loaded', () => random)
  t.ok(random.equals(loaded), 'a Buffer from a loader is returned as is')
  const cached = await writer.get<Buffer>('bin:loaded')
  t.ok(
    Buffer.isBuffer(cached) && random.equals(cached),
    "and another instance reads the loader's bytes from Redis",
  )
})
