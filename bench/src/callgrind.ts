/**
 * Instructions a child server executes per request, counted by valgrind's callgrind. Time on the
 * shared 2-core machine moves by ±20% from one run to the next (the same server, the same code), so a
 * few per cent between two servers cannot be told from time; the count of instructions comes back the
 * same to within about 1% (it leaves out what time also sees: cache misses, the kernel, the other core).
 *
 * The server runs under `valgrind --tool=callgrind --instr-atstart=no`: it is warmed up uncounted
 * (its hot code optimized), then counting is switched on for a fixed number of requests, off again,
 * and the count of the main thread (the one that serves the requests) dumped. Node runs with `--interpreted-frames-native-stack`: without it (or
 * `--perf-basic-prof`), under valgrind, the limiter servers spent some 30,000 more instructions per
 * request in V8's runtime (lazy compilation, object literals defined property by property), the bare
 * route and the headers-only hook did not, and nothing in a normal run shows such a cost.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { closeAll, type Load, startChild } from './child-server.js'

const run = promisify(execFile)

export interface CountedServer<Kind extends string> {
  /** The child's module (it calls child-protocol's `serveParent`). */
  script: URL
  kind: Kind
  env: Record<string, string>
  /** Requests sent before counting starts, and counted. */
  warmup: number
  counted: number
  /** Sends `amount` requests to the server on `port`. */
  load(port: number, amount: number): Promise<Load>
}

export interface Counted {
  perRequest: number
  bad: number
  sample: string | undefined
}

/** True when valgrind and callgrind_control are on the PATH. */
export async function hasCallgrind(): Promise<boolean> {
  try {
    await run('valgrind', ['--version'])
    await run('callgrind_control', ['--version'])
    return true
  } catch {
    return false
  }
}

/** The server's instructions per request over `counted` requests, after `warmup` uncounted ones. */
export async function instructionsPerRequest<Kind extends string>(
  server: CountedServer<Kind>,
): Promise<Counted> {
  const dir = await mkdtemp(join(tmpdir(), 'larder-callgrind-'))
  const child = await startChild<Kind, object>(
    server.script,
    server.kind,
    server.env,
    ['--interpreted-frames-native-stack'],
    {
      command: 'valgrind',
      args: [
        '--tool=callgrind',
        '--instr-atstart=no',
        '--smc-check=all-non-file',
        // Counts per thread: only the main thread's are taken. V8's helper threads compile and
        // collect garbage when they get to it, so their share of a window moves from run to run.
        '--separate-threads=yes',
        `--callgrind-out-file=${join(dir, 'callgrind.%p')}`,
      ],
    },
  )
  try {
    const pid = String(child.child.pid)
    const warm = await server.load(child.port, server.warmup)
    await run('callgrind_control', ['--zero', pid])
    await run('callgrind_control', ['--instr=on', pid])
    const counted = await server.load(child.port, server.counted)
    await run('callgrind_control', ['--instr=off', pid])
    await run('callgrind_control', ['--dump', pid])
    const total = await dumpedTotal(dir)
    return {
      perRequest: total / counted.requests,
      bad: warm.bad + counted.bad,
      sample: warm.sample ?? counted.sample,
    }
  } finally {
    await closeAll([child])
    await rm(dir, { recursive: true, force: true })
  }
}

/** The main thread's `totals:` in the first dump (`callgrind.<pid>.1-01`), once it is written. */
async function dumpedTotal(dir: string): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const dump = (await readdir(dir)).find((name) => name.endsWith('.1-01'))
    if (dump !== undefined) {
      const match = /^totals: (\d+)$/m.exec(await readFile(join(dir, dump), 'utf8'))
      if (match !== null) return Number(match[1])
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`callgrind wrote no dump in ${dir}`)
}
