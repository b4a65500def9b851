import { setTimeout as sleep } from 'node:timers/promises'
import { createCache, createWriteBehind, type WriteBehindItem } from '@larder/core'
import { sharedRedis, sharedRedisUrl, startRedisServer, waitFor } from '@larder/test-support'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'

// Write-behind when things go wrong around it: nothing recorded is dropped, writes of one key stay in
// the order they were made, and a process never keeps serving a value its own failed write replaced.

const { redis, prefix } = sharedRedis(t)

function newCache(t: Test, options: Parameters<typeof createCache>[0]) {
  const cache = createCache(options)
  t.teardown(() => cache.close())
  return cache
}

/** A flush that keeps every batch it was given, in order. */
function recordingFlush<T>() {
  const batches: Array<Array<WriteBehindItem<T>>> = []
  const flush = (batch: Array<WriteBehindItem<T>>) => {
    batches.push(batch)
  }
  /** The last value flushed for each key. */
  const last = () => {
    const values = new Map<string, T>()
    for (const batch of batches) for (const item of batch) values.set(item.key, item.value)
    return values
  }
  return { flush, batches, last }
}

t.test(
  'a batch whose dead letter cannot be written is not acknowledged, and is dead-lettered later',
  async (t) => {
    const p = prefix('wbf-dead')
    const cache = newCache(t, { redis: sharedRedisUrl, prefix: p })
    const stream = `${p}{wb:jobs}`
    // The dead-letter stream's key holds a string: every XADD to it fails with WRONGTYPE.
    await redis.set(`${stream}:dead`, 'in the way')
    const writer = createWriteBehind({
      cache,
      name: 'jobs',
      interval: 30,
      maxRetries: 0,
      claimIdle: 200,
      flush: () => {
        throw new Error('database refuses')
      },
    })
    t.teardown(() => writer.close().catch(() => {}))
    await writer.write('job:1', { n: 1 })
    await waitFor(async () => (await writer.stats()).failedFlushes >= 2, {
      message: 'the flush was not tried again',
    })
    t.equal((await writer.stats()).deadLettered, 0, 'not counted as dead-lettered')
    t.equal(await redis.xlen(stream), 1, 'the write is still in the stream')
    const pending = (await redis.xpending(stream, 'jobs')) as [number, ...unknown[]]
    t.equal(pending[0], 1, 'pending, so another try will claim it')

    await redis.del(`${stream}:dead`)
    await waitFor(async () => (await writer.stats()).deadLettered === 1, {
      message: 'the write never reached the dead-letter stream',
    })
    const dead = await redis.xrange(`${stream}:dead`, '-', '+')
    t.equal(dead.length, 1, 'once the key is usable the write is dead-lettered, once')
    t.match(
      dead[0]?.[1].join(' '),
      /k job:1 c j v \{"n":1\} error Error: database refuses/,
      'with its value and error',
    )
    await waitFor(async () => (await redis.xlen(stream)) === 0, { message: 'the stream kept the write' })
    t.pass('and only then taken off the stream')
  },
)

t.test(
  "a handed client with ioredis's keyPrefix: keys reach flush as the application named them",
  async (t) => {
    const keyPrefix = prefix('wbf-key-prefix')
    const client = new Redis(sharedRedisUrl, { keyPrefix })
    t.teardown(() => client.quit())
    // Its own name, so a stream left by an earlier failed run cannot be mistaken for this one's.
    const appPrefix = prefix('wbf-app')
    t.teardown(() => redis.del(`${appPrefix}{wb:users}`))
    const cache = newCache(t, { redis: client, prefix: appPrefix })
    const { flush, last } = recordingFlush<number>()
    const writer = createWriteBehind<number>({ cache, name: 'users', interval: 30, flush })
    await writer.write('user:1', 1)
    await writer.write('user:2', 2, { tags: ['users'] })
    await writer.close()
    t.same(
      [...last()].sort(),
      [
        ['user:1', 1],
        ['user:2', 2],
      ],
      'flush got both writes under their own names before close() resolved',
    )
    t.equal(
      await redis.exists(`${keyPrefix}${appPrefix}{wb:users}`),
      1,
      "the stream lives under the client's prefix",
    )
    t.equal(await redis.exists(`${appPrefix}{wb:users}`), 0, 'and nowhere else')
  },
)

t.test('writes of one key land in the order they were made, whatever path each takes', async (t) => {
  const p = prefix('wbf-order')
  const cache = newCache(t, { redis: sharedRedisUrl, prefix: p })
  const { flush, last } = recordingFlush<string>()
  const writer = createWriteBehind<string>({ cache, name: 'docs', interval: 30, flush })
  // A tagged write waits for its tags' versions; an uncached one (ttl 0) is recorded on its own.
  const writes = [
    writer.write('a', 'first', { tags: ['docs'] }),
    writer.write('a', 'second'),
    writer.write('b', 'first'),
    writer.write('b', 'second', { ttl: 0 }),
    writer.write('c', 'first', { ttl: 0 }),
    writer.write('c', 'second', { tags: ['docs'] }),
  ]
  await Promise.all(writes)
  t.equal(await cache.get('a'), 'second', 'the cache holds the later write of a')
  t.equal(await cache.get('b'), undefined, 'b: its last write is not cached (ttl 0), so nothing older is')
  t.equal(await cache.get('c'), 'second', 'the cache holds the later write of c')
  await writer.close()
  t.same(
    [...last()].sort(),
    [
      ['a', 'second'],
      ['b', 'second'],
      ['c', 'second'],
    ],
    'the database ends with the later write of every key',
  )
})

t.test('a close() right after a tagged write still flushes it', async (t) => {
  const p = prefix('wbf-close')
  const cache = newCache(t, { redis: sharedRedisUrl, prefix: p })
  const { flush, last } = recordingFlush<number>()
  const writer = createWriteBehind<number>({ cache, name: 'late', interval: 30, flush })
  const write = writer.write('k', 1, { tags: ['t'] })
  await writer.close()
  await write
  t.same([...last()], [['k', 1]], 'flushed before close() resolved')
})

t.test(
  'a stream deleted under the writer: its group is made again and later writes are flushed',
  async (t) => {
    const p = prefix('wbf-nogroup')
    const cache = newCache(t, { redis: sharedRedisUrl, prefix: p })
    const { flush, last } = recordingFlush<number>()
    const writer = createWriteBehind<number>({ cache, name: 'events', interval: 30, flush })
    t.teardown(() => writer.close())
    await writer.write('before', 1)
    await waitFor(() => last().has('before'), { message: 'the first write was not flushed' })
    await redis.del(`${p}{wb:events}`)
    await writer.write('after', 2)
    await waitFor(() => last().get('after') === 2, {
      timeout: 5_000,
      message: 'a write made after the stream was lost never reached flush',
    })
    t.pass('the write made after the stream was deleted reached flush')
  },
)

t.test('a batch that failed (Redis paused past the timeout) leaves no stale value in L1', async (t) => {
  const server = await startRedisServer()
  t.teardown(() => server.close())
  const admin = new Redis(server.url)
  t.teardown(() => admin.quit())
  const cache = newCache(t, { redis: server.url, prefix: 'p:', timeout: 100 })
  await cache.ready()
  const writer = createWriteBehind<string>({ cache, name: 'w', interval: 30, flush: () => {} })
  t.teardown(() => writer.close().catch(() => {}))
  await writer.write('k', 'old')
  t.equal(await cache.get('k'), 'old', 'the first value is read from L1')
  await admin.client('PAUSE', 400, 'ALL')
  await t.rejects(writer.write('k', 'new'), 'the write times out, so its caller is told it failed')
  await sleep(500)
  // The script was sent and ran once Redis resumed; this process must not keep serving 'old'.
  t.equal(await cache.get('k'), 'new', "the value Redis holds, not L1's old copy")
})

t.test("the in-process queue's order keeps sorting in write order when the clock steps back", async (t) => {
  const cache = newCache(t, {})
  const { flush, batches } = recordingFlush<number>()
  const writer = createWriteBehind<number>({ cache, name: 'local', interval: 10_000, flush })
  await writer.write('a', 1)
  const realNow = Date.now
  Date.now = () => realNow() - 3_600_000
  t.teardown(() => {
    Date.now = realNow
  })
  await writer.write('b', 2)
  Date.now = realNow
  await writer.close()
  const items = batches.flat()
  t.same(
    items.map((item) => item.key),
    ['a', 'b'],
    'both writes flushed',
  )
  t.ok((items[1]?.order ?? '') > (items[0]?.order ?? ''), 'the later write sorts after the earlier one')
})
