import { performance } from 'node:perf_hooks'

/** One operation under test: it is awaited, whatever it returns. */
export type Operation = (i: number) => unknown

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

/** Nearest-rank percentile (p in 0..100). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)))
  return sorted[rank - 1] as number
}

/**
 * Ops/s of `op` called one after another, each awaited (what a request handler does), for about `ms`.
 * The clock is read once per batch so it costs nothing next to the operation.
 */
export async function sequentialRate(op: Operation, ms: number, batch = 1_000): Promise<number> {
  let done = 0
  const started = performance.now()
  const end = started + ms
  let now = started
  while (now < end) {
    for (let i = 0; i < batch; i++) await op(done + i)
    done += batch
    now = performance.now()
  }
  return (done * 1_000) / (now - started)
}

/** Ops/s with `inFlight` calls outstanding at every moment (each worker starts its next call when one ends). */
export async function concurrentRate(op: Operation, ms: number, inFlight: number): Promise<number> {
  let done = 0
  const started = performance.now()
  const end = started + ms
  const worker = async (w: number): Promise<void> => {
    let i = w
    while (performance.now() < end) {
      await op(i)
      i += inFlight
      done++
    }
  }
  await Promise.all(Array.from({ length: inFlight }, (_, w) => worker(w)))
  return (done * 1_000) / (performance.now() - started)
}

export interface RateContestant {
  name: string
  op: Operation
}

export interface RateOptions {
  /** Time spent on each contestant before measuring, so the JIT has compiled its path. */
  warmupMs: number
  runs: number
  runMs: number
  /** When set, calls are kept this many in flight; otherwise one after another. */
  inFlight?: number
}

/**
 * Measures several contestants in the same process, interleaved run by run (A B C, A B C, ...) so a
 * slow moment of the machine or a GC does not fall on one of them only. Returns the median ops/s.
 */
export async function compareRates(
  contestants: readonly RateContestant[],
  options: RateOptions,
): Promise<Map<string, { median: number; runs: number[] }>> {
  const measure = (op: Operation, ms: number): Promise<number> =>
    options.inFlight === undefined ? sequentialRate(op, ms) : concurrentRate(op, ms, options.inFlight)
  for (const c of contestants) await measure(c.op, options.warmupMs)
  const runs = new Map<string, number[]>(contestants.map((c) => [c.name, []]))
  for (let r = 0; r < options.runs; r++) {
    // Rotate the order each run, so no contestant always follows the same one.
    for (let j = 0; j < contestants.length; j++) {
      const c = contestants[(j + r) % contestants.length] as RateContestant
      runs.get(c.name)?.push(await measure(c.op, options.runMs))
    }
  }
  return new Map(
    contestants.map((c) => [
      c.name,
      { median: median(runs.get(c.name) ?? []), runs: runs.get(c.name) ?? [] },
    ]),
  )
}

/** Runs `fn` `count` times and returns each duration in ms. */
export async function latencies(count: number, fn: (i: number) => Promise<unknown>): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < count; i++) {
    const started = performance.now()
    await fn(i)
    out.push(performance.now() - started)
  }
  return out
}

/** Runs `task(i)` for i in [0, count) with at most `limit` running at once. */
export async function boundedAll(
  count: number,
  limit: number,
  task: (i: number) => Promise<unknown>,
): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count) await task(next++)
  }
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker))
}

export function formatRate(opsPerSecond: number): string {
  return `${Math.round(opsPerSecond).toLocaleString('en-US')} ops/s`
}

export function formatMs(ms: number): string {
  return `${ms < 1 ? ms.toFixed(3) : ms.toFixed(2)} ms`
}
