import {
  driveAutocannon,
  type Load,
  type LoadCheck,
  type Measured,
  measureServers,
  printRuns,
} from '../child-server.js'
import { median } from '../harness.js'
import type { RouteCounters, RouteKind } from '../http-server.js'
import { type Row, ratio, verdict } from '../report.js'
import { product } from '../value.js'

/** The routes of scenario 6, in the order of the table. */
const ROUTES: ReadonlyArray<{ kind: RouteKind; label: string; name: string }> = [
  { kind: 'object', label: 'a', name: 'route returning a precomputed object' },
  { kind: 'buffer', label: 'b', name: 'route returning a pre-serialized Buffer (the limit)' },
  { kind: 'l1', label: 'c', name: '**`config.cache`, L1 hit**' },
  { kind: 'redis', label: 'd', name: '**`config.cache`, Redis hit (`l1: false`)**' },
  { kind: 'query', label: 'e', name: 'uncached, awaiting a 5 ms query' },
  { kind: 'cache-aside', label: 'f', name: 'tutorial cache-aside (Redis `GET` + `JSON.parse`)' },
  { kind: 'redis-bytes', label: 'g', name: 'Redis `GET` of the bytes, sent as a Buffer (the limit for d)' },
]
/** `BENCH_HTTP_ROUTES=b,c` measures only those routes. */
const DEFAULT_ROUTES = 'a,b,c,d,e,f,g'

export interface HttpTiming {
  connections: number
  warmupS: number
  runs: number
  runS: number
  processes: number
}

export const httpTiming: HttpTiming = {
  connections: Number(process.env.BENCH_HTTP_CONNECTIONS ?? 50),
  warmupS: 1,
  // Runs per server process; 3 processes per route.
  runs: Number(process.env.BENCH_HTTP_RUNS ?? 2),
  processes: Number(process.env.BENCH_HTTP_PROCESSES ?? 3),
  // autocannon ends a run on its 1 s sampling tick: whole seconds.
  runS: 2,
}

const KEY_COUNT = 1_024
const L1_TARGET = 0.9
const REDIS_TARGET = 1.4

/** 1,024 product ids whose JSON has the same length, so every response is checked against one length. */
function sameLengthIds(): { ids: number[]; bytes: number } {
  const length = (id: number) => Buffer.byteLength(JSON.stringify(product(id)))
  const first = 10_001
  const bytes = length(first)
  const ids: number[] = []
  for (let id = first; ids.length < KEY_COUNT; id++) if (length(id) === bytes) ids.push(id)
  return { ids, bytes }
}

type RouteMeasured = Measured & RouteCounters

/** Every response must be a 200 with the expected length (and `X-Cache: HIT` where it applies). */
function checkHead(bytes: number, expectHit: boolean): LoadCheck {
  return {
    head(statusCode, headers) {
      let length = ''
      let cache = ''
      for (let i = 0; i < headers.length; i += 2) {
        const name = (headers[i] as string).toLowerCase()
        if (name === 'content-length') length = headers[i + 1] as string
        else if (name === 'x-cache') cache = headers[i + 1] as string
      }
      if (statusCode === 200 && Number(length) === bytes && (!expectHit || cache === 'HIT')) return undefined
      return `status ${statusCode}, content-length ${length}, x-cache ${cache || '(none)'}`
    },
    broken: (result) => `${result.errors} errors, ${result.mismatches} bodies of another length`,
  }
}

/** Drives one server with autocannon for `seconds`, each connection cycling through every id. */
function drive(
  port: number,
  paths: readonly string[],
  options: { connections: number; seconds: number; bytes: number; expectHit: boolean },
): Promise<Load> {
  const step = Math.floor(paths.length / options.connections)
  let client = 0
  return driveAutocannon(
    {
      url: `http://127.0.0.1:${port}`,
      connections: options.connections,
      pipelining: 1,
      duration: options.seconds,
      // Each connection starts at its own id, so no two requests in flight share a key (no coalescing).
      setupClient(c) {
        const offset = (client++ * step) % paths.length
        c.setRequests([...paths.slice(offset), ...paths.slice(0, offset)].map((path) => ({ path })))
      },
      verifyBody: (body) => typeof body === 'string' && body.length === options.bytes,
    },
    checkHead(options.bytes, options.expectHit),
  )
}

/**
 * Scenario 6: requests/s of Fastify routes, one server per child process, driven by autocannon from
 * this process (50 connections, no pipelining), interleaved run by run; the median of the runs. Each
 * child also reports its CPU time, so the table gives the server's CPU per request too; the verdicts
 * compare that (what a saturated core sustains), steadier than req/s on a shared machine.
 * `BENCH_HTTP_DEBUG=1` prints every run; `BENCH_CPU_PROF=dir` profiles the servers (`--cpu-prof`).
 */
export async function httpCache(setup: { redisUrl: string; prefix: string }): Promise<Row[]> {
  const { ids, bytes } = sameLengthIds()
  const paths = ids.map((id) => `/products/${id}`)
  const env = {
    BENCH_IDS: ids.join(','),
    BENCH_REDIS_URL: setup.redisUrl,
    BENCH_PREFIX: setup.prefix,
  }
  const only = (process.env.BENCH_HTTP_ROUTES ?? DEFAULT_ROUTES).split(',')
  const routes = ROUTES.filter((route) => only.includes(route.label))
  const timing = httpTiming
  const measured = await measureServers<RouteKind, RouteCounters, RouteCounters>({
    script: new URL('../http-server.ts', import.meta.url),
    kinds: routes.map((route) => route.kind),
    env: (kind) => ({ ...env, BENCH_ROUTE: kind }),
    // More node flags for the servers, e.g. BENCH_SERVER_FLAGS=--trace-gc.
    flags: (process.env.BENCH_SERVER_FLAGS ?? '').split(' ').filter((flag) => flag.length > 0),
    timing,
    load: (port, kind, seconds) =>
      drive(port, paths, {
        connections: timing.connections,
        seconds,
        bytes,
        expectHit: kind === 'l1' || kind === 'redis',
      }),
    extra: () => ({ handlerCalls: 0, queries: 0 }),
    record(m, usage) {
      m.handlerCalls += usage.handlerCalls
      m.queries += usage.queries
    },
  })
  if (process.env.BENCH_HTTP_DEBUG !== undefined) printRuns(measured)
  return rows(routes, measured, bytes)
}

function rows(routes: typeof ROUTES, measured: ReadonlyMap<RouteKind, RouteMeasured>, bytes: number): Row[] {
  const rate = (kind: RouteKind) => median(measured.get(kind)?.rates ?? [])
  const failures: string[] = []
  for (const { kind, label } of routes) {
    const m = measured.get(kind) as RouteMeasured
    if (m.bad > 0) failures.push(`${label}: ${m.bad} bad responses (first: ${m.sample})`)
    if ((kind === 'l1' || kind === 'redis') && m.handlerCalls > 0)
      failures.push(`${label}: the handler ran ${m.handlerCalls} times on a warmed cache`)
    if ((kind === 'cache-aside' || kind === 'redis-bytes') && m.queries > 0)
      failures.push(`${label}: ${m.queries} cache-aside misses during the runs`)
  }
  if (failures.length > 0) throw new Error(`scenario 6: ${failures.join('; ')}`)
  const title = `6. HTTP, 50 connections, ${bytes} B JSON`
  const has = (kind: RouteKind) => measured.has(kind)
  // What one saturated server core sustains: 1 / (server CPU per request). It moves far less than
  // the req/s medians when other processes share the machine, so the verdicts are taken on it.
  const capacity = (kind: RouteKind) => 1e6 / median(measured.get(kind)?.cpuPerRequest ?? [])
  const out: Row[] = routes.map(({ kind, label, name }) => {
    const m = measured.get(kind) as RouteMeasured
    const vsObject = has('object') ? ` (${ratio(rate(kind) / rate('object'))} a)` : ''
    return {
      scenario: title,
      subject: `${label}) ${name}`,
      figure:
        `${Math.round(rate(kind)).toLocaleString('en-US')} req/s${vsObject}; server ` +
        `${median(m.cpuPerRequest).toFixed(1)} µs CPU/req (${Math.round(capacity(kind)).toLocaleString('en-US')} req/s a core), ` +
        `busy ${Math.round(median(m.busy) * 100)}% (client ${Math.round(median(m.clientBusy) * 100)}%)`,
    }
  })
  const compare = (kind: RouteKind, base: RouteKind, subject: string, target?: number): Row => {
    const value = capacity(kind) / capacity(base)
    const row: Row = {
      scenario: title,
      subject,
      figure: `**${value.toFixed(3)}** a core (req/s medians: ${(rate(kind) / rate(base)).toFixed(3)})`,
    }
    if (target !== undefined) {
      row.target = `≥ ${target.toFixed(2)}`
      row.vsTarget = ratio(value / target)
      row.verdict = verdict(value >= target)
    }
    return row
  }
  if (has('l1') && has('buffer'))
    out.push(compare('l1', 'buffer', '**L1 hit / Buffer route** (c / b)', L1_TARGET))
  if (has('redis') && has('cache-aside'))
    out.push(compare('redis', 'cache-aside', '**Redis hit / tutorial cache-aside** (d / f)', REDIS_TARGET))
  if (has('redis-bytes') && has('cache-aside'))
    out.push(compare('redis-bytes', 'cache-aside', 'the most any Redis hit can reach (g / f)'))
  if (has('buffer') && has('object')) out.push(compare('buffer', 'object', 'Buffer / object route (b / a)'))
  if (has('cache-aside') && has('object'))
    out.push(compare('cache-aside', 'object', 'cache-aside / object route (f / a)'))
  return out
}
