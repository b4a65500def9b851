import { fileURLToPath } from 'node:url'
import { Cluster, Redis } from 'ioredis'
import t from 'tap'
import {
  cleanupPrefix,
  runNodeScript,
  sharedRedisUrl,
  startRedisCluster,
  startRedisServer,
  uniquePrefix,
  waitFor,
} from '../src/index.js'

/** One PING over a fresh connection that never retries, so a stopped server fails fast. */
async function pingOnce(port: number): Promise<string> {
  const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null })
  client.on('error', () => {})
  try {
    await client.connect()
    return await client.ping()
  } finally {
    client.disconnect()
  }
}

t.test('uniquePrefix and sharedRedisUrl', async (t) => {
  const prefix = uniquePrefix('demo')
  t.match(prefix, new RegExp(`^t:demo:${process.pid}:[0-9a-f]{6}:$`))
  t.not(uniquePrefix('demo'), prefix, 'two calls differ')
  t.equal(sharedRedisUrl, process.env.REDIS_URL ?? 'redis://127.0.0.1:6379')
})

t.test('waitFor', async (t) => {
  let calls = 0
  t.equal(await waitFor(() => ++calls >= 3 && 'done', { interval: 1 }), 'done')
  let attempts = 0
  const flaky = (): number => {
    if (++attempts < 3) throw new Error('not yet')
    return attempts
  }
  t.equal(await waitFor(flaky, { interval: 1 }), 3, 'a throwing check is retried')
  await t.rejects(
    waitFor(() => false, { timeout: 30, message: 'never true' }),
    { message: 'never true' },
  )
  await t.rejects(
    waitFor(
      () => {
        throw new Error('boom')
      },
      { timeout: 30 },
    ),
    { message: /within 30ms/, cause: { message: 'boom' } },
  )
})

t.test('startRedisServer: stop, restart on the same port, close', async (t) => {
  const server = await startRedisServer()
  t.teardown(() => server.close())
  t.equal(server.host, '127.0.0.1')
  t.equal(server.url, `redis://127.0.0.1:${server.port}`)

  const client = new Redis(server.url)
  client.on('error', () => {})
  t.teardown(() => client.disconnect())
  await client.set('k', 'v')
  t.equal(await client.get('k'), 'v')

  await server.stop()
  await t.rejects(pingOnce(server.port), 'PING fails while stopped')

  await server.start()
  t.equal(await pingOnce(server.port), 'PONG', 'PING works again on the same port')
  t.equal(await client.get('k'), null, 'no persistence across restarts')

  await server.close()
  await server.close()
  await t.rejects(pingOnce(server.port), 'PING fails after close')
  await t.rejects(server.start(), /closed/)
})

t.test('startRedisServer passes extra args', async (t) => {
  const server = await startRedisServer({ args: ['--maxmemory', '5mb'] })
  t.teardown(() => server.close())
  const client = new Redis(server.url)
  t.teardown(() => client.disconnect())
  t.same(await client.config('GET', 'maxmemory'), ['maxmemory', String(5 * 1024 * 1024)])
  t.same(await client.config('GET', 'save'), ['save', ''], 'persistence stays off')
})

t.test('cleanupPrefix on a standalone server', async (t) => {
  const server = await startRedisServer()
  t.teardown(() => server.close())
  const client = new Redis(server.url)
  t.teardown(() => client.disconnect())

  // Glob characters in the prefix must match literally: unescaped, `esc*?[x]` would also match `escZZx`.
  const prefix = uniquePrefix('esc*?[x]\\')
  const lookalike = prefix.replace('esc*?[x]\\', 'escZZx\\')
  for (let i = 0; i < 30; i++) await client.set(`${prefix}${i}`, '1')
  await client.set(`${lookalike}0`, 'keep')
  await client.set('unrelated', 'keep')

  await cleanupPrefix(client, prefix)
  t.equal(await client.dbsize(), 2)
  t.equal(await client.get(`${lookalike}0`), 'keep')

  // Through a client with keyPrefix the prefix is relative to it, as for its other commands.
  const scoped = new Redis(server.url, { keyPrefix: 'app:' })
  t.teardown(() => scoped.disconnect())
  await scoped.set(`${prefix}a`, '1')
  await cleanupPrefix(scoped, prefix)
  t.equal(await client.exists(`app:${prefix}a`), 0)
  t.equal(await client.dbsize(), 2)
})

t.test('startRedisCluster: keys spread over masters, cleanupPrefix clears all of them', async (t) => {
  const cluster = await startRedisCluster()
  t.teardown(() => cluster.close())
  t.equal(cluster.nodes.length, 3)

  const client = new Cluster(cluster.nodes)
  t.teardown(() => client.disconnect())
  const prefix = uniquePrefix('cluster')
  const keys = Array.from({ length: 50 }, (_, i) => `${prefix}${i}`)
  for (const key of keys) await client.set(key, key)
  t.same(await Promise.all(keys.map((key) => client.get(key))), keys)

  const masters = client.nodes('master')
  t.equal(masters.length, 3)
  const perMaster = await Promise.all(masters.map((node) => node.dbsize()))
  t.ok(
    perMaster.every((n) => n > 0),
    `every master holds keys: ${perMaster.join(', ')}`,
  )

  await cleanupPrefix(client, prefix)
  t.same(await Promise.all(masters.map((node) => node.dbsize())), [0, 0, 0])

  await cluster.close()
  await cluster.close()
})

t.test('runNodeScript runs a .ts fixture in a second process', async (t) => {
  const fixture = fileURLToPath(new URL('./fixtures/print-line.ts', import.meta.url))
  const child = runNodeScript(fixture, { args: ['a', 'b'], env: { FIXTURE_GREETING: 'hi' } })
  t.teardown(() => child.kill())
  t.equal(await child.waitForLine(/^ready /), 'ready a,b hi')
  t.equal(await child.exit(), 0)
  t.same(child.lines(), ['starting', 'ready a,b hi'])
  t.equal(await child.waitForLine(/^starting$/), 'starting', 'past lines match too')
  await t.rejects(child.waitForLine(/never/), /exited without/)
})
