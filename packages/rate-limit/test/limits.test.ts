import { setTimeout as sleep } from 'node:timers/promises'
import rateLimit, { type RateLimitOptions } from '@larder/rate-limit'
import { sharedRedis } from '@larder/test-support'
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { attempt, redisNow, untilPhase } from './helpers.js'

// Issue 5, points 1 and 2, through the plugin on real Redis: refusals with every header right, the rate
// after the window slides, and no double burst at a window edge.

const shared = sharedRedis(t)
const client = shared.redis
const prefix = shared.prefix('rate-limits')

let apps = 0
async function app(t: Test, options: RateLimitOptions): Promise<FastifyInstance> {
  const fastify = Fastify()
  await fastify.register(rateLimit, {
    redis: client,
    prefix: `${prefix}${++apps}:`,
    timeout: 2_000,
    ...options,
  })
  fastify.get('/items', async () => ({ ok: true }))
  t.teardown(() => fastify.close())
  return fastify
}

async function statuses(fastify: FastifyInstance, n: number): Promise<number[]> {
  const codes: number[] = []
  for (let i = 0; i < n; i++) codes.push((await fastify.inject('/items')).statusCode)
  return codes
}
const count = (codes: number[], status: number) => codes.filter((code) => code === status).length

t.test('limit 10/1s (sliding log): the 11th is refused with every header right', async (t) => {
  const fastify = await app(t, { limit: 10, window: '1s', algorithm: 'sliding-log', headers: 'both' })
  const first = await fastify.inject('/items')
  t.equal(first.statusCode, 200, 'the first request is served')
  t.equal(first.headers['ratelimit-policy'], '"default";q=10;w=1', 'RateLimit-Policy names the policy')
  t.equal(first.headers.ratelimit, '"default";r=9;t=1', 'RateLimit: 9 remaining, whole again in 1 s')
  t.equal(first.headers['x-ratelimit-limit'], '10', 'legacy X-RateLimit-Limit')
  t.equal(first.headers['x-ratelimit-remaining'], '9', 'legacy X-RateLimit-Remaining')
  t.equal(first.headers['x-ratelimit-reset'], '1', 'legacy X-RateLimit-Reset in seconds')
  t.same(await statuses(fastify, 9), Array(9).fill(200), 'requests 2-10 are served')
  const refused = await fastify.inject('/items')
  t.equal(refused.statusCode, 429, 'the 11th is refused')
  t.equal(refused.headers['retry-after'], '1', 'Retry-After: 1 s')
  t.match(refused.headers['content-type'], /^application\/problem\+json/, 'a problem+json body')
  t.same(
    refused.json(),
    {
      type: 'about:blank',
      title: 'Too Many Requests',
      status: 429,
      detail: 'Rate limit "default" exceeded: 10 per 1 s. Retry in 1 s.',
      retryAfter: 1,
    },
    'the problem says what and how long',
  )
  t.equal(refused.headers.ratelimit, '"default";r=0;t=1', 'RateLimit: nothing remaining')
  t.equal(refused.headers['x-ratelimit-remaining'], '0', 'legacy remaining 0')
  await sleep(1_050)
  const after = await statuses(fastify, 12)
  t.equal(count(after, 200), 10, 'a window later exactly 10 more are served')
  t.equal(count(after, 429), 2, 'and the rest refused')
})

t.test('limit 10/1s (sliding window): after the window slides, the rate the weights promise', async (t) => {
  await attempt(t.fail.bind(t), async () => {
    const fastify = await app(t, { limit: 10, window: '1s' })
    await untilPhase(client, 1000, 20)
    const from = await redisNow(client)
    const first = await statuses(fastify, 11)
    if (Math.floor(from / 1000) !== Math.floor((await redisNow(client)) / 1000)) return false
    t.equal(count(first, 200), 10, '10 served early in a window')
    t.equal(first[10], 429, 'the 11th refused')
    await untilPhase(client, 1000, 600)
    await untilPhase(client, 1000, 600)
    const before = await redisNow(client)
    const second = await statuses(fastify, 10)
    const after = await redisNow(client)
    if (
      Math.floor(before / 1000) !== Math.floor(from / 1000) + 1 ||
      Math.floor(after / 1000) !== Math.floor(before / 1000)
    ) {
      return false
    }
    // The previous window's 10 weigh 10 × (1 − phase), so floor(10 × phase) units fit; the phase moved
    // from `before` to `after` while the requests ran.
    const least = Math.floor((10 * (before % 1000)) / 1000)
    const most = Math.floor((10 * (after % 1000)) / 1000)
    const served = count(second, 200)
    t.ok(
      served >= least && served <= most,
      `${served} served at phase ${before % 1000}-${after % 1000} ms, as the weights promise (${least}-${most})`,
    )
    return true
  })
})

t.test('the edge burst: 10 at the end of a window and 10 at the start of the next', async (t) => {
  await attempt(t.fail.bind(t), async () => {
    const fastify = await app(t, { limit: 10, window: '1s' })
    await untilPhase(client, 1000, 850)
    const from = await redisNow(client)
    const end = await statuses(fastify, 10)
    if (Math.floor(from / 1000) !== Math.floor((await redisNow(client)) / 1000)) return false
    t.equal(count(end, 200), 10, 'the 10 at the end of the window are served')
    await untilPhase(client, 1000, 30)
    const start = await statuses(fastify, 10)
    const after = await redisNow(client)
    if (Math.floor(after / 1000) !== Math.floor(from / 1000) + 1 || after % 1000 > 200) return false
    t.ok(
      count(start, 429) >= 8,
      `the sliding window refuses most of the next 10 (${count(start, 429)} refused; a fixed window refuses none)`,
    )
    return true
  })
})

t.test('headers: draft only by default, legacy only, or none', async (t) => {
  const draft = await app(t, { limit: 5 })
  const d = await draft.inject('/items')
  t.ok(d.headers.ratelimit && d.headers['ratelimit-policy'], 'draft fields by default')
  t.equal(d.headers['x-ratelimit-limit'], undefined, 'no legacy fields by default')

  const legacy = await app(t, { limit: 5, headers: 'legacy', name: 'legacy-test' })
  const l = await legacy.inject('/items')
  t.equal(l.headers['x-ratelimit-limit'], '5', 'legacy fields on request')
  t.equal(l.headers.ratelimit, undefined, 'and no draft fields')

  const none = await app(t, { limit: 1, headers: false, name: 'silent' })
  await none.inject('/items')
  const n = await none.inject('/items')
  t.equal(n.statusCode, 429, 'still limited without headers')
  t.equal(n.headers.ratelimit, undefined, 'no RateLimit field')
  t.equal(n.headers['x-ratelimit-limit'], undefined, 'no X-RateLimit fields')
  t.ok(n.headers['retry-after'], 'a 429 always says Retry-After')
})
