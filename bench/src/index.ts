/**
 * `pnpm bench`: Larder (the built package, packages/core/dist) against bentocache, cache-manager,
 * cacheable and raw baselines, in one process and one run. Prints a markdown table; bench/README.md
 * records the figures of a real run. `tsx src/index.ts 1 3` runs only scenarios 1 and 3.
 */
import { cpus } from 'node:os'
import { performance } from 'node:perf_hooks'
import { cleanupPrefix, sharedRedisUrl } from '@larder/test-support'
import { Redis } from 'ioredis'
import { markdownTable, type Row } from './report.js'
import { httpCache } from './scenarios/http-cache.js'
import { invalidateTags } from './scenarios/invalidate.js'
import { l1Hit } from './scenarios/l1-hit.js'
import { rateLimiters } from './scenarios/rate-limit.js'
import { rateLimitInstructions } from './scenarios/rate-limit-instructions.js'
import { redisHit } from './scenarios/redis-hit.js'
import { stampedes } from './scenarios/stampede.js'
import { taggedHit } from './scenarios/tagged.js'
import { writeBehindThroughput } from './scenarios/write-behind.js'

type Scenario = (setup: { redisUrl: string; prefix: string }) => Promise<Row[]>

const scenarios: Array<[id: string, title: string, run: Scenario]> = [
  ['1', 'L1 hit through read-through', l1Hit],
  ['2', 'tagged vs untagged L1 hit', taggedHit],
  ['3', 'Redis-only hit, 50 in flight', redisHit],
  ['4', 'invalidateTags latency and SLOWLOG', invalidateTags],
  ['5', 'stampede across two instances', stampedes],
  ['6', 'HTTP response cache (Fastify, autocannon)', httpCache],
  ['7', 'rate limiter (Fastify, autocannon)', rateLimiters],
  ['8', 'write-behind vs INSERT per write (PostgreSQL)', writeBehindThroughput],
  ['9', 'rate limiter, instructions per request (callgrind)', rateLimitInstructions],
]

async function main(): Promise<void> {
  const only = new Set(process.argv.slice(2))
  const redisUrl = sharedRedisUrl
  const prefix = `bench:${process.pid}:${Date.now().toString(36)}:`
  const admin = new Redis(redisUrl)
  const rows: Row[] = []
  const started = performance.now()
  const cpu = cpus()[0]?.model ?? 'unknown CPU'
  console.log(
    `# @larder/bench — ${new Date().toISOString()}, Node ${process.version}, ${cpus().length} cores (${cpu}), Redis ${redisUrl}\n`,
  )
  try {
    for (const [id, title, run] of scenarios) {
      if (only.size > 0 && !only.has(id)) continue
      const t0 = performance.now()
      process.stdout.write(`scenario ${id}: ${title} ... `)
      rows.push(...(await run({ redisUrl, prefix })))
      console.log(`${((performance.now() - t0) / 1_000).toFixed(1)} s`)
    }
  } finally {
    await cleanupPrefix(admin, prefix)
    await admin.quit()
  }
  console.log(`\n${markdownTable(rows)}\n`)
  console.log(`total ${((performance.now() - started) / 1_000).toFixed(1)} s`)
}

main().then(
  // Some peers leave timers or sockets behind after disconnect; the figures are out, so end here.
  () => process.exit(0),
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  },
)
