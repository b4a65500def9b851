import { type CacheOptions, createCache, LarderError } from '@larder/core'
import { sharedRedis, sharedRedisUrl, startRedisServer, waitFor } from '@larder/test-support'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { type TestTable, testDatabases } from './fixtures/databases.js'

const { redis, prefix } = sharedRedis(t)
const databases = testDatabases()
t.teardown(async () => {
  for (const db of databases) await db.close()
})

/** Two instances of one app: the same Redis and prefix, each with its own L1. */
async function twoInstances(t: Test, options: CacheOptions) {
  const a = createCache(options)
  const b = createCache(options)
  t.teardown(async () => {
    await a.close()
    await b.close()
  })
  await Promise.all([a.ready(), b.ready()])
  return { a, b }
}

type User = { name: string }

/** The persist step a user would write: the value as JSON under its key. */
const save = (table: TestTable, key: string) => (user: User) => table.upsert([[key, JSON.stringify(user)]])

for (const db of databases) {
  t.test(db.name, async (t) => {
    t.test('the new value is in the database and read by another instance right after', async (t) => {
      const table = await db.table(t, 'wt_ok')
      const { a, b } = await twoInstances(t, { redis: sharedRedisUrl, prefix: prefix('wt-ok') })
      await a.set('user:1', { name: 'old' })
      t.same(await b.get('user:1'), { name: 'old' }, 'instance B holds the old value in its L1')

      const cached = await a.writeThrough<User>('user:1', { name: 'new' }, save(table, 'user:1'))
      t.equal(cached, true, 'writeThrough reports the value cached')
      t.same(
        await b.get('user:1'),
        { name: 'new' },
        'instance B reads the new value at once (its L1 was told)',
      )
      t.same(await a.get('user:1'), { name: 'new' }, 'instance A too')
      t.same((await table.rows()).get('user:1'), JSON.stringify({ name: 'new' }), 'the database has it')
    })

    t.test('the database write fails: the cache is untouched and the error reaches the caller', async (t) => {
      const table = await db.table(t, 'wt_dbfail')
      const p = prefix('wt-dbfail')
      const { a, b } = await twoInstances(t, { redis: sharedRedisUrl, prefix: p })
      await a.set('user:2', { name: 'old' })
      await b.get('user:2')

      // v is NOT NULL: the database refuses the row.
      const failing = a.writeThrough<User>('user:2', { name: 'new' }, () => table.upsert([['user:2', null]]))
      await t.rejects(
        failing,
        { code: db.notNull.code },
        "the database's not-null violation reaches the caller",
      )
      t.same(await a.get('user:2'), { name: 'old' }, 'instance A still has the old value')
      t.same(await b.get('user:2'), { name: 'old' }, 'instance B still has the old value')
      t.match(await redis.hget(`${p}user:2`, 'v'), /old/, 'Redis still holds the old value')
      t.equal((await table.rows()).size, 0, 'the database has nothing')
    })

    t.test(
      'the cache write fails after the database write: the key is removed everywhere, logged and counted',
      async (t) => {
        const server = await startRedisServer()
        t.teardown(() => server.close())
        const table = await db.table(t, 'wt_cachefail')
        const admin = new Redis(server.url)
        t.teardown(() => admin.quit())
        const errors: string[] = []
        const logger = {
          debug() {},
          warn() {},
          error: (_: object, msg?: string) => void errors.push(msg ?? ''),
        }
        const options: CacheOptions = {
          redis: server.url,
          prefix: 'wt:',
          timeout: 100,
          breaker: { threshold: 1000 },
          logger,
        }
        const { a, b } = await twoInstances(t, options)
        await a.set('user:3', { name: 'old' })
        t.same(await b.get('user:3'), { name: 'old' }, 'instance B holds the old value')

        const cached = await a.writeThrough<User>('user:3', { name: 'new' }, async (user) => {
          await save(table, 'user:3')(user)
          // Redis stops taking writes for longer than the cache's timeout: the cache write fails.
          await admin.call('CLIENT', 'PAUSE', '500', 'WRITE')
        })
        t.equal(cached, false, 'writeThrough reports the value not cached')
        t.same(
          (await table.rows()).get('user:3'),
          JSON.stringify({ name: 'new' }),
          'the database has the value',
        )
        t.equal(a.stats().writeThroughFailures, 1, 'the failure is counted')
        t.match(
          errors.join('\n'),
          /writeThrough stored the value in the database but not in the cache/,
          'and logged',
        )
        // The paused write lands when Redis resumes; the delete queued behind it removes it.
        await waitFor(async () => (await admin.exists('wt:user:3')) === 0, {
          timeout: 4000,
          message: 'key never removed',
        })
        await waitFor(async () => (await b.get('user:3')) === undefined, {
          timeout: 4000,
          message: 'B kept a value',
        })
        t.equal(await b.get('user:3'), undefined, 'no instance serves the old value: the key is gone from B')
        t.equal(await a.get('user:3'), undefined, 'and from A')
      },
    )
  })
}

t.test('a value the cache cannot hold, or a persist that is not a function, is refused first', async (t) => {
  const cache = createCache({ redis: sharedRedisUrl, prefix: prefix('wt-refused') })
  t.teardown(() => cache.close())
  let persisted = false
  await t.rejects(
    cache.writeThrough(
      'user:2',
      () => {},
      () => {
        persisted = true
      },
    ),
    LarderError,
    'a value the cache cannot hold is refused before the database is written',
  )
  t.equal(persisted, false, 'persist never ran for it')
  await t.rejects(
    cache.writeThrough('user:2', 1, 'nope' as unknown as () => void),
    { code: 'LARDER_INVALID_OPTION', message: /persist: expected a function/ },
    'persist must be a function',
  )
})

t.test('without Redis, writeThrough stores in L1 after the database write', async (t) => {
  const cache = createCache()
  t.teardown(() => cache.close())
  const db = new Map<string, number>()
  t.equal(await cache.writeThrough('n', 5, (v) => db.set('n', v)), true, 'cached')
  t.equal(await cache.get('n'), 5, 'L1 has it')
  t.equal(db.get('n'), 5, 'the store has it')
  t.equal(
    await cache.writeThrough('n', null, (v) => db.set('n', v as unknown as number), { negativeTtl: 0 }),
    true,
    'a value not to cache',
  )
  t.equal(await cache.get('n'), undefined, 'removes the old one instead')
})
