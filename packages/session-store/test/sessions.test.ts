import { setTimeout as sleep } from 'node:timers/promises'
import { waitFor } from '@larder/test-support'
import t from 'tap'
import { cookieOf, login, sessionApp, sessionIdOf, slowSessionApp, whoAmI } from './helpers/app.js'
import { keyOf, recordingLogger, sharedStore } from './helpers/redis.js'

// Issue 6, what Redis holds: points 1, 2, 3, 4, 5 and 8 asserted on the keys themselves.

t.test('point 1: login stores the session in Redis, logout deletes it', async (t) => {
  const { store, redis, prefix } = sharedStore(t, 'session-login')
  const app = await sessionApp(t, store, { maxAge: 60_000 })
  const cookie = await login(app, 'alice')
  const key = keyOf(prefix, sessionIdOf(cookie))
  const stored = JSON.parse((await redis.get(key)) ?? 'null')
  t.equal(stored?.s?.userId, 'alice', 'the session is in Redis under its id')
  t.equal(await redis.get(`${key}:u`), 'alice', 'with its owner')
  t.equal(await whoAmI(app, cookie), 'alice', 'the next request carries the user')
  await app.inject({ method: 'POST', url: '/logout', cookies: { sid: cookie } })
  t.equal(await redis.exists(key, `${key}:u`), 0, 'logout deletes the session from Redis')
  t.equal(await redis.exists(`${prefix}user:{alice}`), 0, 'and from the user index')
  const tombstoneTtl = await redis.pttl(`${key}:x`)
  t.ok(
    tombstoneTtl > 590_000 && tombstoneTtl <= 600_000,
    `a tombstone lasts tombstoneTtl (${tombstoneTtl} ms)`,
  )
})

t.test(
  'point 2: PTTL follows the cookie maxAge, the store ttl otherwise, and slides with rolling',
  async (t) => {
    const { store, redis, prefix } = sharedStore(t, 'session-expiry', { ttl: '2h' })
    const withMaxAge = await sessionApp(t, store, { maxAge: 30 * 60_000 })
    const cookie = await login(withMaxAge, 'bob')
    const key = keyOf(prefix, sessionIdOf(cookie))
    const pttl = await redis.pttl(key)
    t.ok(pttl > 30 * 60_000 - 5_000 && pttl <= 30 * 60_000, `PTTL is the cookie maxAge (${pttl} ms)`)
    const indexTtl = await redis.pttl(`${prefix}user:{bob}`)
    t.ok(
      indexTtl > 30 * 60_000 - 5_000 && indexTtl <= 30 * 60_000 + 1_000,
      `the user index lives as long (${indexTtl})`,
    )

    const sessionCookie = await sessionApp(t, store)
    const other = await login(sessionCookie, 'bob')
    const otherTtl = await redis.pttl(keyOf(prefix, sessionIdOf(other)))
    t.ok(
      otherTtl > 2 * 3_600_000 - 5_000 && otherTtl <= 2 * 3_600_000,
      `no maxAge: the store ttl (${otherTtl} ms)`,
    )

    const rolling = await sessionApp(t, store, { maxAge: 2_000, rolling: true })
    const rollingCookie = await login(rolling, 'carol')
    const rollingKey = keyOf(prefix, sessionIdOf(rollingCookie))
    await sleep(600)
    const before = await redis.pttl(rollingKey)
    t.ok(before <= 1_400, `time passes: PTTL went down (${before} ms)`)
    await whoAmI(rolling, rollingCookie)
    const after = await redis.pttl(rollingKey)
    t.ok(after > 1_800, `a request slides it back to maxAge (${after} ms)`)

    const fixed = await sessionApp(t, store, { maxAge: 2_000, rolling: false })
    const fixedCookie = await login(fixed, 'carol')
    const fixedKey = keyOf(prefix, sessionIdOf(fixedCookie))
    await sleep(600)
    await whoAmI(fixed, fixedCookie)
    const notSlid = await redis.pttl(fixedKey)
    t.ok(notSlid <= 1_400, `rolling: false, an unchanged session keeps its expiry (${notSlid} ms)`)
  },
)

t.test('point 2: an expired session is gone from Redis, and so is its index entry', async (t) => {
  const { store, redis, prefix } = sharedStore(t, 'session-gone')
  const app = await sessionApp(t, store, { maxAge: 300 })
  const cookie = await login(app, 'dave')
  const key = keyOf(prefix, sessionIdOf(cookie))
  await waitFor(async () => (await redis.exists(key, `${key}:u`)) === 0, {
    timeout: 1_500,
    message: 'the expired session stayed in Redis',
  })
  t.equal(await whoAmI(app, cookie), null, 'the cookie is anonymous')
  await waitFor(async () => (await redis.exists(`${prefix}user:{dave}`)) === 0, {
    timeout: 1_500,
    message: 'the index of a user whose sessions all expired stayed in Redis',
  })
  t.pass('the user index expires with its last session')
})

t.test('the user index is pruned of expired ids: it never grows without bound', async (t) => {
  const { store, redis, prefix } = sharedStore(t, 'session-prune')
  const short = await sessionApp(t, store, { maxAge: 200 })
  const long = await sessionApp(t, store, { maxAge: 60_000 })
  for (let i = 0; i < 5; i++) await login(short, 'erin')
  await sleep(300)
  const kept = await login(long, 'erin')
  t.same(
    await redis.zrange(`${prefix}user:{erin}`, 0, -1),
    [sessionIdOf(kept)],
    'adding a session dropped the five expired ids',
  )
})

t.test('point 3: regenerate on login deletes the old session from Redis', async (t) => {
  const { store, redis, prefix } = sharedStore(t, 'session-fixation')
  const app = await sessionApp(t, store, { maxAge: 60_000 })
  const anonymous = cookieOf(await app.inject({ method: 'POST', url: '/visit' }))
  const oldKey = keyOf(prefix, sessionIdOf(anonymous))
  t.equal(await redis.exists(oldKey), 1, 'the anonymous session is in Redis')
  const response = await app.inject({
    method: 'POST',
    url: '/login',
    payload: { user: 'frank' },
    cookies: { sid: anonymous },
  })
  const fresh = cookieOf(response)
  t.not(sessionIdOf(fresh), sessionIdOf(anonymous), 'a new id')
  t.equal(await redis.exists(oldKey), 0, 'the old id is gone from Redis')
  t.equal(await redis.exists(keyOf(prefix, sessionIdOf(fresh))), 1, 'the new one is there')
  t.equal(await whoAmI(app, anonymous), null, 'an attacker holding the old cookie gets nothing')
})

t.test("point 4: destroyAllForUser deletes every key of that user's sessions, nobody else's", async (t) => {
  const { store, redis, prefix } = sharedStore(t, 'session-everywhere')
  const app = await sessionApp(t, store, { maxAge: 60_000 })
  const devices = await Promise.all([login(app, 'grace'), login(app, 'grace'), login(app, 'grace')])
  const other = await login(app, 'heidi')
  t.equal(await redis.zcard(`${prefix}user:{grace}`), 3, 'the index holds three sessions')
  t.equal(await store.destroyAllForUser('grace'), 3, 'three destroyed')
  for (const [i, cookie] of devices.entries()) {
    t.equal(await redis.exists(keyOf(prefix, sessionIdOf(cookie))), 0, `session ${i + 1} is gone from Redis`)
    t.equal(await whoAmI(app, cookie), null, `device ${i + 1} is logged out`)
  }
  t.equal(await redis.exists(`${prefix}user:{grace}`), 0, 'the index is emptied')
  t.equal(await redis.exists(keyOf(prefix, sessionIdOf(other))), 1, "the other user's session is in Redis")
  t.equal(await whoAmI(app, other), 'heidi', 'and still logged in')
})

t.test('point 5: corrupt data under a session key → an anonymous session, logged, no crash', async (t) => {
  const { logger, lines } = recordingLogger()
  const { store, redis, prefix } = sharedStore(t, 'session-corrupt', { logger })
  const app = await sessionApp(t, store, { maxAge: 60_000 })
  const plants: Array<[string, (key: string) => Promise<unknown>]> = [
    ['truncated JSON', (key) => redis.set(key, '{"d":[],"s":{"userId":"ivan"')],
    ['JSON of another shape', (key) => redis.set(key, '["not","a","session"]')],
    ['a bad date path', (key) => redis.set(key, '{"d":[["__proto__","x"]],"s":{"userId":"ivan"}}')],
    ['a hash instead of a string', (key) => redis.hset(key, 'userId', 'ivan')],
  ]
  for (const [what, plant] of plants) {
    const cookie = await login(app, 'ivan')
    const key = keyOf(prefix, sessionIdOf(cookie))
    await redis.del(key)
    await plant(key)
    const warned = lines.length
    const response = await app.inject({ method: 'GET', url: '/me', cookies: { sid: cookie } })
    t.equal(response.statusCode, 200, `${what}: the request succeeds`)
    t.equal(response.json().user, null, `${what}: as an anonymous session`)
    t.equal(lines[warned]?.level, 'warn', `${what}: logged as a warning`)
    t.match(lines[warned]?.msg, /corrupt session/, `${what}: saying what happened`)
    t.equal(await redis.exists(key), 0, `${what}: the corrupt value is removed`)
  }
  t.equal(await whoAmI(app, await login(app, 'ivan')), 'ivan', 'the app goes on working')
})

t.test(
  'point 8: a request that loaded the session before logout cannot save it back into Redis',
  async (t) => {
    const { store, redis, prefix } = sharedStore(t, 'session-sticky')
    const { app, inside, release } = await slowSessionApp(t, store)
    const cookie = await login(app, 'judy')
    const key = keyOf(prefix, sessionIdOf(cookie))
    const slow = app.inject({ method: 'POST', url: '/slow', cookies: { sid: cookie } })
    await inside
    await app.inject({ method: 'POST', url: '/logout', cookies: { sid: cookie } })
    t.equal(await redis.exists(key), 0, 'logged out: the session is gone')
    release()
    t.equal((await slow).statusCode, 200, 'the slow request finishes normally')
    t.equal(await redis.exists(key), 0, 'its later save did not recreate the session in Redis')
    t.equal(await redis.zcard(`${prefix}user:{judy}`), 0, 'nor put it back in the user index')
    t.equal(await whoAmI(app, cookie), null, 'the user stays logged out')
  },
)
