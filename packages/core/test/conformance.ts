// One behaviour suite, run against every tier combination (L1 only, Redis only, L1 + Redis, Cluster):
// whatever the stores, a user sees the same cache.
import { setTimeout as sleep } from 'node:timers/promises'
import type { Cache, CacheOptions } from '@larder/core'
import { waitFor } from '@larder/test-support'
import type { Test } from 'tap'

export type MakeCache = (options?: CacheOptions) => Promise<Cache>

function counter<T>(value: T | (() => T)) {
  const loader = async () => {
    loader.calls++
    return typeof value === 'function' ? (value as () => T)() : value
  }
  loader.calls = 0
  return loader
}

export function cacheConformance(t: Test, make: MakeCache): void {
  t.test('get, set, overwrite and delete', async (t) => {
    const cache = await make()
    t.equal(await cache.get('missing'), undefined, 'a missing key reads undefined')
    await cache.set('product:1', { id: 1, name: 'Tea', tags: ['hot'], price: 3.5 })
    t.same(await cache.get('product:1'), { id: 1, name: 'Tea', tags: ['hot'], price: 3.5 }, 'set then get')
    await cache.set('product:1', { id: 1, name: 'Green tea' })
    t.same(await cache.get('product:1'), { id: 1, name: 'Green tea' }, 'an overwrite wins')
    await cache.set('product:2', 'two')
    await cache.set('product:3', 3)
    await cache.delete('product:1', 'product:2')
    t.equal(await cache.get('product:1'), undefined, 'deleted')
    t.equal(await cache.get('product:2'), undefined, 'deleted with the same call')
    t.equal(await cache.get('product:3'), 3, 'a key not named is kept')
  })

  t.test('values keep their type; Buffers round-trip byte for byte', async (t) => {
    const cache = await make()
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    await cache.set('bytes', bytes)
    const back = await cache.get<Buffer>('bytes')
    t.ok(Buffer.isBuffer(back), 'a Buffer comes back as a Buffer')
    t.equal(Buffer.compare(back as Buffer, bytes), 0, 'every byte is the same')
    await cache.set('list', [1, 'two', null, { three: true }])
    t.same(await cache.get('list'), [1, 'two', null, { three: true }], 'arrays and nested objects')
    await cache.set('text', 'héllo ✓')
    t.equal(await cache.get('text'), 'héllo ✓', 'unicode strings')
    await t.rejects(
      cache.set('bad', 10n as unknown),
      { code: 'LARDER_UNSERIALIZABLE' },
      'a BigInt is refused clearly',
    )
  })

  t.test('wrap loads once and serves the cached value after', async (t) => {
    const cache = await make()
    const loader = counter({ id: 7 })
    t.same(await cache.wrap('user:7', loader), { id: 7 }, 'first call loads')
    t.same(await cache.wrap('user:7', loader), { id: 7 }, 'second call is served from the cache')
    t.equal(loader.calls, 1, 'the loader ran once')
    const info = await cache.wrapEntry('user:7', loader)
    t.equal(info.stale, false, 'wrapEntry reports a fresh entry')
    t.ok(info.ageSeconds >= 0, 'and its age')
  })

  t.test('concurrent misses share one loader call', async (t) => {
    const cache = await make()
    const loader = counter(async () => {
      await sleep(30)
      return 'slow'
    })
    const results = await Promise.all(Array.from({ length: 50 }, () => cache.wrap('hot', loader)))
    t.ok(
      results.every((r) => r === 'slow'),
      'every caller gets the value',
    )
    t.equal(loader.calls, 1, 'one loader call for 50 concurrent misses')
  })

  t.test('entries expire after their ttl', async (t) => {
    const cache = await make()
    const loader = counter('v')
    await cache.wrap('short', loader, { ttl: 40 })
    await sleep(80)
    t.equal(await cache.get('short'), undefined, 'get misses once the ttl passed')
    await cache.wrap('short', loader, { ttl: 40 })
    t.equal(loader.calls, 2, 'wrap loads again after expiry')
  })

  t.test('a loader can choose its own TTL (a short one for a not-found result)', async (t) => {
    const cache = await make()
    const loader = counter(() => 'not found')
    // Long enough to read back on a busy machine, where a read judges freshness to within a few ms.
    const short = async (context: { setTtl(ttl: number): void }) => {
      context.setTtl(300)
      return loader()
    }
    await cache.wrap('adaptive', short, { ttl: '1h' })
    t.equal(await cache.get('adaptive'), 'not found', 'cached')
    await sleep(450)
    t.equal(await cache.get('adaptive'), undefined, 'for the TTL the loader chose, not the 1h of the call')
    await cache.wrap('skipped', async (context) => {
      context.setTtl(0)
      return 'once'
    })
    t.equal(await cache.get('skipped'), undefined, 'setTtl(0) does not cache the result')
  })

  t.test('a loader error reaches the caller and nothing is cached', async (t) => {
    const cache = await make()
    await t.rejects(
      cache.wrap('broken', async () => {
        throw new Error('database down')
      }),
      { message: 'database down' },
      'the loader error is rethrown',
    )
    const loader = counter('recovered')
    t.equal(await cache.wrap('broken', loader), 'recovered', 'the next call loads again')
    t.equal(loader.calls, 1, 'and caches this time')
  })

  t.test('negative caching: null and undefined are cached for negativeTtl only', async (t) => {
    const cache = await make()
    const nothing = counter(null)
    t.equal(await cache.wrap('user:404', nothing, { ttl: '1h', negativeTtl: 60 }), null, 'null is returned')
    t.equal(await cache.wrap('user:404', nothing, { ttl: '1h', negativeTtl: 60 }), null, 'and cached')
    t.equal(nothing.calls, 1, 'within negativeTtl the loader is not called')
    await sleep(100)
    await cache.wrap('user:404', nothing, { ttl: '1h', negativeTtl: 60 })
    t.equal(nothing.calls, 2, 'after negativeTtl (not the 1h ttl) it loads again')
    const undef = counter(undefined)
    await cache.wrap('user:405', undef, { negativeTtl: 0 })
    await cache.wrap('user:405', undef, { negativeTtl: 0 })
    t.equal(undef.calls, 2, 'negativeTtl: 0 does not cache undefined')
  })

  t.test('stale-while-revalidate serves the old value at once and refreshes once', async (t) => {
    const cache = await make()
    let version = 1
    const loader = counter(async () => {
      await sleep(20)
      return version
    })
    const options = { ttl: 40, staleWhileRevalidate: '5s' } as const
    t.equal(await cache.wrap('swr', loader, options), 1, 'loads v1')
    await sleep(70)
    version = 2
    const stale = await Promise.all(Array.from({ length: 10 }, () => cache.wrap('swr', loader, options)))
    t.same(new Set(stale), new Set([1]), 'every call within the window gets the stale value at once')
    const info = await cache.wrapEntry('swr', loader, options)
    t.equal(info.stale, true, 'wrapEntry says it is stale')
    await waitFor(async () => (await cache.get('swr')) === 2, { message: 'the background refresh stores v2' })
    t.equal(loader.calls, 2, 'one background refresh for all the stale reads')
    t.ok(cache.stats().staleHits >= 1, 'stale hits are counted')
  })

  t.test('stale-if-error serves the old value when the loader fails, within the window only', async (t) => {
    const cache = await make()
    const options = { ttl: 40, staleIfError: '5s' } as const
    await cache.wrap('sie', async () => 'good', options)
    await sleep(70)
    const failing = async () => {
      throw new Error('upstream 500')
    }
    t.equal(await cache.wrap('sie', failing, options), 'good', 'the stale value stands in for the error')
    await cache.wrap('plain', async () => 'good', { ttl: 40 })
    await sleep(70)
    await t.rejects(
      cache.wrap('plain', failing, { ttl: 40 }),
      { message: 'upstream 500' },
      'without it the error',
    )
  })

  t.test('early refresh reloads a hot key before it expires', async (t) => {
    const cache = await make()
    let version = 1
    const loader = counter(async () => {
      await sleep(5)
      return version
    })
    // A huge beta makes the probabilistic refresh certain on the next hit.
    const options = { ttl: '1h', earlyRefresh: 1e9 } as const
    await cache.wrap('early', loader, options)
    version = 2
    t.equal(await cache.wrap('early', loader, options), 1, 'the hit is served at once')
    await waitFor(async () => (await cache.get('early')) === 2, { message: 'refreshed in the background' })
    t.ok(loader.calls >= 2, 'the loader ran again before expiry')
  })

  t.test('invalidateTags drops every entry with the tag, and only those', async (t) => {
    const cache = await make()
    await cache.set('p:1', 1, { tags: ['product:1', 'products'] })
    await cache.set('p:2', 2, { tags: ['product:2', 'products'] })
    await cache.set('u:1', 'u', { tags: ['user:1'] })
    await cache.wrap('list', async () => [1, 2], { tags: ['products'] })
    await cache.invalidateTags(['products'])
    t.equal(await cache.get('p:1'), undefined, 'tagged entry gone')
    t.equal(await cache.get('p:2'), undefined, 'tagged entry gone')
    t.equal(await cache.get('list'), undefined, 'a wrapped tagged entry gone')
    t.equal(await cache.get('u:1'), 'u', 'an entry with another tag stays')
    await cache.set('p:1', 'again', { tags: ['products'] })
    t.equal(await cache.get('p:1'), 'again', 'new entries with the tag are readable')
  })

  t.test('a tag invalidated while its loader runs: that result is not served afterwards', async (t) => {
    const cache = await make()
    let version = 1
    let started = (): void => {}
    const running = new Promise<void>((resolve) => (started = resolve))
    const loader = counter(async () => {
      const v = version
      started()
      await sleep(60)
      return v
    })
    const loading = cache.wrap('race', loader, { tags: ['race'] })
    await running
    version = 2
    await cache.invalidateTags(['race'])
    t.equal(await loading, 1, 'the caller of the running load still gets its result')
    t.equal(await cache.wrap('race', loader, { tags: ['race'] }), 2, 'the next read loads the new value')
    t.equal(loader.calls, 2, 'the invalidated result was not cached')
  })

  t.test('invalidatePattern removes matching keys only', async (t) => {
    const cache = await make()
    await cache.set('user:123:profile', 'a')
    await cache.set('user:123:orders', 'b')
    await cache.set('user:1234:profile', 'c')
    await cache.set('user:12:profile', 'd')
    const removed = await cache.invalidatePattern('user:123:*')
    t.equal(await cache.get('user:123:profile'), undefined, 'matching key gone')
    t.equal(await cache.get('user:123:orders'), undefined, 'matching key gone')
    t.equal(await cache.get('user:1234:profile'), 'c', 'user:1234 is not user:123')
    t.equal(await cache.get('user:12:profile'), 'd', 'user:12 is not user:123')
    t.ok(removed === 0 || removed === 2, 'reports what Redis removed (0 without Redis)')
  })

  t.test('stats count what happened', async (t) => {
    const cache = await make()
    await cache.wrap('s', async () => 1)
    await cache.wrap('s', async () => 1)
    await cache.get('nothing')
    const stats = cache.stats()
    t.equal(stats.loaderCalls, 1, 'one loader call')
    t.equal(stats.hits, 1, 'one hit')
    t.equal(stats.misses, 2, 'two misses (the load and the get)')
    t.equal(stats.hitRate, 1 / 3, 'hit rate')
    t.equal(stats.breaker, 'closed', 'the breaker is closed')
  })

  t.test('bad calls fail clearly', async (t) => {
    const cache = await make()
    await t.rejects(cache.set('', 1), { code: 'LARDER_INVALID_KEY' }, 'empty key')
    await t.rejects(cache.get('{t}:x'), { code: 'LARDER_INVALID_KEY' }, 'reserved key space')
    await t.rejects(
      cache.set('k', 1, { ttl: 'soon' as '1s' }),
      { code: 'LARDER_INVALID_DURATION', message: /ttl/ },
      'bad ttl',
    )
    await t.rejects(
      cache.wrap('k', async () => 1, { tgs: [] } as unknown as { ttl: 1 }),
      { code: 'LARDER_UNKNOWN_OPTION', message: /tgs/ },
      'a misspelt option is named',
    )
    await t.rejects(cache.invalidateTags(['a b']), { code: 'LARDER_INVALID_OPTION' }, 'a tag with whitespace')
    await t.rejects(cache.invalidatePattern(''), { code: 'LARDER_INVALID_PATTERN' }, 'an empty pattern')
    const long = 'k'.repeat(10_000)
    await cache.set(long, 'long key')
    t.equal(await cache.get(long), 'long key', 'a 10k-character key works (hashed)')
    t.equal(await cache.get(`${'k'.repeat(9_999)}j`), undefined, 'and does not collide with a near twin')
  })
}
