import { RedisSessionStore } from '@larder/session-store'
import { type RedisServer, startRedisServer, waitFor } from '@larder/test-support'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { login, sessionApp, whoAmI } from './helpers/app.js'
import { recordingLogger } from './helpers/redis.js'

// Issue 6, point 6: Redis stopped → 503 with a clear message (never a fresh session that logs the
// user out, never a 500 with a stack); Redis back → the same app works again.

/** "Never hangs": well above the store's timeout, far below a client waiting out its reconnects. */
const BOUND_MS = 1_500

async function ownServer(t: Test): Promise<RedisServer> {
  const server = await startRedisServer()
  t.teardown(() => server.close())
  return server
}

function client(t: Test, url: string): Redis {
  // ioredis defaults, as an application would have them: an offline queue and 20 retries per request.
  const redis = new Redis(url)
  redis.on('error', () => {})
  t.teardown(() => redis.disconnect())
  return redis
}

async function timed(
  app: FastifyInstance,
  request: InjectOptions,
): Promise<{ response: LightMyRequestResponse; ms: number }> {
  const started = Date.now()
  const response = await app.inject(request)
  return { response, ms: Date.now() - started }
}

function assertUnavailable(t: Test, response: LightMyRequestResponse, ms: number, what: string): void {
  t.equal(response.statusCode, 503, `${what}: 503`)
  const body = response.json()
  t.equal(body.code, 'LARDER_SESSION_STORE_UNAVAILABLE', `${what}: a stable error code`)
  t.match(body.message, /^session store unavailable \(\w+\), try again shortly$/, `${what}: a clear message`)
  t.notOk('stack' in body, `${what}: no stack trace`)
  t.notOk(
    response.cookies.some((c) => c.name === 'sid'),
    `${what}: no new session cookie`,
  )
  t.ok(ms < BOUND_MS, `${what}: answered promptly (${ms} ms)`)
}

t.test('point 6: Redis stopped → 503; restarted → works again without restarting Fastify', async (t) => {
  const server = await ownServer(t)
  const { logger } = recordingLogger()
  const store = new RedisSessionStore({ client: client(t, server.url), timeout: 300, logger })
  const app = await sessionApp(t, store, { maxAge: 60_000 })
  const cookie = await login(app, 'alice')
  t.equal(await whoAmI(app, cookie), 'alice', 'logged in while Redis is up')

  await server.stop()
  const read = await timed(app, { method: 'GET', url: '/me', cookies: { sid: cookie } })
  assertUnavailable(t, read.response, read.ms, 'reading a session')
  const write = await timed(app, { method: 'POST', url: '/login', payload: { user: 'bob' } })
  assertUnavailable(t, write.response, write.ms, 'logging in')
  const logout = await timed(app, { method: 'POST', url: '/logout', cookies: { sid: cookie } })
  assertUnavailable(t, logout.response, logout.ms, 'logging out')
  const everywhere = await store.destroyAllForUser('alice').catch((error: { statusCode?: number }) => error)
  t.equal(
    (everywhere as { statusCode?: number }).statusCode,
    503,
    'destroyAllForUser rejects with a 503 error',
  )
  const listed = await store.listForUser('alice').catch((error: { statusCode?: number }) => error)
  t.equal((listed as { statusCode?: number }).statusCode, 503, 'listForUser too')

  await server.start()
  const again = await waitFor(
    async () => {
      const response = await app.inject({ method: 'POST', url: '/login', payload: { user: 'carol' } })
      return response.statusCode === 200 ? response : undefined
    },
    { timeout: 10_000, interval: 100, message: 'logins never worked again after Redis came back' },
  )
  const carol = again?.cookies.find((c) => c.name === 'sid')?.value ?? ''
  t.equal(await whoAmI(app, carol), 'carol', 'after the restart, sessions work again in the same app')
})

t.test('a Redis that stops answering (paused) → 503 within the timeout, not a hang', async (t) => {
  const server = await ownServer(t)
  const admin = client(t, server.url)
  const store = new RedisSessionStore({
    client: client(t, server.url),
    timeout: 200,
    logger: recordingLogger().logger,
  })
  const app = await sessionApp(t, store, { maxAge: 60_000 })
  const cookie = await login(app, 'dave')
  await admin.client('PAUSE', 1_000, 'ALL')
  const read = await timed(app, { method: 'GET', url: '/me', cookies: { sid: cookie } })
  assertUnavailable(t, read.response, read.ms, 'a read while Redis is paused')
  await waitFor(async () => (await whoAmI(app, cookie)) === 'dave', {
    timeout: 5_000,
    interval: 100,
    message: 'the session never came back after the pause',
  })
  t.pass('once Redis answers again the session is read as before')
})

t.test('a client that never connected fails within the timeout', async (t) => {
  const server = await ownServer(t)
  await server.stop()
  const redis = new Redis(server.url, { lazyConnect: true, retryStrategy: () => null })
  redis.on('error', () => {})
  t.teardown(() => redis.disconnect())
  const store = new RedisSessionStore({ client: redis, timeout: 200, logger: recordingLogger().logger })
  const app = await sessionApp(t, store)
  const write = await timed(app, { method: 'POST', url: '/login', payload: { user: 'erin' } })
  assertUnavailable(t, write.response, write.ms, 'a login on a Redis that is not there')
})
