import { userInfo } from 'node:os'
import { performance } from 'node:perf_hooks'
import { createCache, createWriteBehind, type WriteBehindItem } from '@larder/core'
import pg from 'pg'
import { boundedAll, formatMs } from '../harness.js'
import { type Row, ratio, verdict } from '../report.js'

const WRITES = 20_000
const KEYS = 1_000
const IN_FLIGHT = 50
const TARGET = 10
/** The pool both use: one connection per write in flight gave the per-write INSERT its best rate. */
const POOL = Number(process.env.BENCH_WB_POOL ?? IN_FLIGHT)
const BATCH_SIZE = 500
/**
 * Writes made before the clock starts, by each contestant. 2,000 left write-behind's path half-compiled:
 * its first 20,000 writes cost ~2× the CPU of the next ones, so the run measured the JIT.
 */
const WARM_UP = Number(process.env.BENCH_WB_WARMUP ?? 20_000)
const SCENARIO = `8. write-behind, ${WRITES.toLocaleString('en-US')} writes over ${KEYS.toLocaleString('en-US')} keys, ${IN_FLIGHT} in flight`

interface Stock {
  n: number
  sku: string
  qty: number
  warehouse: string
}

/**
 * Write `n` of the run: key `n mod KEYS`, so each key's last value is the one with n ≥ WRITES - KEYS.
 * Warm-ups use negative n, on the same keys.
 */
function write(n: number): { key: string; value: Stock } {
  const sku = `sku:${((n % KEYS) + KEYS) % KEYS}`
  return { key: sku, value: { n, sku, qty: (n * 7) % 500, warehouse: 'north-3' } }
}

const writesPerSecond = (rate: number): string => `${Math.round(rate).toLocaleString('en-US')} writes/s`

const isLast = (n: number): boolean => n >= WRITES - KEYS

async function createTable(pool: pg.Pool, name: string): Promise<string> {
  const table = `larder_bench_${name}_${process.pid}_${Date.now()}`
  await pool.query(`CREATE TABLE ${table} (k text PRIMARY KEY, n int NOT NULL, v jsonb NOT NULL)`)
  return table
}

/** Throws unless `table` holds the last value of every key. */
async function checkComplete(pool: pg.Pool, table: string, who: string): Promise<void> {
  const { rows } = await pool.query<{ k: string; n: number }>(`SELECT k, n FROM ${table}`)
  const wrong = rows.filter((row) => row.n !== WRITES - KEYS + Number(row.k.slice(4)))
  if (rows.length !== KEYS || wrong.length > 0) {
    throw new Error(`scenario 8: ${who} left ${rows.length} rows, ${wrong.length} without their last value`)
  }
}

interface Timing {
  ms: number
  /** This process's CPU time (user + system), µs per write. */
  cpuPerWrite: number
}

async function timed(count: number, run: () => Promise<unknown>): Promise<Timing> {
  const cpu = process.cpuUsage()
  const started = performance.now()
  await run()
  const ms = performance.now() - started
  const used = process.cpuUsage(cpu)
  return { ms, cpuPerWrite: (used.user + used.system) / count }
}

/** The baseline: one `INSERT … ON CONFLICT` per write, awaited. */
function perWriteInsert(pool: pg.Pool, table: string, count: number, offset = 0): Promise<Timing> {
  const sql = `INSERT INTO ${table} (k, n, v) VALUES ($1, $2, $3) ON CONFLICT (k) DO UPDATE SET n = excluded.n, v = excluded.v`
  return timed(count, () =>
    boundedAll(count, IN_FLIGHT, (i) => {
      const { key, value } = write(i + offset)
      return pool.query({ name: 'upsert-one', text: sql, values: [key, value.n, JSON.stringify(value)] })
    }),
  )
}

interface WriteBehindRun extends Timing {
  /** From the last `write()` returning to the commit that stored the last of the keys' last values. */
  drainMs: number
  flushes: number
}

async function writeBehind(
  pool: pg.Pool,
  table: string,
  setup: { redisUrl: string; prefix: string },
): Promise<WriteBehindRun> {
  const cache = createCache({ redis: setup.redisUrl, prefix: `${setup.prefix}wb:` })
  const sql = `INSERT INTO ${table} (k, n, v) SELECT * FROM unnest($1::text[], $2::int[], $3::jsonb[])
    ON CONFLICT (k) DO UPDATE SET n = excluded.n, v = excluded.v`
  let landed = 0
  let allLanded = (_at: number): void => {}
  const complete = new Promise<number>((resolve) => (allLanded = resolve))
  // The flush a user would write: one multi-row upsert per batch (the batch holds each key once).
  const flush = async (batch: Array<WriteBehindItem<Stock>>): Promise<void> => {
    await pool.query({
      name: 'upsert-batch',
      text: sql,
      values: [
        batch.map((item) => item.key),
        batch.map((item) => item.value.n),
        batch.map((item) => JSON.stringify(item.value)),
      ],
    })
    for (const item of batch) if (isLast(item.value.n)) landed++
    if (landed === KEYS) allLanded(performance.now())
  }
  const writer = createWriteBehind<Stock>({ cache, name: 'stock', flush, batchSize: BATCH_SIZE })
  try {
    await cache.ready()
    // Warm-up (JIT, connections, the consumer group), then wait until it has all been flushed.
    await boundedAll(WARM_UP, IN_FLIGHT, (i) => {
      const { key, value } = write(i - WARM_UP)
      return writer.write(key, value)
    })
    while ((await writer.stats()).lag > 0) await new Promise((resolve) => setTimeout(resolve, 10))
    const before = (await writer.stats()).flushes
    const timing = await timed(WRITES, () =>
      boundedAll(WRITES, IN_FLIGHT, (i) => {
        const { key, value } = write(i)
        return writer.write(key, value)
      }),
    )
    const written = performance.now()
    const storedAt = await Promise.race([
      complete,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error('scenario 8: not all flushed after 60 s')), 60_000).unref(),
      ),
    ])
    const stats = await writer.stats()
    if (stats.failedFlushes > 0 || stats.deadLettered > 0) throw new Error('scenario 8: a flush failed')
    // The last values can be committed before the last `write()` has returned to its caller.
    return { ...timing, drainMs: Math.max(0, storedAt - written), flushes: stats.flushes - before }
  } finally {
    await writer.close()
    await cache.close()
  }
}

/**
 * Scenario 8: 20,000 writes over 1,000 keys, 50 in flight, through a write-behind writer's `write()`
 * (its flush one multi-row upsert per batch into PostgreSQL) against one awaited
 * `INSERT … ON CONFLICT` per write through `pg`; and how long after the last `write()` returned the
 * database held the last value of every key.
 */
export async function writeBehindThroughput(setup: { redisUrl: string; prefix: string }): Promise<Row[]> {
  const pool = new pg.Pool({
    host: process.env.PGHOST ?? '127.0.0.1',
    port: Number(process.env.PGPORT ?? 5432),
    database: process.env.PGDATABASE ?? 'test',
    user: process.env.PGUSER ?? userInfo().username,
    max: POOL,
  })
  const tables: string[] = []
  try {
    const direct = await createTable(pool, 'direct')
    tables.push(direct)
    const behind = await createTable(pool, 'behind')
    tables.push(behind)
    // Warm-up of the same size as the write-behind's, on keys the run then overwrites.
    await perWriteInsert(pool, direct, WARM_UP, -WARM_UP)
    const directRun = await perWriteInsert(pool, direct, WRITES)
    await checkComplete(pool, direct, 'the per-write INSERT')
    const run = await writeBehind(pool, behind, setup)
    await checkComplete(pool, behind, 'write-behind')

    const directRate = (WRITES * 1_000) / directRun.ms
    const behindRate = (WRITES * 1_000) / run.ms
    const cpu = (timing: Timing): string => `${timing.cpuPerWrite.toFixed(1)} µs CPU per write`
    return [
      {
        scenario: SCENARIO,
        subject: `\`pg\` \`INSERT … ON CONFLICT\` per write, awaited (baseline, pool of ${POOL})`,
        figure: `${writesPerSecond(directRate)}; ${formatMs(directRun.ms)} in all, ${cpu(directRun)}`,
      },
      {
        scenario: '',
        subject: `**Larder write-behind \`write()\`** (flush: one multi-row upsert per batch of ≤ ${BATCH_SIZE})`,
        figure: `**${writesPerSecond(behindRate)}** (${ratio(behindRate / directRate)} the per-write INSERT); ${formatMs(run.ms)} in all, ${cpu(run)}`,
        target: `≥ ${TARGET}x the per-write INSERT`,
        vsTarget: ratio(behindRate / directRate / TARGET),
        verdict: verdict(behindRate / directRate >= TARGET),
      },
      {
        scenario: '',
        subject: 'write-behind: last `write()` returned → the database holds every key’s last value',
        figure: `${formatMs(run.drainMs)} (${run.flushes} flushes, ${formatMs(run.ms + run.drainMs)} from the first write)`,
      },
    ]
  } finally {
    for (const table of tables) await pool.query(`DROP TABLE IF EXISTS ${table}`)
    await pool.end()
  }
}
