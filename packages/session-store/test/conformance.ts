// One behaviour suite for every store (memory, Redis, Redis Cluster): through @fastify/session and
// @fastify/cookie with inject, as an application sees it, plus the store's own calls.
import { setTimeout as sleep } from 'node:timers/promises'
import type { SessionStoreOptions, UserSessionStore } from '@larder/session-store'
import { waitFor } from '@larder/test-support'
import type { Session } from 'fastify'
import type { Test } from 'tap'
import { cookieOf, login, sessionApp, sessionIdOf, slowSessionApp, whoAmI } from './helpers/app.js'

export type MakeStore = (t: Test, options?: SessionStoreOptions) => Promise<UserSessionStore>

/** The store's callback calls as promises. */
export function storeGet(store: UserSessionStore, id: string): Promise<Session | null | undefined> {
  return new Promise((resolve, reject) =>
    store.get(id, (error, session) => (error ? reject(error) : resolve(session))),
  )
}
export function storeSet(store: UserSessionStore, id: string, session: object): Promise<void> {
  return new Promise((resolve, reject) =>
    store.set(id, session as Session, (error?: unknown) => (error ? reject(error) : resolve())),
  )
}
export function storeDestroy(store: UserSessionStore, id: string): Promise<void> {
  return new Promise((resolve, reject) =>
    store.destroy(id, (error?: unknown) => (error ? reject(error) : resolve())),
  )
}

function inAnHour(): { expires: Date; originalMaxAge: number } {
  return { expires: new Date(Date.now() + 3_600_000), originalMaxAge: 3_600_000 }
}

export function sessionStoreConformance(t: Test, make: MakeStore): void {
  t.test('login, a request that carries the user, logout (issue point 1)', async (t) => {
    const store = await make(t)
    const app = await sessionApp(t, store, { maxAge: 60_000 })
    const cookie = await login(app, 'alice')
    const me = await app.inject({ method: 'GET', url: '/me', cookies: { sid: cookie } })
    t.equal(me.statusCode, 200, '/me answers')
    t.same(
      me.json(),
      { user: 'alice', loggedInAtIsDate: true, loggedInAt: '2026-01-02T03:04:05.678Z' },
      'the next request carries the user, and a Date stored in the session comes back as a Date',
    )
    const logout = await app.inject({ method: 'POST', url: '/logout', cookies: { sid: cookie } })
    t.equal(logout.statusCode, 200, 'logout answers')
    t.equal(await storeGet(store, sessionIdOf(cookie)), null, 'the store no longer has the session')
    t.equal(await whoAmI(app, cookie), null, 'the old cookie is an anonymous session')
  })

  t.test('an anonymous request without a session change stores nothing', async (t) => {
    const store = await make(t)
    const app = await sessionApp(t, store)
    const response = await app.inject({ method: 'GET', url: '/me' })
    t.same(response.json().user, null, 'anonymous')
    t.notOk(
      response.cookies.some((c) => c.name === 'sid'),
      'no cookie for an unused session',
    )
  })

  t.test('a session expires with its cookie maxAge (issue point 2)', async (t) => {
    const store = await make(t)
    const app = await sessionApp(t, store, { maxAge: 300 })
    const cookie = await login(app, 'bob')
    t.equal(await whoAmI(app, cookie), 'bob', 'logged in at first')
    await waitFor(async () => (await storeGet(store, sessionIdOf(cookie))) === null, {
      timeout: 1_500,
      message: 'the session never expired from the store',
    })
    t.pass('the store forgets the session after maxAge')
  })

  t.test('without maxAge or expires, the store ttl applies (issue point 2)', async (t) => {
    const store = await make(t, { ttl: 300 })
    const app = await sessionApp(t, store)
    const cookie = await login(app, 'carol')
    t.equal(await whoAmI(app, cookie), 'carol', 'logged in at first')
    await waitFor(async () => (await storeGet(store, sessionIdOf(cookie))) === null, {
      timeout: 1_500,
      message: 'the session never expired after the store ttl',
    })
    t.equal(await whoAmI(app, cookie), null, 'after ttl the cookie is anonymous')
  })

  t.test(
    'rolling: each request slides the expiry; without it the session ends on time (issue point 2)',
    async (t) => {
      const rollingStore = await make(t)
      const rolling = await sessionApp(t, rollingStore, { maxAge: 500, rolling: true })
      const fixedStore = await make(t)
      const fixed = await sessionApp(t, fixedStore, { maxAge: 500, rolling: false })
      const rollingCookie = await login(rolling, 'dave')
      const fixedCookie = await login(fixed, 'dave')
      for (let i = 0; i < 4; i++) {
        await sleep(200)
        t.equal(
          await whoAmI(rolling, rollingCookie),
          'dave',
          `rolling: still logged in after ${(i + 1) * 200} ms`,
        )
        await whoAmI(fixed, fixedCookie)
      }
      t.equal(
        await storeGet(fixedStore, sessionIdOf(fixedCookie)),
        null,
        'not rolling: gone after maxAge despite requests',
      )
    },
  )

  t.test('regenerate on login gives a new id and the old one is gone (issue point 3)', async (t) => {
    const store = await make(t)
    const app = await sessionApp(t, store, { maxAge: 60_000 })
    const visit = await app.inject({ method: 'POST', url: '/visit' })
    const anonymous = cookieOf(visit)
    t.ok(await storeGet(store, sessionIdOf(anonymous)), 'the anonymous session is stored')
    const response = await app.inject({
      method: 'POST',
      url: '/login',
      payload: { user: 'erin' },
      cookies: { sid: anonymous },
    })
    const loggedIn = cookieOf(response)
    t.not(sessionIdOf(loggedIn), sessionIdOf(anonymous), 'login issues a new session id')
    t.equal(
      await storeGet(store, sessionIdOf(anonymous)),
      null,
      'the pre-login session is gone from the store',
    )
    t.equal(await whoAmI(app, anonymous), null, 'the pre-login cookie does not carry the user')
    t.equal(await whoAmI(app, loggedIn), 'erin', 'the new cookie does')
  })

  t.test(
    'destroyAllForUser logs one user out everywhere and leaves others alone (issue point 4)',
    async (t) => {
      const store = await make(t)
      const app = await sessionApp(t, store, { maxAge: 60_000 })
      const devices = [await login(app, 'frank'), await login(app, 'frank'), await login(app, 'frank')]
      const other = await login(app, 'grace')
      const listed = await store.listForUser('frank')
      t.same(
        listed.map((r) => r.sessionId).sort(),
        devices.map(sessionIdOf).sort(),
        'listForUser lists the three sessions',
      )
      t.ok(
        listed.every((r) => r.session.userId === 'frank' && r.session.loggedInAt instanceof Date),
        'with their data',
      )
      t.ok(
        listed.every((r) => r.expiresAt.getTime() > Date.now() + 50_000),
        'and when they expire',
      )
      t.equal(await store.destroyAllForUser('frank'), 3, 'three sessions destroyed')
      for (const [i, cookie] of devices.entries())
        t.equal(await whoAmI(app, cookie), null, `device ${i + 1} is logged out`)
      t.same(await store.listForUser('frank'), [], 'nothing left to list')
      t.equal(await whoAmI(app, other), 'grace', "another user's session is untouched")
      t.equal(await store.destroyAllForUser('nobody'), 0, 'a user without sessions: nothing to destroy')
    },
  )

  t.test('numeric user ids index like their string form', async (t) => {
    const store = await make(t)
    await storeSet(store, 'numeric-1', { cookie: inAnHour(), userId: 42 })
    t.same(
      (await store.listForUser(42)).map((r) => r.sessionId),
      ['numeric-1'],
      'listed by number',
    )
    t.equal(await store.destroyAllForUser('42'), 1, 'destroyed by string')
  })

  t.test('a logout is not undone by a slow request saving afterwards (issue point 8)', async (t) => {
    const store = await make(t)
    const { app, inside, release } = await slowSessionApp(t, store)
    const cookie = await login(app, 'heidi')
    const slow = app.inject({ method: 'POST', url: '/slow', cookies: { sid: cookie } })
    await inside
    const logout = await app.inject({ method: 'POST', url: '/logout', cookies: { sid: cookie } })
    t.equal(logout.statusCode, 200, 'logged out while the slow request runs')
    release()
    t.equal((await slow).statusCode, 200, 'the slow request completes')
    t.equal(await storeGet(store, sessionIdOf(cookie)), null, 'its save did not bring the session back')
    t.equal(await whoAmI(app, cookie), null, 'the cookie stays logged out')
  })

  t.test('destroyAllForUser is not undone by a slow request either (issue point 8)', async (t) => {
    const store = await make(t)
    const app = await sessionApp(t, store, { maxAge: 60_000 })
    const cookie = await login(app, 'ivan')
    const loaded = await storeGet(store, sessionIdOf(cookie))
    t.equal(loaded?.userId, 'ivan', 'a request loads the session')
    t.equal(await store.destroyAllForUser('ivan'), 1, 'then the user is logged out everywhere')
    await storeSet(store, sessionIdOf(cookie), { ...loaded, visits: 1 })
    t.equal(await storeGet(store, sessionIdOf(cookie)), null, "the request's late save is refused")
    t.same(await store.listForUser('ivan'), [], 'and not listed')
  })

  t.test('a session that changes user leaves the old user index', async (t) => {
    const store = await make(t)
    await storeSet(store, 'switch-1', { cookie: inAnHour(), userId: 'judy' })
    await storeSet(store, 'switch-1', { cookie: inAnHour(), userId: 'ken' })
    t.same(await store.listForUser('judy'), [], 'not listed under the former user')
    t.equal(await store.destroyAllForUser('judy'), 0, "the former user's logout-everywhere does not touch it")
    t.equal((await storeGet(store, 'switch-1'))?.userId, 'ken', 'the session lives on for its user')
    await storeSet(store, 'switch-1', { cookie: inAnHour() })
    t.same(await store.listForUser('ken'), [], 'a session whose user field is removed leaves the index')
  })

  t.test('values round-trip: dates anywhere, nested data, no shared objects', async (t) => {
    const store = await make(t)
    const data = {
      cookie: inAnHour(),
      dates: [new Date(0), { at: new Date('2030-05-06T07:08:09.010Z') }],
      text: 'héllo ✓',
      looksLikeADate: '2030-05-06T07:08:09.010Z',
      marker: { $date: '2030-05-06T07:08:09.010Z' },
      nested: { list: [1, null, true], empty: {} },
      invalidDate: new Date(Number.NaN),
    }
    await storeSet(store, 'values-1', data)
    const back = (await storeGet(store, 'values-1')) as unknown as Record<string, unknown>
    const dates = back.dates as [Date, { at: Date }]
    t.ok(dates[0] instanceof Date && dates[0].getTime() === 0, 'a Date in an array')
    t.ok(
      dates[1].at instanceof Date && dates[1].at.toISOString() === '2030-05-06T07:08:09.010Z',
      'a nested Date',
    )
    t.equal(back.looksLikeADate, '2030-05-06T07:08:09.010Z', 'a string that looks like a date stays a string')
    t.same(
      back.marker,
      { $date: '2030-05-06T07:08:09.010Z' },
      'an object that looks like a date marker stays one',
    )
    t.same(back.nested, { list: [1, null, true], empty: {} }, 'nested data')
    t.equal(back.text, 'héllo ✓', 'unicode')
    t.equal(back.invalidDate, null, 'an invalid Date is stored as JSON stores it: null')
    ;(back.nested as { list: unknown[] }).list.push('changed')
    const again = (await storeGet(store, 'values-1')) as unknown as { nested: { list: unknown[] } }
    t.same(again.nested.list, [1, null, true], 'changing a loaded session does not change the stored one')
  })

  t.test('direct calls: unserializable data is an error, an expired cookie stores nothing', async (t) => {
    const store = await make(t)
    await t.rejects(
      storeSet(store, 'bad-1', { cookie: inAnHour(), big: 10n }),
      { code: 'LARDER_SESSION_UNSERIALIZABLE' },
      'a BigInt is refused with a clear error',
    )
    await storeSet(store, 'past-1', {
      cookie: { expires: new Date(Date.now() - 1000), originalMaxAge: null },
    })
    t.equal(await storeGet(store, 'past-1'), null, 'a session whose cookie already expired is not stored')
    t.equal(await storeGet(store, 'never-set'), null, 'an unknown id reads null')
    await storeSet(store, '}odd{id}', { cookie: inAnHour(), userId: 'odd' })
    await storeSet(store, '}odd{id}2', { cookie: inAnHour(), userId: 'odd' })
    t.equal(
      (await storeGet(store, '}odd{id}'))?.userId,
      'odd',
      'an id with braces (a custom idGenerator) works',
    )
    t.equal(await store.destroyAllForUser('odd'), 2, 'and such ids are kept apart')
    await storeDestroy(store, 'never-set')
    t.pass('destroying an unknown id is fine')
    await t.rejects(store.listForUser(''), { code: 'LARDER_INVALID_OPTION' }, 'an empty user id is refused')
    await t.rejects(
      store.destroyAllForUser({} as unknown as string),
      { code: 'LARDER_INVALID_OPTION' },
      'an object as user id is refused',
    )
  })
}
