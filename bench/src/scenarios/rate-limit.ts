import { driveAutocannon, type Load, type Measured, measureServers, printRuns } from '../child-server.js'
import { median } from '../harness.js'
import { addStats, LIMITER_HEADER, type LimiterCounters, type LimiterKind } from '../rate-limit-server.js'
import { type Row, ratio, verdict } from '../report.js'

/** The limiters of scenario 7, in the order of the table. */
const LIMITERS: ReadonlyArray<{ kind: LimiterKind; label: string; name: string }> = [
  { kind: 'bare', label: 'a', name: 'bare route, no limiter' },
  { kind: 'fastify-memory', label: 'b', name: '@fastify/rate-limit 11.2.0, memory store (fixed window)' },
  { kind: 'fastify-redis', label: 'c', name: '@fastify/rate-limit 11.2.0, Redis store (fixed window)' },
  { kind: 'larder-memory', label: 'd', name: '**Larder, memory store** (sliding window)' },
  { kind: 'larder-redis', label: 'e', name: '**Larder, Redis store** (sliding window)' },
  { kind: 'tutorial-zset', label: 'f', name: 'tutorial sorted-set sliding window (MULTI per request)' },
  {
    kind: 'headers-only',
    label: 'g',
    name: 'a hook that only sets the two draft headers (the least any limiter can cost; not a limiter)',
  },
]

const timing = {
  connections: Number(process.env.BENCH_RL_CONNECTIONS ?? 50),
  warmupS: 1,
  // Runs per server process; 3 processes per limiter.
  runs: Number(process.env.BENCH_RL_RUNS ?? 2),
  processes: Number(process.env.BENCH_RL_PROCESSES ?? 3),
  runS: 3,
}

const MEMORY_TARGET = 1.1
const REDIS_TARGET = 1.0
const BODY = '{"hello":"world"}'

type LimiterMeasured = Measured & LimiterCounters

/**
 * Drives one server with autocannon for `seconds` (or for `amount` requests): `GET /hello` on every
 * connection, no pipelining.
 */
export function drive(port: number, kind: LimiterKind, seconds: number, amount?: number): Promise<Load> {
  const header = LIMITER_HEADER[kind]
  return driveAutocannon(
    {
      url: `http://127.0.0.1:${port}/hello`,
      connections: timing.connections,
      pipelining: 1,
      ...(amount === undefined ? { duration: seconds } : { amount }),
      verifyBody: (body) => body === BODY,
    },
    {
      // Every response must be a 200 with the limiter's header.
      head(statusCode, headers) {
        let found = header === undefined
        for (let i = 0; i < headers.length && !found; i += 2) {
          if ((headers[i] as string).toLowerCase() === header) found = true
        }
        if (statusCode === 200 && found) return undefined
        return `status ${statusCode}, ${header} ${found ? 'present' : 'missing'}`
      },
      broken: (result) =>
        `${result.errors} errors, ${result.timeouts} timeouts, ${result.mismatches} other bodies, ${result.non2xx} non-2xx`,
    },
  )
}

/**
 * Scenario 7: requests/s of one Fastify route behind each rate limiter, one server per child process,
 * driven by autocannon from this process (50 connections, no pipelining), interleaved run by run; the
 * median of the runs. The limit (1e9 per minute) is never reached, so every response must be a 200.
 */
export async function rateLimiters(setup: { redisUrl: string; prefix: string }): Promise<Row[]> {
  const env = { BENCH_REDIS_URL: setup.redisUrl, BENCH_PREFIX: setup.prefix }
  const only = process.env.BENCH_RL_LIMITERS?.split(',')
  const limiters = LIMITERS.filter((l) => only === undefined || only.includes(l.label))
  const measured = await measureServers<LimiterKind, LimiterCounters, LimiterCounters>({
    script: new URL('../rate-limit-server.ts', import.meta.url),
    kinds: limiters.map((limiter) => limiter.kind),
    env: (kind) => ({ ...env, BENCH_LIMITER: kind }),
    timing,
    load: drive,
    extra: () => ({ stats: undefined }),
    record(m, usage) {
      if (usage.stats !== undefined)
        m.stats = m.stats === undefined ? usage.stats : addStats(m.stats, usage.stats)
    },
  })
  if (process.env.BENCH_HTTP_DEBUG !== undefined) printRuns(measured)
  return rows(limiters, measured)
}

function rows(limiters: typeof LIMITERS, measured: ReadonlyMap<LimiterKind, LimiterMeasured>): Row[] {
  const rate = (kind: LimiterKind) => median(measured.get(kind)?.rates ?? [])
  const failures: string[] = []
  for (const { kind, label } of limiters) {
    const m = measured.get(kind) as LimiterMeasured
    if (m.bad > 0) failures.push(`${label}: ${m.bad} bad responses (first: ${m.sample})`)
    // Larder counts every decision; in the Redis case none may have come from the memory fallback.
    const stats = m.stats
    if (stats !== undefined && (stats.refused > 0 || stats.fallbacks > 0 || stats.unavailable > 0)) {
      failures.push(`${label}: Larder stats ${JSON.stringify(stats)}`)
    }
  }
  if (failures.length > 0) throw new Error(`scenario 7: ${failures.join('; ')}`)
  const title = `7. Rate limiter, HTTP, ${timing.connections} connections, one key (all from 127.0.0.1)`
  const has = (kind: LimiterKind) => measured.has(kind)
  const out: Row[] = limiters.map(({ kind, label, name }) => {
    const m = measured.get(kind) as LimiterMeasured
    const vsBare = has('bare') ? ` (${ratio(rate(kind) / rate('bare'))} a)` : ''
    const larder =
      m.stats === undefined
        ? ''
        : `; Larder allowed ${m.stats.allowed.toLocaleString('en-US')} in the measured runs, ${m.stats.fallbacks} from fallback`
    return {
      scenario: title,
      subject: `${label}) ${name}`,
      figure:
        `${Math.round(rate(kind)).toLocaleString('en-US')} req/s${vsBare}; ` +
        `server ${median(m.cpuPerRequest).toFixed(1)} µs CPU/req, ${Math.round(median(m.busy) * 100)}% of a core ` +
        `(client ${Math.round(median(m.clientBusy) * 100)}%); ${m.requests.toLocaleString('en-US')} responses, all 200${larder}`,
    }
  })
  if (has('larder-memory') && has('fastify-memory')) {
    const value = rate('larder-memory') / rate('fastify-memory')
    out.push({
      scenario: title,
      subject: '**Larder memory / @fastify/rate-limit memory** (d / b)',
      figure: `**${value.toFixed(3)}**`,
      target: `≥ ${MEMORY_TARGET.toFixed(2)}`,
      vsTarget: ratio(value / MEMORY_TARGET),
      verdict: verdict(value >= MEMORY_TARGET),
    })
  }
  if (has('larder-redis') && has('fastify-redis')) {
    const value = rate('larder-redis') / rate('fastify-redis')
    out.push({
      scenario: title,
      subject: '**Larder Redis / @fastify/rate-limit Redis** (e / c)',
      figure: `**${value.toFixed(3)}**`,
      target: `≥ ${REDIS_TARGET.toFixed(2)}`,
      vsTarget: ratio(value / REDIS_TARGET),
      verdict: verdict(value >= REDIS_TARGET),
    })
  }
  if (has('headers-only') && has('fastify-memory')) {
    out.push({
      scenario: title,
      subject: 'the most any limiter sending the draft headers can reach (g / b)',
      figure: `**${(rate('headers-only') / rate('fastify-memory')).toFixed(3)}**`,
    })
  }
  return out
}
