import { type ChildProcess, fork } from 'node:child_process'
import { once } from 'node:events'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { median } from '../harness.js'
import {
  type FromChild,
  type LarderStats,
  LIMITER_HEADER,
  type LimiterKind,
  type ToChild,
} from '../rate-limit-server.js'
import { type Row, ratio, verdict } from '../report.js'

/** The limiters of scenario 7, in the order of the table. */
const LIMITERS: ReadonlyArray<{ kind: LimiterKind; label: string; name: string }> = [
  { kind: 'bare', label: 'a', name: 'bare route, no limiter' },
  { kind: 'fastify-memory', label: 'b', name: '@fastify/rate-limit 11.2.0, memory store (fixed window)' },
  { kind: 'fastify-redis', label: 'c', name: '@fastify/rate-limit 11.2.0, Redis store (fixed window)' },
  { kind: 'larder-memory', label: 'd', name: '**Larder, memory store** (sliding window)' },
  { kind: 'larder-redis', label: 'e', name: '**Larder, Redis store** (sliding window)' },
  { kind: 'tutorial-zset', label: 'f', name: 'tutorial sorted-set sliding window (MULTI per request)' },
]

const timing = {
  connections: Number(process.env.BENCH_RL_CONNECTIONS ?? 50),
  warmupS: 1,
  runs: Number(process.env.BENCH_RL_RUNS ?? 5),
  runS: 3,
}

const MEMORY_TARGET = 1.1
const REDIS_TARGET = 1.0
const BODY = '{"hello":"world"}'

interface Server {
  kind: LimiterKind
  child: ChildProcess
  port: number
  /** The next message from the child, or its failure. */
  next(): Promise<FromChild>
}

const serverScript = fileURLToPath(new URL('../rate-limit-server.ts', import.meta.url))
const benchDir = fileURLToPath(new URL('../..', import.meta.url))

async function startServer(kind: LimiterKind, env: Record<string, string>): Promise<Server> {
  const execArgv = ['--import', 'tsx']
  const profileDir = process.env.BENCH_CPU_PROF
  if (profileDir !== undefined) execArgv.push('--cpu-prof', `--cpu-prof-dir=${profileDir}/${kind}`)
  const child = fork(serverScript, [], {
    cwd: benchDir,
    execArgv,
    env: { ...process.env, ...env, BENCH_LIMITER: kind },
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
  /** Responses that were not 200, or lacked the limiter's header, or errors/timeouts. */
  bad: number
  sample: string | undefined
  clientBusy: number
}

/** Drives one server with autocannon for `seconds`: `GET /hello` on every connection, no pipelining. */
async function drive(port: number, kind: LimiterKind, seconds: number): Promise<Load> {
  let bad = 0
  let sample: string | undefined
  const header = LIMITER_HEADER[kind]
  const cpu = process.cpuUsage()
  const started = performance.now()
  const result = await autocannon({
    url: `http://127.0.0.1:${port}/hello`,
    connections: timing.connections,
    pipelining: 1,
    duration: seconds,
    setupClient(c) {
      c.on('headers', (head: unknown) => {
        const { statusCode, headers } = head as ParsedHead
        let found = header === undefined
        for (let i = 0; i < headers.length && !found; i += 2) {
          if ((headers[i] as string).toLowerCase() === header) found = true
        }
        if (statusCode !== 200 || !found) {
          bad++
          sample ??= `status ${statusCode}, ${header} ${found ? 'present' : 'missing'}`
        }
      })
    },
    verifyBody: (body) => body === BODY,
  })
  const used = process.cpuUsage(cpu)
  const clientBusy = (used.user + used.system) / 1_000 / (performance.now() - started)
  const broken = result.errors + result.timeouts + result.mismatches + result.non2xx
  if (broken > 0)
    sample ??= `${result.errors} errors, ${result.timeouts} timeouts, ${result.mismatches} other bodies, ${result.non2xx} non-2xx`
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
  cpuPerRequest: number[]
  busy: number[]
  clientBusy: number[]
  requests: number
  bad: number
  sample: string | undefined
  stats: LarderStats | undefined
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
  const servers: Server[] = []
  try {
    for (const limiter of limiters) servers.push(await startServer(limiter.kind, env))
    const measured = new Map<LimiterKind, Measured>(
      limiters.map(({ kind }) => [
        kind,
        {
          rates: [],
          cpuPerRequest: [],
          busy: [],
          clientBusy: [],
          requests: 0,
          bad: 0,
          sample: undefined,
          stats: undefined,
        },
      ]),
    )
    for (const server of servers) {
      await ask(server, { type: 'start' }, 'started')
      const warm = await drive(server.port, server.kind, timing.warmupS)
      await ask(server, { type: 'stop' }, 'stopped')
      const m = measured.get(server.kind) as Measured
      m.requests += warm.requests
      m.bad += warm.bad
      m.sample ??= warm.sample
    }
    for (let r = 0; r < timing.runs; r++) {
      for (let j = 0; j < servers.length; j++) {
        const server = servers[(j + r) % servers.length] as Server
        await ask(server, { type: 'start' }, 'started')
        const run = await drive(server.port, server.kind, timing.runS)
        const usage = await ask(server, { type: 'stop' }, 'stopped')
        const m = measured.get(server.kind) as Measured
        m.rates.push(run.rate)
        m.cpuPerRequest.push(usage.cpuMicros / (run.rate * (usage.wallMs / 1_000)))
        m.busy.push(usage.cpuMicros / 1_000 / usage.wallMs)
        m.clientBusy.push(run.clientBusy)
        m.requests += run.requests
        m.bad += run.bad
        m.sample ??= run.sample
        m.stats = usage.stats
      }
    }
    return rows(limiters, measured)
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

function rows(limiters: typeof LIMITERS, measured: ReadonlyMap<LimiterKind, Measured>): Row[] {
  const rate = (kind: LimiterKind) => median(measured.get(kind)?.rates ?? [])
  const failures: string[] = []
  for (const { kind, label } of limiters) {
    const m = measured.get(kind) as Measured
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
    const m = measured.get(kind) as Measured
    const vsBare = has('bare') ? ` (${ratio(rate(kind) / rate('bare'))} a)` : ''
    const larder =
      m.stats === undefined
        ? ''
        : `; Larder counted ${m.stats.allowed.toLocaleString('en-US')} allowed, ${m.stats.fallbacks} from fallback`
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
  return out
}
