import { createCache, parseBytes } from '@larder/core'
import t from 'tap'

t.test('createCache names the option that is wrong', async (t) => {
  const cases: Array<[unknown, string, RegExp]> = [
    [{ ttl: 'forever' }, 'LARDER_INVALID_DURATION', /^ttl: expected/],
    [{ ttl: 0 }, 'LARDER_INVALID_OPTION', /^ttl: expected a duration > 0/],
    [{ staleWhileRevalidate: -1 }, 'LARDER_INVALID_DURATION', /^staleWhileRevalidate:/],
    [{ l1: { maxBytes: 'lots' } }, 'LARDER_INVALID_OPTION', /^l1.maxBytes: expected a byte size/],
    [{ l1: { maxEntries: 1.5 } }, 'LARDER_INVALID_OPTION', /^l1.maxEntries: expected an integer/],
    [{ l1: { max: 5 } }, 'LARDER_UNKNOWN_OPTION', /l1: unknown option 'max'/],
    [{ l1: false }, 'LARDER_INVALID_OPTION', /^l1: .*needs the redis option/],
    [{ prefix: 5 }, 'LARDER_INVALID_OPTION', /^prefix: expected a string/],
    [{ breaker: { threshold: 0 } }, 'LARDER_INVALID_OPTION', /^breaker.threshold:/],
    [{ lock: { lease: 'long' } }, 'LARDER_INVALID_DURATION', /^lock.lease:/],
    [{ earlyRefresh: 'yes' }, 'LARDER_INVALID_OPTION', /^earlyRefresh:/],
    [{ logger: {} }, 'LARDER_INVALID_OPTION', /^logger:/],
    [{ redsi: 'redis://x' }, 'LARDER_UNKNOWN_OPTION', /createCache: unknown option 'redsi'/],
  ]
  for (const [options, code, message] of cases) {
    t.throws(
      () => createCache(options as Parameters<typeof createCache>[0]),
      { code, message },
      JSON.stringify(options),
    )
  }
})

t.test('byte sizes', async (t) => {
  t.equal(parseBytes('64mb', 'x'), 64 * 1024 * 1024, 'megabytes')
  t.equal(parseBytes('512kb', 'x'), 512 * 1024, 'kilobytes')
  t.equal(parseBytes(1000, 'x'), 1000, 'a number is bytes')
  t.throws(() => parseBytes(0, 'l1.maxBytes'), { message: /^l1.maxBytes:/ }, 'zero is refused')
})

t.test('defaults are applied and durations accepted as strings', async (t) => {
  const cache = createCache({ ttl: '2h', staleWhileRevalidate: '1m', l1: { maxBytes: '1mb' } })
  t.teardown(() => cache.close())
  t.equal(cache.options.defaults.ttl, 7_200_000, 'ttl')
  t.equal(cache.options.defaults.staleWhileRevalidate, 60_000, 'staleWhileRevalidate')
  t.equal(cache.options.defaults.negativeTtl, 30_000, 'negativeTtl defaults to min(ttl, 30s)')
  t.same(cache.options.l1, { maxBytes: 1024 * 1024, maxEntries: 10_000 }, 'l1 bounds')
  t.equal(cache.options.prefix, 'larder:', 'prefix')
})
