import { type Cache, createCache } from '@larder/core'
import { startRedisServer } from '@larder/test-support'
import { Redis } from 'ioredis'
import { boundedAll, formatMs, latencies, median, percentile } from '../harness.js'
import { type Row, ratio, verdict } from '../report.js'

const TARGET_MS = 1
const WRITE_CONCURRENCY = 64
const INVALIDATIONS = 1_000
const SLOWLOG_INVALIDATIONS = 100
const SLOWLOG_ENTRIES = 100_000
const SLOWER_THAN_US = 1_000

/** Writes `count` small entries that all carry `tag` (plus one of their own), 64 writes at a time. */
async function writeTagged(cache: Cache, name: string, tag: string, count: number): Promise<void> {
  await boundedAll(count, WRITE_CONCURRENCY, (i) =>
    cache.set(`${name}:${i}`, { id: i, name: `entry ${i}` }, { tags: [tag, `${name}:${i}`] }),
  )
  if ((await cache.get(`${name}:${count - 1}`)) === undefined)
    throw new Error(`scenario 4: ${name} was not written`)
}

/**
 * Latencies of `count` invalidations, after as many unmeasured ones: in a fresh process the first
 * thousand or so calls are slowed by JIT compilation and GC threads competing for the 2 cores
 * (p99 1.5-2 ms whatever the entry count); the figures are the steady state.
 */
async function invalidationLatencies(cache: Cache, tag: string, count: number): Promise<number[]> {
  await latencies(count, () => cache.invalidateTags([tag]))
  return latencies(count, () => cache.invalidateTags([tag]))
}

/**
 * Scenario 4: `invalidateTags` on a tag carried by 1,000 and by 100,000 entries, on a Redis-only cache;
 * then, on a private redis-server logging every command slower than 1 ms, the SLOWLOG entries
 * recorded during 100 invalidations of a tag carried by 100,000 entries.
 */
export async function invalidateTags(setup: { redisUrl: string; prefix: string }): Promise<Row[]> {
  const rows: Row[] = []
  const cache = createCache({ redis: setup.redisUrl, l1: false, prefix: `${setup.prefix}inv:`, ttl: '10m' })
  try {
    await cache.ready()
    for (const count of [1_000, 100_000]) {
      const name = `n${count}`
      const tag = `tag-${count}`
      await writeTagged(cache, name, tag, count)
      const times = await invalidationLatencies(cache, tag, INVALIDATIONS)
      if ((await cache.get(`${name}:0`)) !== undefined)
        throw new Error('scenario 4: invalidation had no effect')
      const p50 = median(times)
      const p99 = percentile(times, 99)
      rows.push({
        scenario: '4. invalidateTags latency',
        subject: `tag on ${count.toLocaleString('en-US')} entries, ${INVALIDATIONS} calls`,
        figure: `median ${formatMs(p50)}, p99 ${formatMs(p99)}, max ${formatMs(Math.max(...times))}`,
        target: `< ${TARGET_MS} ms`,
        vsTarget: `p50 ${ratio(p50 / TARGET_MS)}, p99 ${ratio(p99 / TARGET_MS)} of the bound`,
        verdict: verdict(p99 < TARGET_MS),
      })
    }
  } finally {
    await cache.close()
  }
  rows.push(await slowlog())
  return rows
}

interface SlowlogEntry {
  micros: number
  command: string
}

async function slowlog(): Promise<Row> {
  const server = await startRedisServer({
    args: ['--slowlog-log-slower-than', String(SLOWER_THAN_US), '--slowlog-max-len', '10000'],
  })
  const admin = new Redis(server.url)
  const cache = createCache({ redis: server.url, l1: false, prefix: 'slowlog:', ttl: '10m' })
  try {
    await cache.ready()
    await writeTagged(cache, 'big', 'tag-big', SLOWLOG_ENTRIES)
    const keysInRedis = await admin.dbsize()
    // A few first: the first one loads the script into Redis (EVALSHA, NOSCRIPT, EVAL).
    await latencies(10, () => cache.invalidateTags(['tag-big']))
    await admin.slowlog('RESET')
    await admin.config('RESETSTAT')
    const times = await latencies(SLOWLOG_INVALIDATIONS, () => cache.invalidateTags(['tag-big']))
    const raw = (await admin.slowlog('GET', 10_000)) as Array<[number, number, number, string[]]>
    // The invalidation script (INCR + SET + PUBLISH) is the only EVALSHA run meanwhile.
    const stats = await admin.info('commandstats')
    const perCall = /cmdstat_evalsha:calls=(\d+),usec=\d+,usec_per_call=([\d.]+)/.exec(stats)
    const entries: SlowlogEntry[] = raw.map(([, , micros, args]) => ({
      micros,
      command: args.slice(0, 2).join(' '),
    }))
    const slowest = entries.reduce<SlowlogEntry | undefined>(
      (a, b) => (a === undefined || b.micros > a.micros ? b : a),
      undefined,
    )
    return {
      scenario: '4. SLOWLOG (> 1 ms) during invalidations',
      subject: `${SLOWLOG_INVALIDATIONS} invalidations, tag on ${SLOWLOG_ENTRIES.toLocaleString('en-US')} entries (${keysInRedis.toLocaleString('en-US')} keys in Redis)`,
      figure: `${
        slowest === undefined
          ? '0 entries'
          : `${entries.length} entries, slowest ${(slowest.micros / 1_000).toFixed(2)} ms (${slowest.command})`
      }; Redis time per invalidation ${perCall?.[2] ?? '?'} µs over ${perCall?.[1] ?? '?'} script calls; client median ${formatMs(median(times))}`,
      target: '0 entries',
      vsTarget: `${entries.length}`,
      verdict: verdict(entries.length === 0),
    }
  } finally {
    await cache.close()
    await admin.quit()
    await server.close()
  }
}
