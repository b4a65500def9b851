import diagnostics from 'node:diagnostics_channel'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { type Cache, type CacheOptions, createCache } from '@larder/core'
import { sharedRedis, sharedRedisUrl, waitFor } from '@larder/test-support'
import t, { type Test } from 'tap'

const { redis, prefix } = sharedRedis(t)

/** One cache on its own Redis connection (as another process would have), closed at the end of `t`. */
async function open(t: Test, p: string, options: CacheOptions = {}): Promise<Cache> {
  const cache = createCache({ redis: sharedRedisUrl, prefix: p, ...options })
  await cache.ready()
  t.teardown(() => cache.close())
  return cache
}

/** Redis's clock in ms, the clock the engine judges leases by. */
async function redisNow(): Promise<number> {
  const [seconds, micros] = await redis.time()
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)
}

/** A promise with its resolve function, to learn when a loader has started. */
function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve = () => {}
  const promise = new Promise<void>((r) => (resolve = r))
  return { promise, resolve }
}

t.test('single-flight in one process: 100 concurrent misses share one loader call', async (t) => {
  const cache = await open(t, prefix('flight'))
  let calls = 0
  const loader = async () => {
    calls++
    await sleep(50)
    return { n: 1 }
  }
  const values = await Promise.all(Array.from({ length: 100 }, () => cache.wrap('cold', loader)))
  t.equal(calls, 1, 'the loader ran once')
  t.same(
    values,
    Array.from({ length: 100 }, () => ({ n: 1 })),
    'every caller got the loaded value',
  )
  t.equal(cache.stats().coalesced, 99, 'the 99 other callers joined the running load')
  t.equal(cache.stats().loaderCalls, 1, 'stats count one loader call')
})

t.test(
  'across instances: one loader call in total, the other instance waits and the bus wakes it',
  async (t) => {
    const p = prefix('across')
    const a = await open(t, p)
    const b = await open(t, p)
    const events: Array<{ phase: string; woken?: boolean; waitedMs?: number }> = []
    const onLockWait = (message: unknown): void => {
      const event = message as { cache: string; phase: string; woken?: boolean; waitedMs?: number }
      if (event.cache === p) events.push({ phase: event.phase, woken: event.woken, waitedMs: event.waitedMs })
    }
    diagnostics.subscribe('larder:cache:lock-wait', onLockWait)
    t.teardown(() => {
      diagnostics.unsubscribe('larder:cache:lock-wait', onLockWait)
    })

    let calls = 0
    const loader = async () => {
      calls++
      // Long enough that the waiter is in a long poll step when the value lands: only the bus can wake it.
      await sleep(400)
      return 'shared'
    }
    // How long this process's event loop was stalled: after a stall, timers run before I/O, so a poll
    // timer that came due during it fires before the bus message that arrived meanwhile is read.
    const lag = monitorEventLoopDelay({ resolution: 10 })
    lag.enable()
    const values = await Promise.all(
      Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? a : b).wrap('hot', loader)),
    )
    lag.disable()
    const stalledMs = lag.max / 1e6
    t.equal(calls, 1, 'the loader ran once across both instances')
    t.ok(
      values.every((value) => value === 'shared'),
      'all 200 callers got the value',
    )
    const [loaded, waited] = a.stats().loaderCalls === 1 ? [a, b] : [b, a]
    t.equal(loaded.stats().loaderCalls + waited.stats().loaderCalls, 1, 'stats agree: one loader call')
    t.ok(waited.stats().lockWaits >= 1, 'the other instance waited on the distributed lock')
    t.equal(waited.stats().lockWaits + waited.stats().coalesced, 100, 'its other callers joined that wait')
    const ends = events.filter((event) => event.phase === 'end')
    t.ok(
      events.some((event) => event.phase === 'start'),
      'the lock-wait channel reported the wait starting',
    )
    t.ok(ends.length >= 1, 'the lock-wait channel reported the wait ending')
    t.ok(
      ends.every((event) => event.woken === true) || stalledMs > 100,
      'the bus woke the waiter when the value landed, not a poll (unless this process was stalled: ' +
        `${JSON.stringify(ends)}, stalled up to ${Math.round(stalledMs)} ms)`,
    )
  },
)

t.test('a lock whose holder died expires and another caller takes over', async (t) => {
  const p = prefix('dead')
  const cache = await open(t, p)
  // A lock as the engine writes it, from a holder that will never finish.
  const token = 'dead-holder-token'
  const until = (await redisNow()) + 300
  await redis.hset(`${p}orphan`, 'lk', token, 'lu', String(until), 'fn', token)
  await redis.pexpire(`${p}orphan`, 300)

  let calls = 0
  let loadedAt = 0
  const started = Date.now()
  const value = await cache.wrap('orphan', async () => {
    calls++
    loadedAt = await redisNow()
    return 'taken over'
  })
  t.equal(value, 'taken over', "the caller got its own loader's value")
  t.equal(calls, 1, 'its loader ran once')
  t.ok(loadedAt >= until, 'the loader did not run while the dead holder still had the lease')
  t.equal(cache.stats().lockWaits, 1, 'the caller waited on the lock first')
  t.ok(Date.now() - started < 5_000, 'the wait ended soon after the lease ran out (never hangs)')
  t.equal(await cache.get('orphan'), 'taken over', 'the value is cached')
})

t.test('fencing: a holder whose lease ran out cannot overwrite the newer value', async (t) => {
  const p = prefix('fence')
  const a = await open(t, p, { lock: { lease: 200 } })
  const b = await open(t, p)
  const reader = await open(t, p, { l1: false })

  const aStarted = signal()
  const aLoad = a.wrap('k', async () => {
    aStarted.resolve()
    await sleep(600)
    return 'A'
  })
  await aStarted.promise
  // A's lease (200 ms) runs out on Redis's clock while its loader is still busy.
  await waitFor(
    async () => {
      const lu = await redis.hget(`${p}k`, 'lu')
      return lu === null || Number(lu) <= (await redisNow())
    },
    { timeout: 3_000, message: "A's lease never ran out" },
  )
  t.equal(await b.wrap('k', async () => 'B'), 'B', 'B took the expired lock and loaded B')
  await aLoad
  t.equal(await reader.get('k'), 'B', "Redis keeps B: A's late write was refused")
  t.equal(await a.get('k'), 'B', 'A serves B too: it did not keep its stale result in L1')
  t.equal(await b.get('k'), 'B', 'B still serves B')
})

t.test('fencing: delete() during a load keeps the loaded result out of the cache', async (t) => {
  const p = prefix('fence-del')
  const cache = await open(t, p)
  const started = signal()
  const load = cache.wrap('k', async () => {
    started.resolve()
    await sleep(300)
    return 'loaded before the delete'
  })
  await started.promise
  await cache.delete('k')
  t.equal(await load, 'loaded before the delete', 'the waiting caller still gets its value')
  const fresh = await open(t, p, { l1: false })
  t.equal(await fresh.get('k'), undefined, 'a fresh instance finds nothing in Redis')
  t.equal(await cache.get('k'), undefined, 'nor does the instance that loaded it (not in its L1)')
})

t.test('a loader error releases the lock at once', async (t) => {
  const p = prefix('error')
  const a = await open(t, p)
  const b = await open(t, p)
  const failure = new Error('database down')
  await t.rejects(
    a.wrap('k', async () => {
      await sleep(20)
      throw failure
    }),
    failure,
    "the loader's error reaches the caller",
  )
  let calls = 0
  const value = await b.wrap('k', async () => {
    calls++
    return 'recovered'
  })
  t.equal(value, 'recovered', "the next caller got its own loader's value")
  t.equal(calls, 1, 'its loader ran')
  t.equal(b.stats().lockWaits, 0, 'it did not wait on a lock left behind by the failed load')
  t.equal(a.stats().loaderErrors, 1, 'the failure is counted where it happened')
})
