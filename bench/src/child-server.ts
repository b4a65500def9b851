/**
 * The parent side of the HTTP scenarios: one Fastify server per child process (`node --import tsx`,
 * driven over IPC, see child-protocol.ts), loaded by autocannon from this process, interleaved run by
 * run so a slow moment of the machine does not fall on one server only. Each child reports its CPU
 * time per run, so the scenarios give the server's CPU per request too.
 * `BENCH_CPU_PROF=dir` profiles the servers (`--cpu-prof`, one directory per server).
 */
import { type ChildProcess, fork } from 'node:child_process'
import { once } from 'node:events'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import type { FromChild, ToChild } from './child-protocol.js'

export interface ChildServer<Kind extends string, Stopped extends object> {
  kind: Kind
  child: ChildProcess
  port: number
  /** Sends `message` and waits for the answer of type `expected` (anything else throws). */
  ask<T extends FromChild['type']>(
    message: ToChild,
    expected: T,
  ): Promise<Extract<FromChild<Stopped>, { type: T }>>
}

const benchDir = fileURLToPath(new URL('..', import.meta.url))

/** A program that runs node for the child, e.g. valgrind: `command ...args node ...node flags script`. */
export interface Launcher {
  command: string
  args: readonly string[]
}

export async function startChild<Kind extends string, Stopped extends object>(
  script: URL,
  kind: Kind,
  env: Record<string, string>,
  flags: readonly string[],
  launcher?: Launcher,
): Promise<ChildServer<Kind, Stopped>> {
  const execArgv = ['--import', 'tsx']
  const profileDir = process.env.BENCH_CPU_PROF
  if (profileDir !== undefined) execArgv.push('--cpu-prof', `--cpu-prof-dir=${profileDir}/${kind}`)
  execArgv.push(...flags)
  const child = fork(fileURLToPath(script), [], {
    cwd: benchDir,
    ...(launcher === undefined
      ? { execArgv }
      : { execPath: launcher.command, execArgv: [...launcher.args, process.execPath, ...execArgv] }),
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  // Messages wait in `inbox` until asked for; askers wait in `waiting` until a message comes.
  const inbox: FromChild<Stopped>[] = []
  const waiting: Array<(message: FromChild<Stopped>) => void> = []
  const deliver = (message: FromChild<Stopped>) => {
    const take = waiting.shift()
    if (take === undefined) inbox.push(message)
    else take(message)
  }
  child.on('message', (message: FromChild<Stopped>) => deliver(message))
  child.on('exit', (code) => deliver({ type: 'failed', message: `server ${kind} exited with code ${code}` }))
  const next = () =>
    new Promise<FromChild<Stopped>>((resolve) => {
      const queued = inbox.shift()
      if (queued === undefined) waiting.push(resolve)
      else resolve(queued)
    })
  const ready = await next()
  if (ready.type !== 'ready') {
    child.kill()
    throw new Error(`server ${kind}: ${JSON.stringify(ready)}`)
  }
  return {
    kind,
    child,
    port: ready.port,
    async ask(message, expected) {
      child.send(message)
      const answer = await next()
      if (answer.type !== expected) throw new Error(`server ${kind}: ${JSON.stringify(answer)}`)
      return answer as Extract<FromChild<Stopped>, { type: typeof expected }>
    },
  }
}

/** Asks every child still running to close, killing it after 5 s. */
export async function closeAll(servers: ReadonlyArray<ChildServer<string, object>>): Promise<void> {
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

/** Raw header list of http-parser-js, as autocannon's clients emit it (its typings say otherwise). */
interface ParsedHead {
  statusCode: number
  headers: string[]
}

export interface Load {
  rate: number
  requests: number
  /** Responses the scenario's check refused, plus errors, timeouts, other bodies and non-2xx. */
  bad: number
  sample: string | undefined
  /** Share of one core this process (the load generator) used. */
  clientBusy: number
}

export interface LoadCheck {
  /** Why a response head is wrong (its status and raw header list), or undefined when it is right. */
  head(statusCode: number, headers: readonly string[]): string | undefined
  /** The first failure to report when autocannon counted errors, timeouts, other bodies or non-2xx. */
  broken(result: autocannon.Result): string
}

/** One autocannon run with `options`, each response head checked by `check`. */
export async function driveAutocannon(options: autocannon.Options, check: LoadCheck): Promise<Load> {
  let bad = 0
  let sample: string | undefined
  const cpu = process.cpuUsage()
  const started = performance.now()
  const result = await autocannon({
    ...options,
    setupClient(c) {
      options.setupClient?.(c)
      c.on('headers', (head: unknown) => {
        const { statusCode, headers } = head as ParsedHead
        const wrong = check.head(statusCode, headers)
        if (wrong !== undefined) {
          bad++
          sample ??= wrong
        }
      })
    },
  })
  const used = process.cpuUsage(cpu)
  const clientBusy = (used.user + used.system) / 1_000 / (performance.now() - started)
  const broken = result.errors + result.timeouts + result.mismatches + result.non2xx
  if (broken > 0) sample ??= check.broken(result)
  return {
    rate: result.requests.total / result.duration,
    requests: result.requests.total,
    bad: bad + broken,
    sample,
    clientBusy,
  }
}

export interface Measured {
  rates: number[]
  /** Server CPU time per request, µs (the server's own cost, whoever the bottleneck is). */
  cpuPerRequest: number[]
  /** Share of one core the server used during the run. */
  busy: number[]
  clientBusy: number[]
  bad: number
  sample: string | undefined
  /** Every response counted, warm-up included (to read a CPU profile of the child per request). */
  requests: number
}

export interface ServerBench<Kind extends string, Stopped extends object, Extra extends object> {
  /** The child's module (it calls child-protocol's `serveParent`). */
  script: URL
  kinds: readonly Kind[]
  /** The child's environment besides this process's (its kind among it). */
  env(kind: Kind): Record<string, string>
  /** More node flags for the children. */
  flags?: readonly string[]
  /**
   * `processes` servers per kind (default 1), each measured `runs` times: a process's JIT and memory
   * layout make it faster or slower for its whole life, so one process per kind is a draw of one.
   */
  timing: { warmupS: number; runs: number; runS: number; processes?: number }
  /** Loads the server on `port` for `seconds`. */
  load(port: number, kind: Kind, seconds: number): Promise<Load>
  /** The scenario's own figures per server, and how a measured run's `stopped` adds to them. */
  extra(): Extra
  record(m: Measured & Extra, usage: Stopped): void
}

/**
 * Starts `processes` children per kind (one at a time: starting them together on 2 cores can time
 * Redis calls out), warms each for `warmupS`, then measures `runs` rounds of every server, each round
 * starting one server further, and closes them. Returns each kind's runs, from all its processes
 * (their medians are the scenario's).
 */
export async function measureServers<Kind extends string, Stopped extends object, Extra extends object>(
  bench: ServerBench<Kind, Stopped, Extra>,
): Promise<Map<Kind, Measured & Extra>> {
  const { timing } = bench
  const servers: ChildServer<Kind, Stopped>[] = []
  try {
    const processes = timing.processes ?? 1
    // Interleaved by kind (a b c a b c), so the rounds spread each kind's processes over the run.
    for (let p = 0; p < processes; p++) {
      for (const kind of bench.kinds) {
        servers.push(await startChild<Kind, Stopped>(bench.script, kind, bench.env(kind), bench.flags ?? []))
      }
    }
    const measured = new Map<Kind, Measured & Extra>(
      bench.kinds.map((kind) => [
        kind,
        {
          rates: [],
          cpuPerRequest: [],
          busy: [],
          clientBusy: [],
          bad: 0,
          sample: undefined,
          requests: 0,
          ...bench.extra(),
        },
      ]),
    )
    for (const server of servers) {
      await server.ask({ type: 'start' }, 'started')
      const warm = await bench.load(server.port, server.kind, timing.warmupS)
      await server.ask({ type: 'stop' }, 'stopped')
      const m = measured.get(server.kind) as Measured & Extra
      m.bad += warm.bad
      m.requests += warm.requests
      m.sample ??= warm.sample
    }
    for (let r = 0; r < timing.runs; r++) {
      for (let j = 0; j < servers.length; j++) {
        const server = servers[(j + r) % servers.length] as ChildServer<Kind, Stopped>
        await server.ask({ type: 'start' }, 'started')
        const run = await bench.load(server.port, server.kind, timing.runS)
        const usage = await server.ask({ type: 'stop' }, 'stopped')
        const m = measured.get(server.kind) as Measured & Extra
        m.rates.push(run.rate)
        m.requests += run.requests
        m.cpuPerRequest.push(usage.cpuMicros / (run.rate * (usage.wallMs / 1_000)))
        m.busy.push(usage.cpuMicros / 1_000 / usage.wallMs)
        m.clientBusy.push(run.clientBusy)
        m.bad += run.bad
        m.sample ??= run.sample
        bench.record(m, usage)
      }
    }
    return measured
  } finally {
    await closeAll(servers)
  }
}

/** Every run of every server, in the order measured (`BENCH_HTTP_DEBUG=1`). */
export function printRuns(measured: ReadonlyMap<string, Measured>): void {
  const list = (values: number[], digits: number) => values.map((v) => v.toFixed(digits)).join(' ')
  for (const [kind, m] of measured) {
    console.log(
      `\n${kind}: req/s ${list(m.rates, 0)}; server µs/req ${list(m.cpuPerRequest, 1)}; ` +
        `server busy ${list(m.busy, 2)}; client busy ${list(m.clientBusy, 2)}; ${m.requests} requests`,
    )
  }
}
