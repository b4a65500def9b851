import type { SessionData } from './types.js'

/**
 * Milliseconds the session should live from `now`: until its cookie's `expires`, else for its
 * `maxAge`, else `fallback` (the store's `ttl`, for browser-session cookies). Zero or less: already
 * expired. @fastify/session sets `expires` from `maxAge` on every save, so with `rolling` (its default)
 * each request slides the expiry.
 */
export function lifetime(session: SessionData, fallback: number, now: number): number {
  const cookie = (session as { cookie?: { expires?: unknown; originalMaxAge?: unknown } }).cookie
  const expires = cookie?.expires
  if (expires instanceof Date || typeof expires === 'string' || typeof expires === 'number') {
    const at = new Date(expires).getTime()
    if (Number.isFinite(at)) return Math.ceil(at - now)
  }
  const maxAge = cookie?.originalMaxAge
  if (typeof maxAge === 'number' && Number.isFinite(maxAge)) return Math.ceil(maxAge)
  return fallback
}

/** The user id a session belongs to, as the string the per-user index uses; undefined for anonymous ones. */
export function ownerOf(session: SessionData, field: string): string | undefined {
  const value = (session as unknown as Record<string, unknown>)[field]
  if (typeof value === 'string' && value !== '') return value
  if (typeof value === 'number' && Number.isFinite(value)) return String(value)
  return undefined
}
