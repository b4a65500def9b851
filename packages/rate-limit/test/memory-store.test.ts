import { MemoryStore } from '@larder/rate-limit'
import t from 'tap'
import { storeConformance } from './conformance.js'

/** A fake clock: tests move time instead of sleeping. */
function fakeClock(start = 1_700_000_000_000) {
  let now = start
  return {
    now: () => now,
    advance: (ms: number) => {
      now += ms
    },
    toPhase(window: number, phase: number) {
      let next = Math.floor(now / window) * window + phase
      if (next <= now) next += window
      now = next
    },
  }
}

t.test('conformance: memory store', async (t) => {
  storeConformance(t, async (t) => {
    const clock = fakeClock()
    const store = new MemoryStore({ now: clock.now })
    t.teardown(() => store.close())
    return {
      store,
      now: async () => clock.now(),
      advance: async (ms) => clock.advance(ms),
      toPhase: async (window, phase) => clock.toPhase(window, phase),
    }
  })
})

// Issue 5, point 7: bounded memory.
t.test('100,000 distinct keys passing once each leave the store bounded', async (t) => {
  const clock = fakeClock()
  const store = new MemoryStore({ now: clock.now, pruneInterval: 0 })
  t.teardown(() => store.close())
  const spec = { limit: 5, window: 60_000, algorithm: 'sliding-window' } as const
  let largest = 0
  for (let i = 0; i < 100_000; i++) {
    const decision = store.consumeNow(`client-${i}`, spec, 1)
    if (!decision.allowed) t.fail(`client-${i} was refused on its first request`)
    if (store.size > largest) largest = store.size
  }
  t.ok(largest <= 10_000, `never more than the default 10,000 keys (largest ${largest})`)
  const recent = store.consumeNow('client-99999', spec, 1)
  t.equal(recent.remaining, 3, 'a recent client still has its count')

  const small = new MemoryStore({ now: clock.now, maxKeys: 500, pruneInterval: 0 })
  t.teardown(() => small.close())
  for (let i = 0; i < 100_000; i++) small.consumeNow(`client-${i}`, { ...spec, algorithm: 'sliding-log' }, 1)
  t.equal(small.size, 500, 'maxKeys bounds it: 500 keys held')
})

t.test('idle keys are dropped once their counts have left the window', async (t) => {
  const clock = fakeClock()
  const store = new MemoryStore({ now: clock.now, pruneInterval: 0 })
  t.teardown(() => store.close())
  for (let i = 0; i < 1000; i++)
    store.consumeNow(`log-${i}`, { limit: 5, window: 1000, algorithm: 'sliding-log' }, 1)
  for (let i = 0; i < 1000; i++)
    store.consumeNow(`win-${i}`, { limit: 5, window: 1000, algorithm: 'sliding-window' }, 1)
  t.equal(store.size, 2000, '2000 keys after one request each')
  clock.advance(1001)
  store.prune()
  t.equal(store.size, 1000, 'a window later the logs are gone; counters still weigh in the next window')
  clock.advance(1000)
  store.prune()
  t.equal(store.size, 0, 'two windows later nothing is held')
})

t.test('the prune timer runs and stops on close', async (t) => {
  const store = new MemoryStore({ pruneInterval: 5 })
  await store.consume('a', { limit: 1, window: 1, algorithm: 'sliding-log' }, 1)
  await new Promise((resolve) => setTimeout(resolve, 30))
  t.equal(store.size, 0, 'the expired key was pruned by the timer')
  await store.close()
})

// A check (the first pass of a multi-limit route) and a refused request must leave the store as it was.
t.test('a check or a refused request changes nothing the next request sees', async (t) => {
  const one = { limit: 1, window: 1000, algorithm: 'sliding-window' } as const
  const four = { limit: 4, window: 1000, algorithm: 'sliding-window' } as const

  const clock = fakeClock()
  const full = new MemoryStore({ now: clock.now, pruneInterval: 0, maxKeys: 1 })
  t.teardown(() => full.close())
  full.consumeNow('alice', one, 1)
  t.equal(full.consumeNow('bob', one, 2).allowed, false, 'a cost above the limit is refused')
  t.equal(full.consumeNow('alice', one, 1).allowed, false, 'and took no slot: alice is still counted')

  const two = new MemoryStore({ now: clock.now, pruneInterval: 0, maxKeys: 2 })
  t.teardown(() => two.close())
  two.consumeNow('idle', one, 1)
  clock.advance(1500)
  two.consumeNow('live', one, 1)
  clock.advance(501)
  two.consumeNow('idle', one, 1, true)
  two.consumeNow('other', one, 1)
  t.equal(
    two.consumeNow('live', one, 1).allowed,
    false,
    'a check on an idle key kept no slot: live is still counted',
  )

  // The clock may step back (NTP): what a check or a refusal saw later must not have been stored.
  const checked = new MemoryStore({ now: clock.now, pruneInterval: 0 })
  t.teardown(() => checked.close())
  checked.consumeNow('k', four, 3)
  clock.advance(1000)
  checked.consumeNow('k', four, 0, true)
  clock.advance(-500)
  t.equal(checked.consumeNow('k', four, 1).remaining, 0, 'after a check: 3 + 1 of 4 counted')

  const at = fakeClock()
  const refused = new MemoryStore({ now: at.now, pruneInterval: 0 })
  t.teardown(() => refused.close())
  refused.consumeNow('k', four, 4)
  at.advance(1000)
  t.equal(refused.consumeNow('k', four, 5).allowed, false)
  at.advance(-500)
  t.equal(refused.consumeNow('k', four, 1).allowed, false, 'after a refusal: still 4 of 4 in the window')
})
