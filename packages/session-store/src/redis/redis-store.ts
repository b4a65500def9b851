import type { Logger, RedisClient } from '@larder/core'
import { toCallback } from '../callback.js'
import { decodeSession, encodeSession } from '../codec.js'
import { lifetime, ownerOf } from '../expiry.js'
import { Guard } from '../guard.js'
import { sessionKeys, userIndexKey } from '../keys.js'
import { type ResolvedRedisOptions, resolveRedisOptions, userKey } from '../options.js'
import type { RedisSessionStoreOptions, SessionData, SessionRecord, UserSessionStore } from '../types.js'
import { defineScripts, type SessionCommands } from './scripts.js'

/** destroyAllForUser destroys this many sessions at a time. */
const BATCH = 100

/**
 * A @fastify/session store on ioredis (`Redis` or `Cluster`). Every script touches the keys of one
 * slot: a session's keys share its id as hash tag, a user's index has the user id as its own. See the
 * README ("Keys and Redis Cluster") for why the index is not in the sessions' slot.
 */
export class RedisSessionStore implements UserSessionStore {
  readonly #client: RedisClient & SessionCommands
  readonly #options: ResolvedRedisOptions
  readonly #guard: Guard
  readonly #log: Logger

  constructor(options: RedisSessionStoreOptions) {
    this.#options = resolveRedisOptions(options)
    this.#client = defineScripts(options.client)
    this.#guard = new Guard(options.client, this.#options.timeout)
    this.#log = this.#options.logger
  }

  set(sessionId: string, session: SessionData, callback: (error?: unknown) => void): void {
    toCallback(this.#set(sessionId, session), callback)
  }

  get(sessionId: string, callback: (error: unknown, session?: SessionData | null) => void): void {
    toCallback(this.#get(sessionId), callback)
  }

  destroy(sessionId: string, callback: (error?: unknown) => void): void {
    toCallback(this.#destroy(sessionId), callback)
  }

  async destroyAllForUser(userId: string | number): Promise<number> {
    const user = userKey(userId, 'RedisSessionStore destroyAllForUser')
    const index = userIndexKey(this.#options.prefix, user)
    const ids = (await this.#readIndex(index, 'destroyAllForUser')).map(([id]) => id)
    let destroyed = 0
    for (let i = 0; i < ids.length; i += BATCH) {
      const replies = await Promise.all(
        ids.slice(i, i + BATCH).map((id) => {
          const keys = sessionKeys(this.#options.prefix, id)
          return this.#guard.run('destroyAllForUser', () =>
            this.#client.larderSessionDestroy(
              keys.session,
              keys.owner,
              keys.tombstone,
              this.#options.tombstoneTtl,
              user,
            ),
          )
        }),
      )
      for (const [status] of replies) if (status === 1) destroyed++
    }
    // Only the ids handled: one a concurrent login adds meanwhile stays indexed.
    if (ids.length > 0) await this.#guard.run('destroyAllForUser', () => this.#client.zrem(index, ...ids))
    return destroyed
  }

  async listForUser(userId: string | number): Promise<SessionRecord[]> {
    const user = userKey(userId, 'RedisSessionStore listForUser')
    const index = userIndexKey(this.#options.prefix, user)
    const entries = await this.#readIndex(index, 'listForUser')
    const records: SessionRecord[] = []
    const stale: string[] = []
    const found = await Promise.all(
      entries.map(([id]) => {
        const keys = sessionKeys(this.#options.prefix, id)
        return this.#guard.run('listForUser', () => this.#client.mget(keys.session, keys.owner))
      }),
    )
    entries.forEach(([sessionId, expiresAt], i) => {
      const [payload, owner] = found[i] ?? []
      const session = owner === user && typeof payload === 'string' ? this.#decode(payload) : undefined
      if (session === undefined) stale.push(sessionId)
      else records.push({ sessionId, expiresAt: new Date(expiresAt), session })
    })
    if (stale.length > 0)
      await this.#bestEffort('listForUser prune', () => this.#client.zrem(index, ...stale))
    return records
  }

  async #set(sessionId: string, session: SessionData): Promise<void> {
    const payload = encodeSession(session)
    const px = lifetime(session, this.#options.ttl, Date.now())
    const user = ownerOf(session, this.#options.userField)
    const { prefix } = this.#options
    // The index first: once a session is stored under a user, destroyAllForUser can find it.
    if (user !== undefined && px > 0) {
      const index = userIndexKey(prefix, user)
      await this.#guard.run('set', () => this.#client.larderSessionIndexAdd(index, sessionId, px))
    }
    const keys = sessionKeys(prefix, sessionId)
    const [status, previous] = await this.#guard.run('set', () =>
      this.#client.larderSessionSet(keys.session, keys.owner, keys.tombstone, payload, px, user ?? ''),
    )
    if (status === 0) {
      this.#log.debug({ larder: 'session' }, 'larder: a save of a destroyed session was refused')
      if (user !== undefined) await this.#unindex(user, sessionId)
    } else if (previous !== null && previous !== user) {
      // The session changed hands (or was logged out in place): the old user's index lets go of it.
      await this.#unindex(previous, sessionId)
    }
  }

  async #get(sessionId: string): Promise<SessionData | null> {
    const keys = sessionKeys(this.#options.prefix, sessionId)
    let payload: string | null
    try {
      payload = await this.#guard.run('get', () => this.#client.get(keys.session))
    } catch (error) {
      if (!wrongType(error)) throw error
      payload = ''
    }
    if (payload === null) return null
    const session = this.#decode(payload)
    if (session !== undefined) return session
    await this.#bestEffort('delete corrupt session', () => this.#client.del(keys.session, keys.owner))
    return null
  }

  async #destroy(sessionId: string): Promise<void> {
    const keys = sessionKeys(this.#options.prefix, sessionId)
    const [, owner] = await this.#guard.run('destroy', () =>
      this.#client.larderSessionDestroy(
        keys.session,
        keys.owner,
        keys.tombstone,
        this.#options.tombstoneTtl,
        '',
      ),
    )
    if (owner !== null) await this.#unindex(owner, sessionId)
  }

  async #readIndex(index: string, operation: string): Promise<Array<[string, number]>> {
    const flat = await this.#guard.run(operation, () => this.#client.larderSessionIndexRead(index))
    const entries: Array<[string, number]> = []
    for (let i = 0; i + 1 < flat.length; i += 2) entries.push([flat[i] as string, Number(flat[i + 1])])
    return entries
  }

  /** Corrupt data is a session that is not there, reported, never a crash. */
  #decode(payload: string): SessionData | undefined {
    try {
      return decodeSession(payload)
    } catch (error) {
      this.#log.warn({ err: error, larder: 'session' }, 'larder: corrupt session in Redis, treated as absent')
      return undefined
    }
  }

  /** Index upkeep: a stale entry is harmless (reads check the owner), so a failure is only logged. */
  #unindex(user: string, sessionId: string): Promise<void> {
    const index = userIndexKey(this.#options.prefix, user)
    return this.#bestEffort('unindex', () => this.#client.zrem(index, sessionId))
  }

  async #bestEffort(operation: string, call: () => Promise<unknown>): Promise<void> {
    try {
      await this.#guard.run(operation, call)
    } catch (error) {
      this.#log.warn({ err: error, larder: 'session' }, `larder: session store ${operation} failed`)
    }
  }
}

function wrongType(error: unknown): boolean {
  const cause = (error as { cause?: unknown }).cause
  return cause instanceof Error && cause.message.startsWith('WRONGTYPE')
}
