import { LRUCache } from 'lru-cache'
import { bentocache, type Contestant, larder, peers, type Setup } from '../contestants.js'
import { compareRates, formatRate, type RateContestant } from '../harness.js'
import { type Row, ratio, verdict } from '../report.js'
import { type Product, product } from '../value.js'

export const KEY_COUNT = 1_024
const TARGET = 1_000_000

export interface Timing {
  warmupMs: number
  runs: number
  runMs: number
}

export const l1Timing: Timing = { warmupMs: 500, runs: 7, runMs: 300 }

/** 1,024 hot keys, cycled through so every library's LRU does its real bookkeeping on each hit. */
export const keys = Array.from({ length: KEY_COUNT }, (_, i) => `product:${i}`)

/** Calls through `contestant.wrap` (prefilled); throws if any measured call ran the loader. */
export async function hitOperation(
  contestant: Contestant,
): Promise<{ op: (i: number) => unknown; misses: () => number }> {
  for (let i = 0; i < KEY_COUNT; i++) await contestant.wrap(keys[i] as string, async () => product(i))
  let misses = 0
  const loader = async (): Promise<Product> => {
    misses++
    return product(-1)
  }
  return { op: (i) => contestant.wrap(keys[i & (KEY_COUNT - 1)] as string, loader), misses: () => misses }
}

/**
 * Scenario 1: a read-through call whose value is already in the in-process tier, for every library
 * configured with memory in front of Redis, against a bare lru-cache `get` behind an `await`.
 */
export async function l1Hit(setup: Omit<Setup, 'tiers'>): Promise<Row[]> {
  const contestants = [
    larder({ ...setup, tiers: 'tiered' }),
    ...peers.map((make) => make({ ...setup, tiers: 'tiered' })),
    bentocache({ ...setup, tiers: 'tiered' }, false),
  ]
  try {
    await Promise.all(contestants.map((c) => c.ready()))
    const lru = new LRUCache<string, Product>({ max: 10_000 })
    for (let i = 0; i < KEY_COUNT; i++) lru.set(keys[i] as string, product(i))
    const measured: RateContestant[] = [
      {
        name: 'lru-cache get (awaited)',
        op: (i) => Promise.resolve(lru.get(keys[i & (KEY_COUNT - 1)] as string)),
      },
    ]
    const missCounters: Array<() => number> = []
    for (const c of contestants) {
      const { op, misses } = await hitOperation(c)
      measured.push({ name: `${c.name} \`${c.method}\``, op })
      missCounters.push(misses)
    }
    const results = await compareRates(measured, l1Timing)
    if (missCounters.some((misses) => misses() > 0))
      throw new Error('scenario 1: a measured call missed the cache')
    const larderName = (measured[1] as RateContestant).name
    const larderRate = results.get(larderName)?.median ?? 0
    const baseline = results.get('lru-cache get (awaited)')?.median ?? 1
    return measured.map(({ name }) => {
      const rate = results.get(name)?.median ?? 0
      const row: Row = {
        scenario: '1. L1 hit, read-through',
        subject: name,
        figure: `${formatRate(rate)} (${ratio(rate / baseline)} of lru-cache)`,
      }
      if (name === larderName) {
        row.target = `≥ ${formatRate(TARGET)}`
        row.vsTarget = ratio(larderRate / TARGET)
        row.verdict = verdict(larderRate >= TARGET)
      }
      return row
    })
  } finally {
    await Promise.all(contestants.map((c) => c.close()))
  }
}
