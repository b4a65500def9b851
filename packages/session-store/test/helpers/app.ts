import fastifyCookie from '@fastify/cookie'
import type { SessionStore } from '@fastify/session'
import fastifySession from '@fastify/session'
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import type { Test } from 'tap'

declare module 'fastify' {
  interface Session {
    userId?: string
    loggedInAt?: Date
    visits?: number
  }
}

export const SECRET = 'a-test-secret-that-is-long-enough-0123456789'

export interface AppOptions {
  maxAge?: number
  rolling?: boolean
  /** Runs in POST /slow between loading the session and saving it (a request that outlives a logout). */
  slow?: () => Promise<void>
}

/**
 * The app a user of the store would write: @fastify/cookie + @fastify/session with the store, a login
 * that regenerates the session (no fixation), a route that reads it, a logout that destroys it.
 */
export async function sessionApp(
  t: Test,
  store: SessionStore,
  options: AppOptions = {},
): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(fastifyCookie)
  await app.register(fastifySession, {
    secret: SECRET,
    store,
    cookieName: 'sid',
    saveUninitialized: false,
    rolling: options.rolling ?? true,
    cookie: {
      secure: false,
      httpOnly: true,
      sameSite: 'lax',
      ...(options.maxAge ? { maxAge: options.maxAge } : {}),
    },
  })
  app.post<{ Body: { user: string } }>('/login', async (request) => {
    await request.session.regenerate()
    request.session.set('userId', request.body.user)
    request.session.set('loggedInAt', new Date('2026-01-02T03:04:05.678Z'))
    return { user: request.body.user }
  })
  app.get('/me', async (request) => {
    const loggedInAt = request.session.get('loggedInAt')
    return {
      user: request.session.get('userId') ?? null,
      loggedInAtIsDate: loggedInAt instanceof Date,
      loggedInAt: loggedInAt ?? null,
    }
  })
  app.post('/visit', async (request) => {
    const visits = (request.session.get('visits') ?? 0) + 1
    request.session.set('visits', visits)
    return { visits }
  })
  app.post('/logout', async (request) => {
    await request.session.destroy()
    return { ok: true }
  })
  app.post('/slow', async (request) => {
    await options.slow?.()
    request.session.set('visits', (request.session.get('visits') ?? 0) + 1)
    return { saved: true }
  })
  t.teardown(() => app.close())
  await app.ready()
  return app
}

/** The signed `sid` cookie value a response set, to send back. */
export function cookieOf(response: LightMyRequestResponse): string {
  const cookie = response.cookies.find((c) => c.name === 'sid')
  if (cookie === undefined) throw new Error(`no sid cookie in response (status ${response.statusCode})`)
  return cookie.value
}

/** The session id inside a signed cookie value (`id.signature`). */
export function sessionIdOf(cookie: string): string {
  return cookie.slice(0, cookie.lastIndexOf('.'))
}

export async function login(app: FastifyInstance, user: string): Promise<string> {
  const response = await app.inject({ method: 'POST', url: '/login', payload: { user } })
  if (response.statusCode !== 200) throw new Error(`login failed: ${response.statusCode} ${response.body}`)
  return cookieOf(response)
}

export async function whoAmI(app: FastifyInstance, cookie: string): Promise<string | null> {
  const response = await app.inject({ method: 'GET', url: '/me', cookies: { sid: cookie } })
  if (response.statusCode !== 200) throw new Error(`/me failed: ${response.statusCode} ${response.body}`)
  return (response.json() as { user: string | null }).user
}

/**
 * The session app with a POST /slow that holds its request, after the session was loaded, until
 * `release()`; `inside` resolves once a request is held there.
 */
export async function slowSessionApp(
  t: Test,
  store: SessionStore,
): Promise<{ app: FastifyInstance; inside: Promise<void>; release: () => void }> {
  let release = () => {}
  let started = () => {}
  const inside = new Promise<void>((resolve) => (started = resolve))
  const app = await sessionApp(t, store, {
    maxAge: 60_000,
    slow: () => {
      started()
      return new Promise<void>((resolve) => (release = resolve))
    },
  })
  return { app, inside, release: () => release() }
}
