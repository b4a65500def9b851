import { createCache } from '@larder/core'
import type { Setup } from '../contestants.js'
import { compareRates, formatRate } from '../harness.js'
import { type Row, ratio, verdict } from '../report.js'
import { type Product, product } from '../value.js'
import { KEY_COUNT, l1Timing } from './l1-hit.js'

const TARGET = 0.9

function tagsOf(i: number): string[] {
  return [`product:${i}`, `category:${i % 20}`, 'products']
}

/**
 * Scenario 2: Larder L1 hits on entries written with 3 tags against entries written with none. Every
 * tag was invalidated once before the entries were written (so L1 holds an invalidation record for
 * each), and an unrelated tag is invalidated after they were written: every entry is older than the
 * latest tag invalidation, as in a cache whose tags keep being invalidated by writes.
 */
export async function taggedHit(setup: Omit<Setup, 'tiers'>): Promise<Row[]> {
  const cache = createCache({ redis: setup.redisUrl, prefix: `${setup.prefix}tagged:`, ttl: '10m' })
  try {
    await cache.ready()
    const allTags = new Set<string>()
    for (let i = 0; i < KEY_COUNT; i++) for (const tag of tagsOf(i)) allTags.add(tag)
    await cache.invalidateTags([...allTags])
    const plainKeys = Array.from({ length: KEY_COUNT }, (_, i) => `plain:${i}`)
    const taggedKeys = Array.from({ length: KEY_COUNT }, (_, i) => `tagged:${i}`)
    for (let i = 0; i < KEY_COUNT; i++) {
      await cache.wrap(plainKeys[i] as string, async () => product(i))
      await cache.wrap(taggedKeys[i] as string, async () => product(i), { tags: tagsOf(i) })
    }
    await cache.invalidateTags(['unrelated'])
    let misses = 0
    const loader = async (): Promise<Product> => {
      misses++
      return product(-1)
    }
    const results = await compareRates(
      [
        { name: 'untagged', op: (i) => cache.wrap(plainKeys[i & (KEY_COUNT - 1)] as string, loader) },
        { name: 'tagged', op: (i) => cache.wrap(taggedKeys[i & (KEY_COUNT - 1)] as string, loader) },
      ],
      { ...l1Timing, runs: 9 },
    )
    if (misses > 0) throw new Error('scenario 2: a measured call missed the cache')
    const untagged = results.get('untagged')?.median ?? 0
    const tagged = results.get('tagged')?.median ?? 0
    const ratioTagged = tagged / untagged
    return [
      {
        scenario: '2. Tagged L1 hit',
        subject: 'Larder `wrap`, entry with 3 tags vs none',
        figure: `${formatRate(tagged)} vs ${formatRate(untagged)} = ${ratioTagged.toFixed(3)}`,
        target: `ratio ≥ ${TARGET}`,
        vsTarget: ratio(ratioTagged / TARGET),
        verdict: verdict(ratioTagged >= TARGET),
      },
    ]
  } finally {
    await cache.close()
  }
}
