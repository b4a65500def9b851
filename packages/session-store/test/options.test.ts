import { MemorySessionStore, RedisSessionStore } from '@larder/session-store'
import { sharedRedisUrl } from '@larder/test-support'
import { Redis } from 'ioredis'
import t from 'tap'

const client = new Redis(sharedRedisUrl, { lazyConnect: true })
t.teardown(() => client.disconnect())

type RedisOptions = ConstructorParameters<typeof RedisSessionStore>[0]
type MemoryOptions = ConstructorParameters<typeof MemorySessionStore>[0]

t.test('options are checked when the store is made, with the option named', async (t) => {
  const redisCases: Array<[unknown, RegExp, string]> = [
    [{}, /RedisSessionStore client: expected an ioredis Redis or Cluster, got undefined/, 'no client'],
    [{ client: 'redis://x' }, /client: expected an ioredis Redis or Cluster, got "redis:\/\/x"/, 'a URL'],
    [{ client, prefix: 1 }, /prefix: expected a string, got number 1/, 'prefix'],
    [{ client, ttl: 'soon' }, /ttl: expected milliseconds/, 'ttl'],
    [{ client, ttl: 0 }, /ttl: expected at least 1 ms, got number 0/, 'ttl 0'],
    [{ client, tombstoneTtl: -1 }, /tombstoneTtl: expected milliseconds/, 'tombstoneTtl'],
    [{ client, timeout: 0 }, /timeout: expected at least 1 ms/, 'timeout'],
    [{ client, userField: '' }, /userField: expected a session field name/, 'userField empty'],
    [
      { client, userField: 'cookie' },
      /userField: expected a session field name other than 'cookie'/,
      'cookie',
    ],
    [{ client, logger: console.log }, /logger: expected a logger with debug, warn and error/, 'logger'],
    [{ client, max: 1 }, /RedisSessionStore: unknown option 'max'/, 'unknown option'],
    [null, /options: expected an object, got null/, 'null options'],
  ]
  for (const [options, message, what] of redisCases) {
    t.throws(() => new RedisSessionStore(options as RedisOptions), { message }, `Redis: ${what}`)
  }
  const memoryCases: Array<[unknown, RegExp, string]> = [
    [
      { maxSessions: 0 },
      /MemorySessionStore maxSessions: expected an integer > 0, got number 0/,
      'maxSessions',
    ],
    [{ now: 5 }, /now: expected a function returning milliseconds/, 'now'],
    [{ client }, /MemorySessionStore: unknown option 'client'/, 'a Redis option'],
    [{ ttl: [] }, /ttl: expected milliseconds .* got an array/, 'ttl'],
  ]
  for (const [options, message, what] of memoryCases) {
    t.throws(() => new MemorySessionStore(options as MemoryOptions), { message }, `memory: ${what}`)
  }
  t.throws(
    () => new RedisSessionStore({ client, ttl: 'x'.repeat(60) } as unknown as RedisOptions),
    { code: 'LARDER_INVALID_DURATION' },
    'long values are cut in the message',
  )
  t.ok(
    new RedisSessionStore({ client, ttl: '7d', tombstoneTtl: '15m', timeout: '2s' }),
    'durations as strings',
  )
  t.ok(new MemorySessionStore(), 'the memory store needs no options')
})

t.test('without a logger, a corrupt session is reported on the console', async (t) => {
  const warnings: unknown[][] = []
  const warn = console.warn
  console.warn = (...args: unknown[]) => void warnings.push(args)
  t.teardown(() => {
    console.warn = warn
  })
  const redis = new Redis(sharedRedisUrl)
  t.teardown(() => redis.disconnect())
  const prefix = `t:session-console:${process.pid}:`
  const store = new RedisSessionStore({ client: redis, prefix })
  await redis.set(`${prefix}{corrupt}`, 'nope', 'PX', 10_000)
  const session = await new Promise((resolve, reject) =>
    store.get('corrupt', (error, value) => (error ? reject(error) : resolve(value))),
  )
  t.equal(session, null, 'read as absent')
  t.match(String(warnings[0]?.[0]), /corrupt session/, 'a console warning says so')
})
