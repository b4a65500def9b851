import { hasCallgrind, instructionsPerRequest } from '../callgrind.js'
import type { LimiterKind } from '../rate-limit-server.js'
import { type Row, ratio, verdict } from '../report.js'
import { drive } from './rate-limit.js'

/** The memory-store servers of scenario 7 (a Redis store's work would be in Redis, uncounted). */
const SERVERS: ReadonlyArray<{ kind: LimiterKind; label: string; name: string }> = [
  { kind: 'bare', label: 'a', name: 'bare route, no limiter' },
  { kind: 'fastify-memory', label: 'b', name: '@fastify/rate-limit 11.2.0, memory store (fixed window)' },
  { kind: 'larder-memory', label: 'd', name: '**Larder, memory store** (sliding window)' },
  { kind: 'headers-only', label: 'g', name: 'a hook that only sets the two draft headers (not a limiter)' },
]

const TARGET = 1.1
const warmup = Number(process.env.BENCH_CG_WARMUP ?? 60_000)
const counted = Number(process.env.BENCH_CG_REQUESTS ?? 40_000)
// Two servers under valgrind at a time: one per core.
const PARALLEL = 2

/**
 * Scenario 9: scenario 7's memory-store servers under callgrind, the same route and load (autocannon,
 * 50 connections), counting the server's instructions per request over `counted` requests after
 * `warmup` uncounted ones. The count repeats where time on this machine does not, so it decides
 * differences of a few per cent that scenario 7's requests/s cannot.
 */
export async function rateLimitInstructions(setup: { redisUrl: string; prefix: string }): Promise<Row[]> {
  const title = `9. Rate limiter, instructions per request (callgrind, ${counted.toLocaleString('en-US')} requests after ${warmup.toLocaleString('en-US')})`
  if (!(await hasCallgrind())) {
    return [{ scenario: title, subject: 'skipped', figure: 'valgrind is not installed' }]
  }
  const env = { BENCH_REDIS_URL: setup.redisUrl, BENCH_PREFIX: setup.prefix }
  const perRequest = new Map<LimiterKind, number>()
  const failures: string[] = []
  for (let i = 0; i < SERVERS.length; i += PARALLEL) {
    await Promise.all(
      SERVERS.slice(i, i + PARALLEL).map(async ({ kind, label }) => {
        const result = await instructionsPerRequest({
          script: new URL('../rate-limit-server.ts', import.meta.url),
          kind,
          env: { ...env, BENCH_LIMITER: kind },
          warmup,
          counted,
          load: (port, amount) => drive(port, kind, 0, amount),
        })
        if (result.bad > 0) failures.push(`${label}: ${result.bad} bad responses (first: ${result.sample})`)
        perRequest.set(kind, result.perRequest)
      }),
    )
  }
  if (failures.length > 0) throw new Error(`scenario 9: ${failures.join('; ')}`)
  const count = (kind: LimiterKind) => perRequest.get(kind) as number
  const rows: Row[] = SERVERS.map(({ kind, label, name }) => ({
    scenario: title,
    subject: `${label}) ${name}`,
    figure: `${Math.round(count(kind)).toLocaleString('en-US')} instructions (${Math.round(count(kind) - count('bare')).toLocaleString('en-US')} over a)`,
  }))
  // Fewer instructions serve more requests: b's count over d's is d's throughput over b's.
  const value = count('fastify-memory') / count('larder-memory')
  rows.push({
    scenario: title,
    subject:
      '**Larder memory / @fastify/rate-limit memory** (b / d instructions: d / b requests per instruction)',
    figure: `**${value.toFixed(3)}**`,
    target: `≥ ${TARGET.toFixed(2)}`,
    vsTarget: ratio(value / TARGET),
    verdict: verdict(value >= TARGET),
  })
  rows.push({
    scenario: title,
    subject: 'the most any limiter sending the draft headers can reach (b / g)',
    figure: `**${(count('fastify-memory') / count('headers-only')).toFixed(3)}**`,
  })
  return rows
}
