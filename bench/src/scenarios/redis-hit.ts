import { Redis } from 'ioredis'
import { larder, peers, type Setup } from '../contestants.js'
import { compareRates, formatRate, type RateContestant } from '../harness.js'
import { type Row, ratio, verdict } from '../report.js'
import { PRODUCT_JSON_BYTES, product } from '../value.js'
import { hitOperation, KEY_COUNT, keys } from './l1-hit.js'

const IN_FLIGHT = 50
const TARGET = 0.85
export const redisTiming = { warmupMs: 1_000, runs: 5, runMs: 1_000, inFlight: IN_FLIGHT }

/**
 * Scenario 3: every call goes to Redis (no in-process tier), 50 calls outstanding at all times, each
 * reading a ~1 KB JSON value; against a bare ioredis GET + JSON.parse of the same value.
 */
export async function redisHit(setup: Omit<Setup, 'tiers'>): Promise<Row[]> {
  const contestants = [
    larder({ ...setup, tiers: 'redis' }),
    ...peers.map((make) => make({ ...setup, tiers: 'redis' })),
  ]
  const raw = new Redis(setup.redisUrl)
  try {
    await Promise.all(contestants.map((c) => c.ready()))
    const rawKeys = keys.map((key) => `${setup.prefix}raw:${key}`)
    const pipeline = raw.pipeline()
    for (let i = 0; i < KEY_COUNT; i++) pipeline.set(rawKeys[i] as string, JSON.stringify(product(i)))
    await pipeline.exec()
    const rawName = 'ioredis GET + JSON.parse'
    const measured: RateContestant[] = [
      {
        name: rawName,
        op: (i) => raw.get(rawKeys[i & (KEY_COUNT - 1)] as string).then((text) => JSON.parse(text as string)),
      },
    ]
    const missCounters: Array<() => number> = []
    for (const c of contestants) {
      const { op, misses } = await hitOperation(c)
      measured.push({ name: `${c.name} \`${c.method}\``, op })
      missCounters.push(misses)
    }
    const results = await compareRates(measured, redisTiming)
    if (missCounters.some((misses) => misses() > 0))
      throw new Error('scenario 3: a measured call missed the cache')
    const baseline = results.get(rawName)?.median ?? 1
    return measured.map(({ name }, index) => {
      const rate = results.get(name)?.median ?? 0
      const row: Row = {
        scenario: `3. Redis-only hit, ${IN_FLIGHT} in flight, ${PRODUCT_JSON_BYTES} B JSON`,
        subject: index === 1 ? `${name}, \`l1: false\`` : name,
        figure: `${formatRate(rate)} (${ratio(rate / baseline)} of raw)`,
      }
      if (index === 1) {
        row.target = `≥ ${TARGET}x raw`
        row.vsTarget = ratio(rate / baseline / TARGET)
        row.verdict = verdict(rate / baseline >= TARGET)
      }
      return row
    })
  } finally {
    await Promise.all(contestants.map((c) => c.close()))
    await raw.quit()
  }
}
