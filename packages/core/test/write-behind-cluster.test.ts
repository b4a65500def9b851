import { createCache, createWriteBehind } from '@larder/core'
import { startRedisCluster, uniquePrefix, waitFor } from '@larder/test-support'
import { Cluster } from 'ioredis'
import t from 'tap'
import { flushInto, postgres } from './fixtures/databases.js'
import { drained } from './fixtures/drained.js'

// On a Cluster the entry and the stream are in different slots: write-behind records first, then caches.

const cluster = await startRedisCluster()
t.teardown(() => cluster.close())
const db = postgres()
t.teardown(() => db.close())

t.test(
  'write-behind on a Redis Cluster: readable at once, flushed from the stream, nothing lost',
  async (t) => {
    const table = await db.table(t, 'wb_cluster')
    const client = new Cluster(cluster.nodes)
    client.on('error', () => {})
    t.teardown(async () => {
      await client.quit().catch(() => client.disconnect())
    })
    await client.ping()
    const cache = createCache({ redis: client, prefix: uniquePrefix('wb-cluster') })
    t.teardown(() => cache.close())
    await cache.ready()
    const writer = createWriteBehind({
      cache,
      name: 'cluster',
      interval: 50,
      flush: flushInto(table),
    })
    t.teardown(() => writer.close())
    // Keys spread over many slots, so over every master.
    for (let i = 0; i < 40; i++) await writer.write(`item:${i}`, { i })
    t.same(await cache.get('item:39'), { i: 39 }, 'the last write is readable at once')
    await waitFor(async () => (await table.rows()).size === 40, { message: 'not all flushed' })
    const rows = await table.rows()
    t.equal(rows.get('item:7'), '{"i":7}', 'the database has every write')
    await drained(writer, { message: 'never acknowledged' })
    t.equal((await writer.stats()).lag, 0, 'and nothing waits in the stream')
  },
)
