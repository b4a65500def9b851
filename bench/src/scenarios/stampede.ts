import { setTimeout as sleep } from 'node:timers/promises'
import { type Contestant, larder, peers, type Setup } from '../contestants.js'
import { type Row, verdict } from '../report.js'
import { type Product, product } from '../value.js'

const CALLS = 500
const LOADER_MS = 20
const ROUNDS = 5

/**
 * One stampede: `CALLS` concurrent calls on a cold key, alternating between two instances (two
 * "processes" sharing Redis), with a 20 ms loader. Returns how many times the loader ran.
 */
async function stampede(a: Contestant, b: Contestant, key: string): Promise<number> {
  let calls = 0
  const value = product(7)
  const loader = async (): Promise<Product> => {
    calls++
    await sleep(LOADER_MS)
    return value
  }
  const results = await Promise.all(
    Array.from({ length: CALLS }, (_, i) => (i % 2 === 0 ? a : b).wrap(key, loader)),
  )
  const wrong = results.filter((result) => (result as Product | undefined)?.id !== value.id).length
  if (wrong > 0) throw new Error(`scenario 5: ${a.name} returned ${wrong} wrong values`)
  return calls
}

/**
 * Scenario 5: loader calls for a stampede on one cold key across two instances of each library, each
 * configured with memory + Redis (and its bus, where it has one).
 */
export async function stampedes(setup: Omit<Setup, 'tiers'>): Promise<Row[]> {
  const rows: Row[] = []
  for (const make of [larder, ...peers]) {
    const a = make({ ...setup, tiers: 'tiered' })
    const b = make({ ...setup, tiers: 'tiered' })
    try {
      await Promise.all([a.ready(), b.ready()])
      const counts: number[] = []
      for (let round = 0; round < ROUNDS; round++) counts.push(await stampede(a, b, `stampede:${round}`))
      const row: Row = {
        scenario: `5. Stampede: ${CALLS} calls, 2 instances, ${LOADER_MS} ms loader`,
        subject: `${a.name} \`${a.method}\``,
        figure: `loader calls per round: ${counts.join(', ')} (${ROUNDS} rounds)`,
      }
      if (a.name === 'Larder') {
        row.target = 'exactly 1'
        row.vsTarget = `max ${Math.max(...counts)}`
        row.verdict = verdict(counts.every((count) => count === 1))
      }
      rows.push(row)
    } finally {
      await Promise.all([a.close(), b.close()])
    }
  }
  return rows
}
