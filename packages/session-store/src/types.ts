import type { SessionStore } from '@fastify/session'
import type { Duration, Logger, RedisClient } from '@larder/core'
import type { Session } from 'fastify'

/** What the stores return for a session: the data @fastify/session saved, `Date` values included. */
export type SessionData = Session

/** One session of a user, as `listForUser` returns it. */
export interface SessionRecord {
  sessionId: string
  /** When the session expires if it is not saved again. */
  expiresAt: Date
  session: SessionData
}

/**
 * @fastify/session's store interface plus the per-user calls. `RedisSessionStore` and
 * `MemorySessionStore` implement it alike, and one conformance suite tests both.
 */
export interface UserSessionStore extends SessionStore {
  /** Destroys every session of `userId` (log out everywhere); resolves with how many existed. */
  destroyAllForUser(userId: string | number): Promise<number>
  /** The live sessions of `userId`, soonest to expire first. */
  listForUser(userId: string | number): Promise<SessionRecord[]>
}

/** Options both stores share. */
export interface SessionStoreOptions {
  /** Lifetime of a session whose cookie has neither `maxAge` nor `expires`. Default `'1d'`. */
  ttl?: Duration
  /** How long a destroyed session's id is refused by later saves (logout sticks). Default `'10m'`. */
  tombstoneTtl?: Duration
  /** The session field holding the user id that `destroyAllForUser`/`listForUser` look up. Default `'userId'`. */
  userField?: string
  /** Where corrupt sessions and best-effort failures are reported. Default: warnings and errors on `console`. */
  logger?: Logger
}

export interface RedisSessionStoreOptions extends SessionStoreOptions {
  /** An ioredis `Redis` or `Cluster` (e.g. `fastify.redis`); the store never closes it. */
  client: RedisClient
  /** Prepended to every key. Default `'sess:'`. */
  prefix?: string
  /** Longest a Redis call may take before the request fails with a 503. Default `'1s'`. */
  timeout?: Duration
}

export interface MemorySessionStoreOptions extends SessionStoreOptions {
  /** Most sessions kept; the least recently used go first. Default 10,000. */
  maxSessions?: number
  /** The clock, in milliseconds (tests inject one). Default `Date.now`. */
  now?: () => number
}
