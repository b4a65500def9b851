import { type ChildProcess, fork } from 'node:child_process'
import { once } from 'node:events'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { median } from '../harness.js'
import type { FromChild, RouteKind, ToChild } from '../http-server.js'
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
}

export const httpTiming: HttpTiming = {
  connections: Number(process.env.BENCH_HTTP_CONNECTIONS ?? 50),
  warmupS: 1,
  runs: Number(process.env.BENCH_HTTP_RUNS ?? 4),
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

interface Server {
  kind: RouteKind
  child: ChildProcess
  port: number
  /** The next message from the child, or its failure. */
  next(): Promise<FromChild>
}

const serverScript = fileURLToPath(new URL('../http-server.ts', import.meta.url))
const benchDir = fileURLToPath(new URL('../..', import.meta.url))

async function startServer(
  kind: RouteKind,
  env: Record<string, string>,
  profileDir: string | undefined,
): Promise<Server> {
  const execArgv = ['--import', 'tsx']
  if (profileDir !== undefined) execArgv.push('--cpu-prof', `--cpu-prof-dir=${profileDir}/${kind}`)
  // More node flags for the servers, e.g. BENCH_SERVER_FLAGS=--trace-gc.
  execArgv.push(...(process.env.BENCH_SERVER_FLAGS ?? '').split(' ').filter((flag) => flag.length > 0))
  const child = fork(serverScript, [], {
    cwd: benchDir,
    execArgv,
    env: { ...process.env, ...env, BENCH_ROUTE: kind },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const inbox: FromChild[] = []
  const waiting: Array<(message: FromChild) => void> = []
  const deliver = (message: FromChild) => {
    const take = waiting.shift()
    if (take === undefined) inbox.push(message)
    else take(message)
  }
  child.on('message', (message: FromChild) => deliver(message))
  child.on('exit', (code) => deliver({ type: 'failed', message: `server ${kind} exited with code ${code}` }))
  const next = () =>
    new Promise<FromChild>((resolve) => {
      const queued = inbox.shift()
      if (queued === undefined) waiting.push(resolve)
      else resolve(queued)
    })
  const ready = await next()
  if (ready.type !== 'ready') {
    child.kill()
    throw new Error(`server ${kind}: ${JSON.stringify(ready)}`)
  }
  return { kind, child, port: ready.port, next }
}

async function ask<T extends FromChild['type']>(
  server: Server,
  message: ToChild,
  expected: T,
): Promise<Extract<FromChild, { type: T }>> {
  server.child.send(message)
  const answer = await server.next()
  if (answer.type !== expected) throw new Error(`server ${server.kind}: ${JSON.stringify(answer)}`)
  return answer as Extract<FromChild, { type: T }>
}

/** Raw header list of http-parser-js, as autocannon's clients emit it (its typings say otherwise). */
interface ParsedHead {
  statusCode: number
  headers: string[]
}

interface Load {
  rate: number
  requests: number
  /** Responses that were not 200 with the expected length (and `X-Cache: HIT` where it applies). */
  bad: number
  sample: string | undefined
  /** Share of one core this process (the load generator) used. */
  clientBusy: number
}

/** Drives one server with autocannon for `seconds`, each connection cycling through every id. */
async function drive(
  port: number,
  paths: readonly string[],
  options: { connections: number; seconds: number; bytes: number; expectHit: boolean },
): Promise<Load> {
  let bad = 0
  let sample: string | undefined
  const step = Math.floor(paths.length / options.connections)
  let client = 0
  const cpu = process.cpuUsage()
  const started = performance.now()
  const result = await autocannon({
    url: `http://127.0.0.1:${port}`,
    connections: options.connections,
    pipelining: 1,
    duration: options.seconds,
    // Each connection starts at its own id, so no two requests in flight share a key (no coalescing).
    setupClient(c) {
      const offset = (client++ * step) % paths.length
      c.setRequests([...paths.slice(offset), ...paths.slice(0, offset)].map((path) => ({ path })))
      c.on('headers', (head: unknown) => {
        const { statusCode, headers } = head as ParsedHead
        let length = ''
        let cache = ''
        for (let i = 0; i < headers.length; i += 2) {
          const name = (headers[i] as string).toLowerCase()
          if (name === 'content-length') length = headers[i + 1] as string
          else if (name === 'x-cache') cache = headers[i + 1] as string
        }
        if (
          statusCode !== 200 ||
          Number(length) !== options.bytes ||
          (options.expectHit && cache !== 'HIT')
        ) {
          bad++
          sample ??= `status ${statusCode}, content-length ${length}, x-cache ${cache || '(none)'}`
        }
      })
    },
    verifyBody: (body) => typeof body === 'string' && body.length === options.bytes,
  })
  const used = process.cpuUsage(cpu)
  const clientBusy = (used.user + used.system) / 1_000 / (performance.now() - started)
  const broken = result.errors + result.timeouts + result.mismatches + result.non2xx
  if (broken > 0) sample ??= `${result.errors} errors, ${result.mismatches} bodies of another length`
  return {
    rate: result.requests.total / result.duration,
    requests: result.requests.total,
    bad: bad + broken,
    sample,
    clientBusy,
  }
}

interface Measured {
  rates: number[]
  /** Server CPU time per request, µs (the server's own cost, whoever the bottleneck is). */
  cpuPerRequest: number[]
  /** Share of one core the server used during the run. */
  busy: number[]
  clientBusy: number[]
  bad: number
  sample: string | undefined
  handlerCalls: number
  queries: number
  /** Every response counted, warm-up included (to read a CPU profile of the child per request). */
  requests: number
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
  const profileDir = process.env.BENCH_CPU_PROF
  const only = (process.env.BENCH_HTTP_ROUTES ?? DEFAULT_ROUTES).split(',')
  const routes = ROUTES.filter((route) => only.includes(route.label))
  const timing = httpTiming
  const servers: Server[] = []
  try {
    // One at a time: starting them together on 2 cores can time Redis calls out (and open the breaker).
    for (const route of routes) servers.push(await startServer(route.kind, env, profileDir))
    const measured = new Map<RouteKind, Measured>(
      routes.map(({ kind }) => [
        kind,
        {
          rates: [],
          cpuPerRequest: [],
          busy: [],
          clientBusy: [],
          bad: 0,
          sample: undefined,
          handlerCalls: 0,
          queries: 0,
          requests: 0,
        },
      ]),
    )
    const load = (server: Server, seconds: number) =>
      drive(server.port, paths, {
        connections: timing.connections,
        seconds,
        bytes,
        expectHit: server.kind === 'l1' || server.kind === 'redis',
      })
    for (const server of servers) {
      await ask(server, { type: 'start' }, 'started')
      const warm = await load(server, timing.warmupS)
      await ask(server, { type: 'stop' }, 'stopped')
      const m = measured.get(server.kind) as Measured
      m.bad += warm.bad
      m.requests += warm.requests
      m.sample ??= warm.sample
    }
    for (let r = 0; r < timing.runs; r++) {
      for (let j = 0; j < servers.length; j++) {
        const server = servers[(j + r) % servers.length] as Server
        await ask(server, { type: 'start' }, 'started')
        const run = await load(server, timing.runS)
        const usage = await ask(server, { type: 'stop' }, 'stopped')
        const m = measured.get(server.kind) as Measured
        m.rates.push(run.rate)
        m.requests += run.requests
        m.cpuPerRequest.push(usage.cpuMicros / (run.rate * (usage.wallMs / 1_000)))
        m.busy.push(usage.cpuMicros / 1_000 / usage.wallMs)
        m.clientBusy.push(run.clientBusy)
        m.bad += run.bad
        m.sample ??= run.sample
        m.handlerCalls += usage.handlerCalls
        m.queries += usage.queries
      }
    }
    if (process.env.BENCH_HTTP_DEBUG !== undefined) {
      for (const [kind, m] of measured) {
        const list = (values: number[], digits: number) => values.map((v) => v.toFixed(digits)).join(' ')
        console.log(
          `\n${kind}: req/s ${list(m.rates, 0)}; server µs/req ${list(m.cpuPerRequest, 1)}; ` +
            `server busy ${list(m.busy, 2)}; client busy ${list(m.clientBusy, 2)}; ${m.requests} requests`,
        )
      }
    }
    return rows(routes, measured, bytes)
  } finally {
    await Promise.all(
      servers.map(async (server) => {
        if (server.child.exitCode !== null) return
        const exited = once(server.child, 'exit')
        server.child.send({ type: 'close' } satisfies ToChild)
        const timer = setTimeout(() => server.child.kill(), 5_000)
        await exited
        clearTimeout(timer)
      }),
    )
  }
}

function rows(routes: typeof ROUTES, measured: ReadonlyMap<RouteKind, Measured>, bytes: number): Row[] {
  const rate = (kind: RouteKind) => median(measured.get(kind)?.rates ?? [])
  const failures: string[] = []
  for (const { kind, label } of routes) {
    const m = measured.get(kind) as Measured
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
    const m = measured.get(kind) as Measured
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
