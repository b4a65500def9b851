import { RedisSessionStore } from '@larder/session-store'
import { cleanupPrefix, startRedisCluster, uniquePrefix } from '@larder/test-support'
import { Cluster } from 'ioredis'
import t from 'tap'
import { sessionStoreConformance } from './conformance.js'
import { login, sessionApp, sessionIdOf, whoAmI } from './helpers/app.js'
import { keyOf } from './helpers/redis.js'

// Issue 6, point 7: the store on a Redis Cluster. Every script touches keys of one slot (a session's
// keys share its id as hash tag; a user's index has its own), so nothing fails with CROSSSLOT, and
// one user's sessions may live on every node.

const quiet = { debug: () => {}, warn: () => {}, error: () => {} }
const cluster = await startRedisCluster()
const client = new Cluster(cluster.nodes)
const prefix = uniquePrefix('session-cluster')
t.teardown(async () => {
  await cleanupPrefix(client, prefix)
  await client.quit()
  await cluster.close()
})

let n = 0
sessionStoreConformance(
  t,
  async (_t, options) =>
    new RedisSessionStore({ client, prefix: `${prefix}${n++}:`, logger: quiet, ...options }),
)

t.test('point 7: a user with sessions on every node, logged out everywhere', async (t) => {
  const own = `${prefix}nodes:`
  const store = new RedisSessionStore({ client, prefix: own, logger: quiet })
  const app = await sessionApp(t, store, { maxAge: 60_000 })
  const cookies = await Promise.all(Array.from({ length: 12 }, () => login(app, 'alice')))
  const other = await login(app, 'bob')
  const slots = new Set<number>()
  const masters = new Set<string>()
  for (const cookie of cookies) {
    const key = keyOf(own, sessionIdOf(cookie))
    const slot = Number(await client.cluster('KEYSLOT', key))
    slots.add(slot)
    t.equal(Number(await client.cluster('KEYSLOT', `${key}:u`)), slot, 'owner record in the session slot')
    t.equal(Number(await client.cluster('KEYSLOT', `${key}:x`)), slot, 'tombstone in the session slot')
    const node = client.slots[slot]?.[0]
    if (node !== undefined) masters.add(node)
  }
  t.ok(masters.size >= 2, `one user's sessions spread over ${masters.size} masters (${slots.size} slots)`)
  t.equal((await store.listForUser('alice')).length, 12, 'all twelve listed')
  t.equal(await store.destroyAllForUser('alice'), 12, 'all twelve destroyed across the nodes')
  for (const cookie of cookies)
    t.equal(await client.exists(keyOf(own, sessionIdOf(cookie))), 0, 'gone from its node')
  t.equal(await whoAmI(app, cookies[0] ?? ''), null, 'a device is logged out')
  t.equal(await whoAmI(app, other), 'bob', 'the other user is not')
})
