import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { type Cache, type CacheOptions, createCache, type Logger } from '@larder/core'
import {
  cleanupPrefix,
  type RedisServer,
  sharedRedisUrl,
  startRedisServer,
  uniquePrefix,
  waitFor,
} from '@larder/test-support'
import { Redis } from 'ioredis'
import t, { type Test as Tap } from 'tap'

// Failure (issue point 8): a dead, restarted or corrupted Redis is a miss plus a log line and a
// counter, never an error to the caller (invalidations excepted: they reject, after purging L1).

interface LogLine {
  level: 'debug' | 'warn' | 'error'
  obj: object
  msg: string | undefined
}

/** A logger that keeps every line, so a test can show the failure was reported. */
function collectingLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = []
  const line =
    (level: LogLine['level']) =>
    (obj: object, msg?: string): void => {
      lines.push({ level, obj, msg })
    }
  return { logger: { debug: line('debug'), warn: line('warn'), error: line('error') }, lines }
}

/** Short bounds so a dead Redis is noticed fast. */
const FAST = { timeout: 100, breaker: { threshold: 3, cooldown: 300 } } satisfies CacheOptions

/** "Never hangs": far above the 100 ms timeout, far below any wait on a reconnecting client. */
const BOUND_MS = 1500

async function ownServer(t: Tap): Promise<RedisServer> {
  const server = await startRedisServer()
  t.teardown(() => server.close())
  return server
}

function newCache(t: Tap, options: CacheOptions): Cache {
  const cache = createCache(options)
  t.teardown(() => cache.close())
  return cache
}

/** A client for the test itself (never the one under test). */
function adminClient(t: Tap, url: string): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: 1 })
  client.on('error', () => {})
  t.teardown(() => client.disconnect())
  return client
}

/** Runs `call` and reports how long it took. */
async function timed<T>(call: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = Date.now()
  const value = await call()
  return { value, ms: Date.now() - started }
}

/** Calls `wrap` on fresh keys with Redis stopped: each must return the loader's value, quickly. */
async function wrapWhileDown(t: Tap, cache: Cache, calls: number, round = 'down'): Promise<void> {
  for (let i = 0; i < calls; i++) {
    // Fresh keys: a loaded value stays in L1 even when Redis is down, and would be served from there.
    const { value, ms } = await timed(() => cache.wrap(`${round}:${i}`, () => `loaded ${i}`))
    t.equal(value, `loaded ${i}`, `wrap #${i} with Redis down returns the loader's value`)
    t.ok(ms < BOUND_MS, `wrap #${i} with Redis down returns within ${BOUND_MS} ms (took ${ms} ms)`)
  }
}

for (const kind of ['a URL (Larder-owned client)', 'a handed ioredis client with default options']) {
  t.test(
    `Redis stopped mid-test, given ${kind}: wrap behaves as a miss, fast, counted and logged`,
    async (t) => {
      const server = await ownServer(t)
      const { logger, lines } = collectingLogger()
      let redis: string | Redis = server.url
      if (kind.startsWith('a handed')) {
        // ioredis defaults: offline queue on, maxRetriesPerRequest 20: a command sent now would wait
        // for the reconnection for a long time.
        const client = new Redis(server.url)
        client.on('error', () => {})
        t.teardown(() => client.disconnect())
        redis = client
      }
      const cache = newCache(t, { ...FAST, redis, prefix: 'f:', logger })
      await cache.ready()
      t.equal(await cache.wrap('up', () => 'stored'), 'stored', 'with Redis up the value is loaded')
      t.equal(cache.stats().l2Errors, 0, 'no L2 error while Redis is up')

      await server.stop()
      if (redis instanceof Redis) {
        // The premise: on this client a plain command waits in the offline queue, unanswered.
        const raw = redis.get('f:up').then(
          () => 'answered',
          () => 'failed',
        )
        const outcome = await Promise.race([raw, sleep(300).then(() => 'still waiting')])
        t.equal(outcome, 'still waiting', 'a plain command on the handed client is queued, not answered')
      }
      await wrapWhileDown(t, cache, 6)
      const errors = cache.stats().l2Errors
      t.ok(errors > 0, `stats().l2Errors grew while Redis was down (${errors})`)
      const reported = lines.filter((line) => line.level === 'error' || line.level === 'warn')
      t.ok(
        reported.length > 0,
        `the logger received error/warn lines (${reported.map((l) => l.msg).join(' | ')})`,
      )
      t.equal(
        await cache.wrap('up', () => 'unused'),
        'stored',
        'an L1 copy is still served while Redis is down',
      )

      await wrapWhileDown(t, cache, 3, 'again')
      t.ok(cache.stats().l2Errors > errors, 'each further miss with Redis down counts as an L2 error')
    },
  )
}

t.test(
  'the breaker opens after `threshold` failures, and L2 is used again after Redis restarts',
  async (t) => {
    const server = await ownServer(t)
    const { logger, lines } = collectingLogger()
    const a = newCache(t, { ...FAST, redis: server.url, prefix: 'f:', logger })
    await a.ready()
    t.equal(a.stats().breaker, 'closed', 'the breaker starts closed')

    await server.stop()
    await wrapWhileDown(t, a, FAST.breaker.threshold)
    t.equal(a.stats().breaker, 'open', `after ${FAST.breaker.threshold} failures the breaker is open`)
    t.ok(
      lines.some((line) => line.level === 'warn' && /circuit open/.test(line.msg ?? '')),
      'opening the breaker is logged',
    )
    const { value, ms } = await timed(() => a.wrap('while-open', () => 'direct'))
    t.equal(value, 'direct', 'with the breaker open wrap still returns the loader value')
    t.ok(ms < BOUND_MS, `and returns within ${BOUND_MS} ms (took ${ms} ms)`)

    await server.start()
    // The breaker closes once a probe (a call after the cooldown, on a reconnected client) succeeds.
    await waitFor(
      async () => {
        await a.get('probe')
        return a.stats().breaker === 'closed'
      },
      { timeout: 10_000, interval: 50, message: 'the breaker did not close after Redis came back' },
    )
    t.equal(a.stats().breaker, 'closed', 'after Redis is back the breaker is closed again')
    t.ok(
      lines.some((line) => line.level === 'warn' && /circuit closed/.test(line.msg ?? '')),
      'closing the breaker is logged',
    )

    await a.set('after', { recovered: true })
    const b = newCache(t, { ...FAST, redis: server.url, prefix: 'f:' })
    const before = b.stats().l2Hits
    t.same(
      await b.get('after'),
      { recovered: true },
      'a value set after recovery is read by another instance',
    )
    t.equal(b.stats().l2Hits, before + 1, 'and it came from Redis (fresh L1 on that instance)')
    t.equal(b.stats().breaker, 'closed', "the reader's breaker is closed")
  },
)

/** wrap/get/set/invalidateTags on a cache without L1, so every call runs a script on Redis (all six). */
async function exerciseScripts(t: Tap, cache: Cache, round: string): Promise<void> {
  let loads = 0
  const loader = () => {
    loads++
    return `${round} value`
  }
  t.equal(await cache.wrap(`${round}:w`, loader, { tags: ['grp'] }), `${round} value`, `${round}: wrap loads`)
  t.equal(await cache.wrap(`${round}:w`, loader, { tags: ['grp'] }), `${round} value`, `${round}: wrap reads`)
  t.equal(loads, 1, `${round}: the second wrap was served by Redis`)
  // A failing loader gives its lock back (the release script); the error is the loader's own.
  await t.rejects(
    cache.wrap(`${round}:fail`, () => Promise.reject(new Error('loader down'))),
    { message: 'loader down' },
    `${round}: a failing loader's error reaches the caller, nothing else`,
  )
  await cache.set(`${round}:s`, 42, { tags: ['grp'] })
  t.equal(await cache.get(`${round}:s`), 42, `${round}: get reads what set wrote`)
  await cache.invalidateTags(['grp'])
  t.equal(
    await cache.get(`${round}:s`),
    undefined,
    `${round}: invalidateTags made the tagged entry unreadable`,
  )
  t.equal(await cache.get(`${round}:w`), undefined, `${round}: and the wrapped one too`)
}

/** The SHA1s of the engine's Lua scripts that a single Redis runs (get.lua reads on a Cluster only). */
function scriptShas(): string[] {
  const dir = new URL('../src/redis/', import.meta.url)
  return readdirSync(dir)
    .filter((file) => file.endsWith('.lua') && file !== 'get.lua')
    .map((file) =>
      createHash('sha1')
        .update(readFileSync(new URL(file, dir)))
        .digest('hex'),
    )
}

t.test(
  'NOSCRIPT: scripts survive a Redis restart and SCRIPT FLUSH, with no error to the caller',
  async (t) => {
    const server = await ownServer(t)
    const cache = newCache(t, { ...FAST, redis: server.url, prefix: 'f:', l1: false })
    const admin = adminClient(t, server.url)
    const shas = scriptShas()
    const loaded = async (): Promise<number[]> => (await admin.script('EXISTS', ...shas)) as number[]
    const all = (flag: number) => shas.map(() => flag)
    t.ok(shas.length >= 6, `the engine's scripts are found (${shas.length})`)
    await cache.ready()
    await exerciseScripts(t, cache, 'first')
    t.same(await loaded(), all(1), 'every script was loaded by the first round')

    await server.stop()
    await server.start()
    // Wait until the cache reaches Redis again (its client reconnects on its own backoff, and the
    // breaker may be open meanwhile), with a call that runs no script.
    await waitFor(
      async () => {
        await cache.delete('reconnected')
        return true
      },
      { timeout: 10_000, interval: 50, message: 'the cache did not reach Redis again after the restart' },
    )
    t.same(await loaded(), all(0), 'the restarted server has an empty script cache')
    const afterRestart = cache.stats().l2Errors
    await exerciseScripts(t, cache, 'restarted')
    t.same(await loaded(), all(1), 'every script was reloaded')
    t.equal(cache.stats().l2Errors, afterRestart, 'NOSCRIPT after the restart was not even an L2 error')

    t.equal(await admin.script('FLUSH'), 'OK', 'scripts flushed')
    t.same(await loaded(), all(0), 'the script cache is empty again')
    await exerciseScripts(t, cache, 'flushed')
    t.same(await loaded(), all(1), 'every script was reloaded again')
    t.equal(cache.stats().l2Errors, afterRestart, 'NOSCRIPT after SCRIPT FLUSH was not even an L2 error')
  },
)

t.test('garbage in Redis is a miss: the loader runs and a proper entry replaces it', async (t) => {
  const prefix = uniquePrefix('failure-garbage')
  const admin = adminClient(t, sharedRedisUrl)
  t.teardown(() => cleanupPrefix(admin, prefix))
  const { logger, lines } = collectingLogger()
  const cache = newCache(t, { ...FAST, redis: sharedRedisUrl, prefix, logger })
  const reader = newCache(t, { ...FAST, redis: sharedRedisUrl, prefix, l1: false })
  const [seconds] = await admin.time()
  const now = Number(seconds) * 1000
  const future = String(now + 60_000)
  const meta = (times: string) => `j,${times},${now},1,0`

  const plant: Array<[name: string, plant: (key: string) => Promise<unknown>]> = [
    ['a plain string', (key) => admin.set(key, '"looks like a value"')],
    ['a hash with non-numeric times', (key) => admin.hset(key, { v: '"v"', m: meta('x,y,z') })],
    ['a hash without its metadata', (key) => admin.hset(key, { v: '"v"' })],
    [
      'a hash whose JSON value is invalid JSON',
      (key) => admin.hset(key, { v: '{not json', m: meta(`${future},${future},${future}`) }),
    ],
  ]
  // Read by a caller who declares no tags and by one who does.
  for (const tags of [[], ['g']]) {
    for (const [i, [plainName, write]] of plant.entries()) {
      const name = `${plainName}, read ${tags.length > 0 ? 'with tags' : 'without tags'}`
      const key = `garbage:${tags.length}:${i}`
      await write(prefix + key)
      let loads = 0
      const value = await cache.wrap(
        key,
        () => {
          loads++
          return { proper: i }
        },
        { tags },
      )
      t.same(value, { proper: i }, `${name}: wrap returns the loader's value without throwing`)
      t.equal(loads, 1, `${name}: the loader ran once`)
      t.equal(await admin.type(prefix + key), 'hash', `${name}: the key now holds an entry hash`)
      t.same(await reader.get(key), { proper: i }, `${name}: another instance (no L1) reads the proper entry`)
    }
  }
  t.ok(
    lines.some((line) => line.level === 'warn' && /unreadable entry/.test(line.msg ?? '')),
    'the undecodable value was logged',
  )
  t.ok(cache.stats().l2Errors >= 1, 'and counted as an L2 error')
})

t.test('garbage that get() meets is removed, and reads as a miss without an error', async (t) => {
  const prefix = uniquePrefix('failure-garbage-get')
  const admin = adminClient(t, sharedRedisUrl)
  t.teardown(() => cleanupPrefix(admin, prefix))
  const cache = newCache(t, { ...FAST, redis: sharedRedisUrl, prefix, l1: false })

  await admin.set(`${prefix}plain`, 'not an entry')
  t.equal(await cache.get('plain'), undefined, 'a string at an entry key reads as a miss')
  await waitFor(async () => (await admin.type(`${prefix}plain`)) === 'none', {
    message: 'the string at the entry key was not removed',
  })
  t.pass('and the string is removed, so it cannot be met again')

  await cache.set('tagged', 'value', { tags: ['odd'] })
  t.equal(await cache.get('tagged'), 'value', 'a tagged entry reads while its tag version is a string')
  const versionKey = `${prefix}{t}:odd`
  t.equal(await admin.type(versionKey), 'string', 'the tag version lives at {t}:odd')
  await admin.del(versionKey)
  await admin.hset(versionKey, 'not', 'a version')
  for (let i = 0; i < 8; i++)
    t.equal(await cache.get('tagged'), undefined, `read ${i + 1}: a hash at its tag's version key is a miss`)
  t.equal(cache.stats().l2Errors, 0, 'not an L2 error')
  t.equal(cache.stats().breaker, 'closed', 'so the breaker stays closed')
  await cache.invalidateTags(['other'])
  await cache.set('after', 1)
  t.equal(await cache.get('after'), 1, 'and other keys are read and written as before')

  await cache.set('cut', 'value', { tags: ['whole'] })
  const [tagText] = await admin.hmget(`${prefix}cut`, 't')
  await admin.hset(`${prefix}cut`, 't', (tagText as string).slice(0, -1))
  t.equal(await cache.get('cut'), undefined, 'an entry whose tag list is cut short is a miss, not unchecked')
})

t.test('invalidations with Redis down reject with LARDER_INVALIDATION_FAILED but purge L1', async (t) => {
  const server = await ownServer(t)
  const cache = newCache(t, { ...FAST, redis: server.url, prefix: 'f:' })
  await cache.ready()
  await cache.set('by-key', 'k')
  await cache.set('by-tag', 't', { tags: ['grp'] })
  await cache.set('by-pattern:1', 'p')
  await server.stop()
  t.equal(await cache.get('by-key'), 'k', 'before the delete the value is served from L1')
  t.equal(await cache.get('by-tag'), 't', 'before invalidateTags the value is served from L1')
  t.equal(await cache.get('by-pattern:1'), 'p', 'before invalidatePattern the value is served from L1')

  const code = { code: 'LARDER_INVALIDATION_FAILED' }
  await t.rejects(cache.delete('by-key'), code, 'delete rejects')
  await t.rejects(cache.invalidateTags(['grp']), code, 'invalidateTags rejects')
  await t.rejects(cache.invalidatePattern('by-pattern:*'), code, 'invalidatePattern rejects')
  t.equal(await cache.get('by-key'), undefined, 'delete purged L1 anyway')
  t.equal(await cache.get('by-tag'), undefined, 'invalidateTags purged L1 anyway')
  t.equal(await cache.get('by-pattern:1'), undefined, 'invalidatePattern purged L1 anyway')
})

t.test('a bus reconnect drops L1, since invalidations sent meanwhile were lost', async (t) => {
  const server = await ownServer(t)
  const prefix = 'f:'
  const channel = `${prefix}bus`
  // Handed clients that wait 1 s before each reconnection attempt: the restarted server answers long
  // before B's bus is back, so the write below certainly happens while B cannot hear it.
  const slowClient = (): Redis => {
    const client = new Redis(server.url, { retryStrategy: () => 1000 })
    client.on('error', () => {})
    t.teardown(() => client.disconnect())
    return client
  }
  const { logger, lines } = collectingLogger()
  const a = newCache(t, { ...FAST, redis: slowClient(), prefix })
  const b = newCache(t, { ...FAST, redis: slowClient(), prefix, logger })
  await Promise.all([a.ready(), b.ready()])
  await a.set('k', 'old')
  t.equal(await b.get('k'), 'old', 'B reads the value')
  const l1Hits = b.stats().l1Hits
  t.equal(await b.get('k'), 'old', 'B reads it again')
  t.equal(b.stats().l1Hits, l1Hits + 1, 'from its L1')

  await server.stop()
  await server.start()
  const admin = adminClient(t, server.url)
  const writer = newCache(t, { ...FAST, redis: server.url, prefix, l1: false })
  await writer.ready()
  await writer.set('k', 'new')
  const [, subscribers] = (await admin.pubsub('NUMSUB', channel)) as [string, number]
  t.equal(subscribers, 1, "only the writer's bus listens: B's bus has not reconnected, its message is lost")
  t.equal(await b.get('k'), 'old', 'so B still serves its old L1 copy for now')

  const seen = await waitFor(async () => (await b.get('k')) === 'new', {
    timeout: 10_000,
    interval: 50,
    message: 'B kept its old L1 copy after its bus reconnected',
  })
  t.ok(seen, "once B's bus reconnected, B returns the new value: its L1 was dropped")
  t.ok(
    lines.some((line) => line.level === 'warn' && /bus reconnected/.test(line.msg ?? '')),
    'the reconnect and the L1 drop were logged',
  )
})

t.test('a logger that throws does not leave calls hanging on a Redis that stopped answering', async (t) => {
  const server = await ownServer(t)
  const throwing: Logger = {
    debug: () => {},
    warn: () => {
      throw new Error('logger broken')
    },
    error: () => {
      throw new Error('logger broken')
    },
  }
  const cache = newCache(t, { ...FAST, redis: server.url, prefix: 'lg:', l1: false, logger: throwing })
  await cache.ready()
  const admin = adminClient(t, server.url)
  // Redis holds every other client's commands unanswered for 5 s: each call must end by its timeout.
  await admin.client('PAUSE', 5_000, 'ALL')
  t.teardown(() => admin.client('UNPAUSE'))
  const started = Date.now()
  const values = await Promise.all([
    cache.wrap('a', () => 'loaded a'),
    cache.wrap('b', () => 'loaded b'),
    cache.wrap('c', () => 'loaded c'),
  ])
  t.same(values, ['loaded a', 'loaded b', 'loaded c'], 'every call got its loader value')
  t.ok(Date.now() - started < BOUND_MS * 2, 'long before Redis answered again')
})
