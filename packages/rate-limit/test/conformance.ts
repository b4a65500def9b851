// One behaviour suite for every store (memory with a fake clock, Redis on its own clock): whichever store
// the options pick, a client is limited the same way.
import type { Decision, LimitSpec, RateLimitStore } from '@larder/rate-limit'
import type { Test } from 'tap'

export interface StoreHarness {
  store: RateLimitStore
  /** Moves time to `phase` ms into a fixed window of `window` ms: the current one if still ahead, else the next. */
  toPhase(window: number, phase: number): Promise<void>
  /** Moves time forward by `ms`. */
  advance(ms: number): Promise<void>
  /** The store's clock (ms): the fake one, or Redis's TIME. */
  now(): Promise<number>
}

export type MakeHarness = (t: Test) => Promise<StoreHarness>

const W = 1000
const log: LimitSpec = { limit: 10, window: W, algorithm: 'sliding-log' }
const counter: LimitSpec = { limit: 10, window: W, algorithm: 'sliding-window' }

async function burst(store: RateLimitStore, key: string, spec: LimitSpec, n: number): Promise<Decision[]> {
  const decisions: Decision[] = []
  for (let i = 0; i < n; i++) decisions.push(await store.consume(key, spec, 1))
  return decisions
}

const allowedCount = (decisions: Decision[]): number => decisions.filter((d) => d.allowed).length

/** Runs `step` and says when, on the store's clock, it started and ended. */
async function timed<T>(
  h: StoreHarness,
  step: () => Promise<T>,
): Promise<{ value: T; from: number; to: number }> {
  const from = await h.now()
  const value = await step()
  return { value, from, to: await h.now() }
}

const windowOf = (ms: number): number => Math.floor(ms / W)
const phaseOf = (ms: number): number => ms % W

/**
 * Real clocks drift on a busy host: a scenario whose steps did not land where it needs them (a batch
 * split by a window edge, a phase too late to mean anything) is run again on a fresh key, a few times.
 */
async function attempt(t: Test, scenario: (key: string) => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 4; i++) if (await scenario(`${t.name}-${i}`)) return
  t.fail('the timing the scenario needs never happened in 4 attempts')
}

export function storeConformance(t: Test, make: MakeHarness): void {
  t.test('sliding log: exactly `limit` per window, and they come back as the oldest leave', async (t) => {
    const h = await make(t)
    const first = await timed(h, () => burst(h.store, 'log-1', log, 10))
    t.equal(allowedCount(first.value), 10, 'the first 10 are allowed')
    t.same(
      first.value.map((d) => d.remaining),
      [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
      'remaining counts down to 0',
    )
    const refused = await timed(h, () => h.store.consume('log-1', log, 1))
    t.equal(refused.value.allowed, false, 'the 11th is refused')
    t.equal(refused.value.remaining, 0, 'nothing remains')
    // It fits once the first unit leaves: W after it was counted.
    const retry = refused.value.retryAfterMs
    t.ok(
      retry >= first.from + W - refused.to && retry <= first.to + W - refused.from,
      `retry after the first unit leaves the window (${retry} ms)`,
    )
    t.ok(
      refused.value.resetMs > 0 && refused.value.resetMs <= W,
      `whole again within a window (${refused.value.resetMs} ms)`,
    )
    await h.advance(W / 2)
    const half = await timed(h, () => h.store.consume('log-1', log, 1))
    if (half.to < first.from + W) t.equal(half.value.allowed, false, 'half a window later: still refused')
    await h.advance(W / 2 + 20)
    const second = await burst(h.store, 'log-1', log, 11)
    t.equal(allowedCount(second), 10, 'once the window has slid past them: exactly 10 more')
  })

  t.test('sliding window counter: the previous window counts by its overlap', async (t) => {
    const h = await make(t)
    await attempt(t, async (key) => {
      await h.toPhase(W, 50)
      const first = await timed(h, () => burst(h.store, key, counter, 11))
      if (windowOf(first.from) !== windowOf(first.to)) return false
      t.equal(allowedCount(first.value), 10, '10 allowed, the 11th refused')
      // Needs the next window, at the point where 10 × (1 − phase) + 1 <= 10 (phase 0.1): W − phase + 100.
      const retry = (first.value[10] as Decision).retryAfterMs
      t.ok(
        retry >= W + 100 - phaseOf(first.to) && retry <= W + 100 - phaseOf(first.from),
        `retry after the rest of the window and 100 ms (${retry} ms, phase ${phaseOf(first.from)}-${phaseOf(first.to)})`,
      )
      await h.toPhase(W, 500)
      await h.toPhase(W, 500)
      const second = await timed(h, () => burst(h.store, key, counter, 8))
      if (windowOf(second.from) !== windowOf(first.to) + 1 || windowOf(second.to) !== windowOf(second.from)) {
        return false
      }
      // The previous 10 weigh 10 × (1 − phase), so floor(10 × phase) units fit.
      const least = Math.floor((10 * phaseOf(second.from)) / W)
      const most = Math.floor((10 * phaseOf(second.to)) / W)
      const served = allowedCount(second.value)
      t.ok(
        served >= least && served <= most,
        `${served} allowed in the next window, as weighted (${least}-${most})`,
      )
      return true
    })
  })

  t.test('the edge burst: a window boundary does not double the limit', async (t) => {
    for (const spec of [counter, log]) {
      const h = await make(t)
      await attempt(t, async (key) => {
        await h.toPhase(W, 850)
        const end = await timed(h, () => burst(h.store, key, spec, 10))
        if (windowOf(end.from) !== windowOf(end.to)) return false
        t.equal(allowedCount(end.value), 10, `${spec.algorithm}: 10 at the end of a window are allowed`)
        await h.toPhase(W, 50)
        const start = await timed(h, () => burst(h.store, key, spec, 10))
        if (windowOf(start.from) !== windowOf(end.to) + 1 || phaseOf(start.to) > 200) return false
        t.ok(
          allowedCount(start.value) <= 2,
          `${spec.algorithm}: the 10 at the start of the next window are (mostly) refused (${allowedCount(start.value)} allowed; a fixed window allows all 10)`,
        )
        return true
      })
    }
  })

  t.test('cost: a request counts its cost; one that does not fit is refused and not counted', async (t) => {
    for (const spec of [counter, log]) {
      const h = await make(t)
      await h.toPhase(W, 10)
      const key = `cost-${spec.algorithm}`
      const four = await h.store.consume(key, spec, 4)
      t.same([four.allowed, four.remaining], [true, 6], `${spec.algorithm}: cost 4 leaves 6`)
      const seven = await h.store.consume(key, spec, 7)
      t.same([seven.allowed, seven.remaining], [false, 6], `${spec.algorithm}: cost 7 does not fit`)
      const six = await h.store.consume(key, spec, 6)
      t.same([six.allowed, six.remaining], [true, 0], `${spec.algorithm}: the refused 7 was not counted`)
      const zero = await h.store.consume(key, spec, 0)
      t.equal(zero.allowed, true, `${spec.algorithm}: cost 0 always fits`)
      const huge = await h.store.consume(`${key}-huge`, spec, 11)
      t.same(
        [huge.allowed, huge.retryAfterMs],
        [false, W],
        `${spec.algorithm}: cost over the limit never fits`,
      )
    }
  })

  t.test('keys are independent', async (t) => {
    const h = await make(t)
    await burst(h.store, 'alice', log, 10)
    t.equal((await h.store.consume('alice', log, 1)).allowed, false, 'alice is out of quota')
    t.equal((await h.store.consume('bob', log, 1)).remaining, 9, 'bob has his own')
    t.equal((await h.store.consume('alice', counter, 1)).remaining, 9, 'another algorithm is another count')
  })

  t.test('concurrent decisions on one key never allow more than the limit', async (t) => {
    for (const spec of [
      { ...counter, limit: 20 },
      { ...log, limit: 20 },
    ]) {
      const h = await make(t)
      await h.toPhase(W, 10)
      const all = await Promise.all(
        Array.from({ length: 60 }, () => h.store.consume(`hot-${spec.algorithm}`, spec, 1)),
      )
      t.equal(allowedCount(all), 20, `${spec.algorithm}: 20 of 60 concurrent requests allowed`)
    }
  })

  t.test('Retry-After is honest: after waiting it, the request fits', async (t) => {
    const h = await make(t)
    await burst(h.store, 'honest', { ...log, limit: 3 }, 3)
    await h.advance(300)
    const refused = await h.store.consume('honest', { ...log, limit: 3 }, 1)
    t.equal(refused.allowed, false, 'refused while full')
    t.ok(
      refused.retryAfterMs <= 700,
      `told to wait at most the rest of the window (${refused.retryAfterMs} ms)`,
    )
    await h.advance(refused.retryAfterMs + 5)
    t.equal(
      (await h.store.consume('honest', { ...log, limit: 3 }, 1)).allowed,
      true,
      'allowed after the wait',
    )
  })
}
