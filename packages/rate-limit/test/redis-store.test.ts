import { setTimeout as sleep } from 'node:timers/promises'
import { RedisStore } from '@larder/rate-limit'
import { cleanupPrefix, sharedRedisUrl, startRedisCluster, uniquePrefix } from '@larder/test-support'
import { Cluster, Redis } from 'ioredis'
import t from 'tap'
import { storeConformance } from './conformance.js'
import { redisNow, untilPhase } from './helpers.js'

const client = new Redis(sharedRedisUrl)
const prefix = uniquePrefix('rate-store')
t.teardown(async () => {
  await cleanupPrefix(client, prefix)
  client.disconnect()
})

t.test('conformance: Redis store', async (t) => {
  storeConformance(t, async () => {
    // A generous timeout: this suite is about decisions, not about a slow Redis.
    const store = new RedisStore({ client, prefix, timeout: 2_000 })
    return {
      store,
      now: () => redisNow(client),
      advance: (ms) => sleep(ms),
      toPhase: (window, phase) => untilPhase(client, window, phase),
    }
  })
})

t.test('what is in Redis: one key per limit key, expiring with its window', async (t) => {
  const store = new RedisStore({ client, prefix, timeout: 2_000 })
  const log = { limit: 5, window: 10_000, algorithm: 'sliding-log' } as const
  const win = { limit: 5, window: 10_000, algorithm: 'sliding-window' } as const
  await store.consume('inspect', log, 2)
  await store.consume('inspect', win, 2)
  const logKey = store.keyFor('inspect', log)
  const winKey = store.keyFor('inspect', win)
  t.match(logKey, /^t:rate-store:.*rl:\{inspect\}:log$/, 'the key carries the limit key as its hash tag')
  t.equal(await client.zcard(logKey), 2, 'the sliding log holds one member per unit counted')
  t.same(
    await client.hmget(winKey, 'c', 'p'),
    ['2', '0'],
    'the counter holds the current and previous counts',
  )
  const logTtl = await client.pttl(logKey)
  const winTtl = await client.pttl(winKey)
  t.ok(logTtl > 9_000 && logTtl <= 10_000, `the log expires with its window (${logTtl} ms)`)
  t.ok(winTtl > 10_000 && winTtl <= 20_000, `the counter lives until its count stops weighing (${winTtl} ms)`)
  const braced = store.keyFor('user:{42}', log)
  t.notMatch(braced, /\{42\}/, 'a key with braces is hashed, so it cannot pick its own hash slot')
  t.ok(store.keyFor('x'.repeat(500), log).length < 120, 'a long key is hashed')
})

t.test('scripts survive SCRIPT FLUSH (NOSCRIPT) without an error', async (t) => {
  // A private client and server state: SCRIPT FLUSH on the shared Redis only costs others a reload too.
  const store = new RedisStore({ client, prefix, timeout: 2_000 })
  const spec = { limit: 5, window: 10_000, algorithm: 'sliding-log' } as const
  await store.consume('flush', spec, 1)
  await client.script('FLUSH')
  const decision = await store.consume('flush', spec, 1)
  t.same([decision.allowed, decision.remaining], [true, 3], 'the next decision is right after the flush')
})

t.test('Redis Cluster: both scripts run (each touches keys of one slot)', async (t) => {
  const cluster = await startRedisCluster()
  t.teardown(() => cluster.close())
  const nodes = cluster.nodes.map((node) => ({ host: node.host, port: node.port }))
  const clusterClient = new Cluster(nodes)
  t.teardown(() => clusterClient.disconnect())
  const store = new RedisStore({ client: clusterClient, prefix, timeout: 2_000 })
  for (const algorithm of ['sliding-log', 'sliding-window'] as const) {
    const spec = { limit: 3, window: 10_000, algorithm }
    const results = []
    for (let i = 0; i < 4; i++) results.push((await store.consume(`c-${i % 2}`, spec, 1)).allowed)
    t.same(results, [true, true, true, true], `${algorithm}: counted per key on the cluster`)
    const a = []
    for (let i = 0; i < 3; i++) a.push((await store.consume('c-0', spec, 1)).allowed)
    t.same(a, [true, false, false], `${algorithm}: the limit holds on the cluster`)
  }
})
