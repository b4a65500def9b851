import { createCache } from '@larder/core'
import t from 'tap'
import { cacheConformance } from './conformance.js'

// The embedded default: no Redis, L1 only.
cacheConformance(t, async (options) => {
  const cache = createCache({ ...options })
  t.teardown(() => cache.close())
  return cache
})

t.test('L1 is bounded by entries, and evictions are counted', async (t) => {
  const cache = createCache({ l1: { maxEntries: 100 } })
  t.teardown(() => cache.close())
  for (let i = 0; i < 250; i++) await cache.set(`k${i}`, i)
  const stats = cache.stats()
  t.equal(stats.l1.entries, 100, 'never more than maxEntries')
  t.equal(stats.l1.evictions, 150, 'every entry pushed out is counted')
  t.equal(await cache.get('k249'), 249, 'the newest entries stay')
  t.equal(await cache.get('k0'), undefined, 'the least recently used went first')
})

t.test('L1 is bounded by bytes', async (t) => {
  const cache = createCache({ l1: { maxBytes: '10kb', maxEntries: 10_000 } })
  t.teardown(() => cache.close())
  const kilobyte = 'x'.repeat(1022) // 1024 bytes as JSON, with its quotes
  for (let i = 0; i < 30; i++) await cache.set(`big${i}`, kilobyte)
  const stats = cache.stats()
  t.ok(stats.l1.bytes <= 10 * 1024, `bytes stay within maxBytes (${stats.l1.bytes})`)
  t.equal(stats.l1.entries, 10, 'ten 1 KiB values fit in 10 KiB')
  t.equal(stats.l1.evictions, 20, 'the rest were evicted')
})

t.test('a value that changed while its load ran is not overwritten by the older load', async (t) => {
  const cache = createCache()
  t.teardown(() => cache.close())
  let release = () => {}
  const loading = cache.wrap('k', () => new Promise<string>((resolve) => (release = () => resolve('old'))))
  await cache.set('k', 'new')
  release()
  t.equal(await loading, 'old', 'the load still answers its caller')
  t.equal(await cache.get('k'), 'new', 'the newer set() stays in the cache')
  const deleting = cache.wrap(
    'd',
    () => new Promise<string>((resolve) => (release = () => resolve('loaded'))),
  )
  await cache.delete('d')
  release()
  await deleting
  t.equal(await cache.get('d'), undefined, 'a delete during the load wins too')
})

t.test('a flood of invalidations keeps L1 bounded and never resurrects an invalidated entry', async (t) => {
  const cache = createCache()
  t.teardown(() => cache.close())
  await cache.set('guarded', 'old', { tags: ['first'] })
  let release = () => {}
  const loading = cache.wrap(
    'late',
    () => new Promise<string>((resolve) => (release = () => resolve('stale'))),
    { tags: ['first'] },
  )
  await cache.invalidateTags(['first'])
  // More distinct tags than L1 keeps records for: the oldest records are forgotten.
  for (let i = 0; i < 12_000; i++) await cache.invalidateTags([`flood:${i}`])
  release()
  await loading
  t.equal(await cache.get('guarded'), undefined, 'the entry invalidated before the flood stays invalid')
  t.equal(
    await cache.get('late'),
    undefined,
    'a load that began before the forgotten invalidation is not stored',
  )
  await cache.set('fresh', 'new', { tags: ['first'] })
  t.equal(await cache.get('fresh'), 'new', 'new entries are stored as usual')
})
