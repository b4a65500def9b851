import { type Cache, type CacheOptions, createCache, LarderError } from '@larder/core'
import { sharedRedis, sharedRedisUrl, startRedisServer, uniquePrefix } from '@larder/test-support'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'

// Tags: invalidation is race-safe, O(number of tags) whatever the number of entries, validated before
// anything is touched, and never brings back an entry when a tag's version key disappears.

const { redis, prefix } = sharedRedis(t)

function newCache(t: Test, options: CacheOptions): Cache {
  const cache = createCache(options)
  t.teardown(() => cache.close())
  return cache
}

/** A loader that signals when it starts and returns only when released. */
function gatedLoader<T>(value: T): { loader: () => Promise<T>; started: Promise<void>; release: () => void } {
  let markStarted: () => void = () => {}
  const started = new Promise<void>((resolve) => (markStarted = resolve))
  let release: () => void = () => {}
  const gate = new Promise<void>((resolve) => (release = resolve))
  return {
    started,
    release,
    loader: async () => {
      markStarted()
      await gate
      return value
    },
  }
}

const MODES: Array<[name: string, options: () => CacheOptions]> = [
  ['L1 only (no Redis)', () => ({})],
  ['Redis only (l1: false)', () => ({ redis: sharedRedisUrl, l1: false, prefix: prefix('tags-race-l2') })],
  ['tiered (L1 + Redis)', () => ({ redis: sharedRedisUrl, prefix: prefix('tags-race-tiered') })],
]

t.test('a tag invalidated while a loader runs', async (t) => {
  for (const [name, options] of MODES) {
    t.test(name, async (t) => {
      const cache = newCache(t, options())
      await cache.ready()
      const first = gatedLoader({ version: 1 })
      let calls = 0
      const pending = cache.wrap(
        'product:1',
        () => {
          calls++
          return first.loader()
        },
        { tags: ['product:1', 'catalog'] },
      )
      await first.started
      await cache.invalidateTags(['catalog'])
      first.release()
      t.same(await pending, { version: 1 }, "the loader's caller still gets the loaded value")

      t.equal(
        await cache.get('product:1'),
        undefined,
        'get does not serve the result loaded before the invalidation',
      )
      const next = await cache.wrap(
        'product:1',
        () => {
          calls++
          return { version: 2 }
        },
        { tags: ['product:1', 'catalog'] },
      )
      t.equal(calls, 2, 'the next wrap runs the loader again: it was not served from the cache')
      t.same(next, { version: 2 }, 'and returns the new value')
      const third = await cache.wrap(
        'product:1',
        () => {
          calls++
          return { version: 3 }
        },
        { tags: ['product:1', 'catalog'] },
      )
      t.same(third, { version: 2 }, 'the value loaded after the invalidation is cached as usual')
      t.equal(calls, 2, 'without another loader call')
    })
  }
})

t.test('invalidating a tag carried by 100,000 entries is O(1) for Redis', async (t) => {
  const server = await startRedisServer({
    args: ['--slowlog-log-slower-than', '2000', '--slowlog-max-len', '1024'],
  })
  t.teardown(() => server.close())
  const admin = new Redis(server.url)
  t.teardown(() => admin.quit())
  const p = uniquePrefix('tags-scale')
  // Thousands of calls in flight queue behind each other: a generous per-call timeout, so none is dropped.
  const cache = newCache(t, { redis: server.url, l1: false, prefix: p, timeout: '20s', ttl: '10m' })
  await cache.ready()

  const total = 100_000
  const batch = 2_000
  const started = Date.now()
  for (let from = 0; from < total; from += batch) {
    const writes: Array<Promise<void>> = []
    for (let i = from; i < Math.min(total, from + batch); i++) {
      writes.push(cache.set(`e:${i}`, { i }, { tags: ['big', `own:${i}`] }))
    }
    await Promise.all(writes)
  }
  t.comment(`wrote ${total} tagged entries in ${Date.now() - started} ms`)
  await cache.set('control', 'kept', { tags: ['small'] })

  // The entries and 'control', a version per own tag plus 'big' and 'small', and the version sequence.
  const keys = await admin.dbsize()
  t.equal(keys, total + 1 + (total + 2) + 1, 'every entry and every tag version is in Redis')
  const sample = Array.from({ length: 100 }, () => Math.floor(Math.random() * total))
  const before = await Promise.all(sample.map((i) => cache.get(`e:${i}`)))
  t.same(
    before,
    sample.map((i) => ({ i })),
    'a sample of 100 entries is readable before the invalidation',
  )

  await admin.slowlog('RESET')
  await cache.invalidateTags(['big'])
  const slow = (await admin.slowlog('GET', 128)) as unknown[]
  t.same(slow, [], 'no command took 2 ms or more on Redis (SLOWLOG is empty)')
  t.equal(await admin.dbsize(), keys, 'no key was added or removed: the entries were not touched')

  const after = await Promise.all(sample.map((i) => cache.get(`e:${i}`)))
  t.ok(
    after.every((value) => value === undefined),
    'the same 100 entries are unreadable after the invalidation',
  )
  t.equal(await cache.get('control'), 'kept', 'an entry without the tag is still readable')
  t.same(await cache.get(`e:${sample[0]}`), undefined, 'a tagged entry read twice stays unreadable')
  await cache.set('e:new', 'fresh', { tags: ['big'] })
  t.equal(
    await cache.get('e:new'),
    'fresh',
    'an entry written with the tag after the invalidation is readable',
  )
})

t.test('invalid tags are rejected before anything is invalidated', async (t) => {
  const p = prefix('tags-valid')
  const cache = newCache(t, { redis: sharedRedisUrl, prefix: p })
  const other = newCache(t, { redis: sharedRedisUrl, prefix: p, l1: false })
  await Promise.all([cache.ready(), other.ready()])
  await cache.set('ka', 'a-value', { tags: ['a'] })
  await cache.set('kb', 'b-value', { tags: ['b'] })
  t.equal(await cache.get('ka'), 'a-value', "the entry tagged 'a' is readable (and now in L1)")
  const versionsBefore = await redis.mget(`${p}{t}`, `${p}{t}:a`, `${p}{t}:b`)

  async function expectInvalid(promise: Promise<unknown>, what: string): Promise<void> {
    const error = await promise.then(
      () => undefined,
      (error: unknown) => error,
    )
    t.ok(error instanceof LarderError, `${what}: rejects with a LarderError`)
    t.equal(
      (error as LarderError | undefined)?.code,
      'LARDER_INVALID_OPTION',
      `${what}: code LARDER_INVALID_OPTION`,
    )
  }

  const tenKilobytes = 'x'.repeat(10 * 1024)
  await expectInvalid(cache.invalidateTags(['*']), "invalidateTags(['*'])")
  await expectInvalid(cache.invalidateTags(['a', '*']), "invalidateTags(['a', '*'])")
  await expectInvalid(cache.invalidateTags(['a b']), 'a tag with a space')
  await expectInvalid(cache.invalidateTags(['a', 'tab\there']), 'a tag with a tab')
  await expectInvalid(cache.invalidateTags(['a', 'new\nline']), 'a tag with a newline')
  await expectInvalid(cache.invalidateTags([tenKilobytes]), 'a 10 kB tag')
  await expectInvalid(cache.invalidateTags(['a', tenKilobytes]), "'a' with a 10 kB tag")
  await expectInvalid(cache.invalidateTags(['']), 'an empty tag')
  await expectInvalid(cache.set('ka', 'overwritten', { tags: ['a*'] }), "set(..., { tags: ['a*'] })")
  await expectInvalid(cache.set('kc', 'c-value', { tags: ['a*'] }), "set of a new key with tags ['a*']")
  let loaderCalls = 0
  await expectInvalid(
    cache.wrap(
      'kd',
      () => {
        loaderCalls++
        return 'd'
      },
      { tags: ['a b'] },
    ),
    'wrap with a tag with a space',
  )

  t.equal(loaderCalls, 0, 'the loader of the rejected wrap did not run')
  for (const [c, where] of [
    [cache, 'L1 + Redis'],
    [other, 'Redis only'],
  ] as const) {
    t.equal(await c.get('ka'), 'a-value', `${where}: the entry tagged 'a' is still readable, unchanged`)
    t.equal(await c.get('kb'), 'b-value', `${where}: the entry tagged 'b' is still readable`)
    t.equal(await c.get('kc'), undefined, `${where}: the rejected set wrote nothing`)
    t.equal(await c.get('kd'), undefined, `${where}: the rejected wrap stored nothing`)
  }
  t.same(
    await redis.mget(`${p}{t}`, `${p}{t}:a`, `${p}{t}:b`),
    versionsBefore,
    'no tag version in Redis changed',
  )
})

t.test('a tag whose version key was evicted: no resurrection, and the tag works again', async (t) => {
  const p = prefix('tags-evicted')
  const cache = newCache(t, { redis: sharedRedisUrl, prefix: p, l1: false })
  await cache.set('k1', 'one', { tags: ['ev'] })
  await cache.set('k2', 'two', { tags: ['other', 'ev'] })
  await cache.set('k3', 'three', { tags: ['other'] })
  t.equal(await cache.get('k1'), 'one', 'k1 is readable before the eviction')

  t.equal(await redis.del(`${p}{t}:ev`), 1, "the version key of 'ev' is deleted, as an eviction would")
  t.equal(await cache.get('k1'), undefined, "k1 (tagged 'ev') is unreadable")
  t.equal(await cache.get('k2'), undefined, "k2 (tagged 'other' and 'ev') is unreadable")
  t.equal(await cache.get('k3'), 'three', "k3 (only 'other') is still readable")

  await cache.set('k4', 'four', { tags: ['ev'] })
  t.equal(await cache.get('k4'), 'four', "a new entry tagged 'ev' is readable")
  t.equal(await cache.get('k1'), undefined, "k1 stays unreadable once 'ev' has a version again")
  t.equal(await cache.get('k2'), undefined, 'so does k2')

  let calls = 0
  const value = await cache.wrap(
    'k1',
    () => {
      calls++
      return 'one again'
    },
    { tags: ['ev'] },
  )
  t.equal(value, 'one again', 'wrap on k1 loads a new value')
  t.equal(calls, 1, 'through its loader')
  t.equal(await cache.get('k1'), 'one again', 'which is then readable')

  await cache.invalidateTags(['ev'])
  t.equal(await cache.get('k1'), undefined, "invalidating 'ev' again works on the new entries")
  t.equal(await cache.get('k4'), undefined, 'k4 too')
  t.equal(await cache.get('k3'), 'three', 'and leaves the others alone')
})

t.test(
  'a hit costs one command to Redis, tagged or not, whether or not the reader declares the tags',
  async (t) => {
    const client = new Redis(sharedRedisUrl)
    t.teardown(() => client.quit())
    // A real client whose commands are counted on their way out: a command is one round trip at most.
    const sent: string[] = []
    const send = client.sendCommand.bind(client)
    client.sendCommand = ((command: Parameters<Redis['sendCommand']>[0], stream?: unknown) => {
      sent.push(command.name)
      return send(command, stream as Parameters<Redis['sendCommand']>[1])
    }) as Redis['sendCommand']
    const cache = newCache(t, { redis: client, l1: false, prefix: prefix('tags-one-trip') })
    await cache.set('warm-up', 1)
    await cache.get('warm-up') // the first read also measures Redis's clock
    await cache.set('plain', 'untagged')
    await cache.set('tagged', 'with tags', { tags: ['a', 'b'] })

    const count = async (read: () => Promise<unknown>): Promise<[unknown, number]> => {
      sent.length = 0
      const value = await read()
      return [value, sent.filter((name) => name !== 'time').length]
    }
    t.same(await count(() => cache.get('plain')), ['untagged', 1], 'an untagged entry: one command')
    t.same(
      await count(() => cache.get('tagged')),
      ['with tags', 1],
      'a tagged entry read without declaring its tags: one command, tags checked in it',
    )
    t.same(
      await count(() => cache.wrap('tagged', () => 'loaded', { tags: ['a', 'b'] })),
      ['with tags', 1],
      'read with its tags declared: one command',
    )
    await cache.invalidateTags(['b'])
    t.same(
      await count(() => cache.get('tagged')),
      [undefined, 1],
      'after one of its tags is invalidated the same single command reads a miss',
    )
  },
)

t.test("tags work through a handed client with ioredis's keyPrefix", async (t) => {
  const keyPrefix = prefix('tags-key-prefix')
  const client = new Redis(sharedRedisUrl, { keyPrefix })
  t.teardown(() => client.quit())
  const cache = newCache(t, { redis: client, l1: false, prefix: 'c:' })
  await cache.set('tagged', 'with tags', { tags: ['a'] })
  t.equal(await redis.type(`${keyPrefix}c:tagged`), 'hash', "the entry is stored under the client's prefix")
  t.equal(await cache.get('tagged'), 'with tags', 'read without declaring the tags')
  let loads = 0
  const loader = () => {
    loads++
    return 'loaded'
  }
  t.equal(await cache.wrap('tagged', loader, { tags: ['a'] }), 'with tags', 'read with the tags declared')
  t.equal(loads, 0, 'no loader ran')
  await cache.invalidateTags(['a'])
  t.equal(await cache.get('tagged'), undefined, 'invalidating the tag makes it unreadable')
})
