import { createCache, type WarmEntry } from '@larder/core'
import { sharedRedis, sharedRedisUrl } from '@larder/test-support'
import t from 'tap'

const { prefix } = sharedRedis(t)

t.test(
  'after warm, every listed key is a hit and each loader ran once, never more than `concurrency` at once',
  async (t) => {
    const p = prefix('warm')
    const cache = createCache({ redis: sharedRedisUrl, prefix: p })
    const other = createCache({ redis: sharedRedisUrl, prefix: p })
    t.teardown(async () => {
      await cache.close()
      await other.close()
    })
    const calls = new Map<string, number>()
    let running = 0
    let most = 0
    const entries = Array.from({ length: 20 }, (_, i) => ({
      key: `product:${i}`,
      tags: ['products'],
      ttl: '1m' as const,
      load: async () => {
        calls.set(`product:${i}`, (calls.get(`product:${i}`) ?? 0) + 1)
        running++
        most = Math.max(most, running)
        await new Promise((resolve) => setTimeout(resolve, 5))
        running--
        return { id: i }
      },
    }))
    const report = await cache.warm(entries, { concurrency: 4 })
    t.same(report, { warmed: 20, failed: [] }, 'all 20 warmed, none failed')
    t.equal(most, 4, 'four loaders ran at once, no more')
    t.ok([...calls.values()].every((n) => n === 1) && calls.size === 20, 'each loader ran exactly once')

    const before = other.stats().loaderCalls
    t.same(
      await other.wrap('product:7', () => ({ id: -1 })),
      { id: 7 },
      'another instance gets the warmed value',
    )
    t.equal(other.stats().loaderCalls, before, 'without running its loader (a hit in Redis)')
    t.same(await cache.get('product:3'), { id: 3 }, 'warming instance hits too')
    t.equal(cache.stats().misses, 20, 'its only misses were the warming loads themselves')

    const again = await cache.warm(entries)
    t.same(again, { warmed: 20, failed: [] }, 'warming again reports them cached')
    t.ok(
      [...calls.values()].every((n) => n === 1),
      'without loading anything again',
    )

    await other.invalidateTags(['products'])
    t.equal(await cache.get('product:1'), undefined, 'the tags were stored with the entries')
  },
)

t.test('an async iterable is pulled as workers free up, and failures are reported, not thrown', async (t) => {
  const cache = createCache()
  t.teardown(() => cache.close())
  const warnings: string[] = []
  const logged = createCache({
    logger: { debug() {}, error() {}, warn: (_o, msg) => void warnings.push(msg ?? '') },
  })
  t.teardown(() => logged.close())
  async function* entries(): AsyncGenerator<WarmEntry> {
    yield { key: 'a', load: () => 'A' }
    yield { key: 'b', load: async () => Promise.reject(new Error('database down')) }
    yield { key: 'c', load: () => 'C', ttl: 'nonsense' as WarmEntry['ttl'] }
    yield { key: 'd', load: 'not a function' as unknown as () => string }
    yield { key: 'e', load: () => 'E' }
  }
  const report = await logged.warm(entries(), { concurrency: 2 })
  t.equal(report.warmed, 2, 'a and e warmed')
  t.same(
    report.failed.map((f) => f.key).sort(),
    ['b', 'c', 'd'],
    'the failing loader, the bad ttl and the bad load are reported',
  )
  t.match(
    report.failed.find((f) => f.key === 'b'),
    { error: { message: 'database down' } },
    "with the loader's error",
  )
  t.equal(await logged.get('a'), 'A', 'a is cached')
  t.equal(await logged.get('e'), 'E', 'e is cached despite the failures before it')
  t.equal(warnings.length, 3, 'each failure is logged')

  await t.rejects(
    cache.warm([], { concurrency: 0 }),
    { code: 'LARDER_INVALID_OPTION', message: /concurrency/ },
    'concurrency is validated',
  )
  await t.rejects(
    cache.warm(42 as unknown as []),
    { code: 'LARDER_INVALID_OPTION', message: /entries/ },
    'entries are validated',
  )
  t.same(await cache.warm([]), { warmed: 0, failed: [] }, 'nothing to warm is fine')
})
