import { MemorySessionStore } from '@larder/session-store'
import t from 'tap'
import { sessionStoreConformance, storeGet, storeSet } from './conformance.js'

const quiet = { debug: () => {}, warn: () => {}, error: () => {} }

// The embedded default behaves like the Redis store.
sessionStoreConformance(t, async (_t, options) => new MemorySessionStore({ logger: quiet, ...options }))

t.test('bounded: the least recently used sessions go first, and leave the user index', async (t) => {
  const store = new MemorySessionStore({ maxSessions: 3, logger: quiet })
  const cookie = { expires: new Date(Date.now() + 60_000), originalMaxAge: 60_000 }
  for (const id of ['s1', 's2', 's3', 's4']) await storeSet(store, id, { cookie, userId: 'u' })
  t.equal(await storeGet(store, 's1'), null, 'the oldest session was evicted')
  t.equal((await storeGet(store, 's4'))?.userId, 'u', 'the newest is kept')
  t.same(
    (await store.listForUser('u')).map((r) => r.sessionId).sort(),
    ['s2', 's3', 's4'],
    'the index lists only what is kept',
  )
})

t.test('expiry follows the injected clock (no sleeping)', async (t) => {
  let now = 1_000_000
  const store = new MemorySessionStore({ ttl: '10m', tombstoneTtl: '1m', now: () => now, logger: quiet })
  await storeSet(store, 'a', { cookie: { originalMaxAge: null }, userId: 'u' })
  now += 9 * 60_000
  t.equal((await storeGet(store, 'a'))?.userId, 'u', 'alive before the store ttl')
  now += 2 * 60_000
  t.equal(await storeGet(store, 'a'), null, 'gone after it')
  t.same(await store.listForUser('u'), [], 'and no longer listed')
  await storeSet(store, 'b', { cookie: { originalMaxAge: 5_000 } })
  now += 4_000
  t.ok(await storeGet(store, 'b'), 'a cookie maxAge without expires: alive before it')
  now += 2_000
  t.equal(await storeGet(store, 'b'), null, 'gone after it')
})

t.test('a tombstone lasts tombstoneTtl: after it, the id may be used again', async (t) => {
  let now = 0
  const store = new MemorySessionStore({ tombstoneTtl: '1m', now: () => now, logger: quiet })
  await storeSet(store, 'x', { cookie: { originalMaxAge: null }, userId: 'u' })
  await store.destroyAllForUser('u')
  await storeSet(store, 'x', { cookie: { originalMaxAge: null }, userId: 'u' })
  t.equal(await storeGet(store, 'x'), null, 'refused while the tombstone lasts')
  now += 61_000
  await storeSet(store, 'x', { cookie: { originalMaxAge: null }, userId: 'u' })
  t.equal((await storeGet(store, 'x'))?.userId, 'u', 'accepted after it')
})
