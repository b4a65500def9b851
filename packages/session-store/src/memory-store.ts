import type { Logger } from '@larder/core'
import { LRUCache } from 'lru-cache'
import { toCallback } from './callback.js'
import { decodeSession, encodeSession } from './codec.js'
import { lifetime, ownerOf } from './expiry.js'
import { type ResolvedMemoryOptions, resolveMemoryOptions, userKey } from './options.js'
import type { MemorySessionStoreOptions, SessionData, SessionRecord, UserSessionStore } from './types.js'

interface Stored {
  /** Serialized like in Redis: no object is shared with a request, and Dates come back as Dates. */
  payload: string
  owner: string | undefined
  expiresAt: number
}

/**
 * The embedded default: the Redis store's behaviour in one process, bounded by `maxSessions` (least
 * recently used first) and expiring by the same rules. Sessions are lost when the process exits.
 */
export class MemorySessionStore implements UserSessionStore {
  readonly #options: ResolvedMemoryOptions
  readonly #log: Logger
  readonly #sessions: LRUCache<string, Stored>
  readonly #tombstones: LRUCache<string, number>
  /** user → session id → expiry; emptied as sessions are destroyed, evicted or found expired. */
  readonly #users = new Map<string, Map<string, number>>()

  constructor(options: MemorySessionStoreOptions = {}) {
    this.#options = resolveMemoryOptions(options)
    this.#log = this.#options.logger
    this.#sessions = new LRUCache<string, Stored>({
      max: this.#options.maxSessions,
      dispose: (stored, sessionId, reason) => {
        if (reason === 'evict' && stored.owner !== undefined) this.#unindex(stored.owner, sessionId)
      },
    })
    this.#tombstones = new LRUCache<string, number>({ max: this.#options.maxSessions })
  }

  set(sessionId: string, session: SessionData, callback: (error?: unknown) => void): void {
    toCallback(
      Promise.resolve().then(() => this.#set(sessionId, session)),
      callback,
    )
  }

  get(sessionId: string, callback: (error: unknown, session?: SessionData | null) => void): void {
    toCallback(
      Promise.resolve().then(() => this.#get(sessionId)),
      callback,
    )
  }

  destroy(sessionId: string, callback: (error?: unknown) => void): void {
    toCallback(
      Promise.resolve().then(() => this.#destroy(sessionId)),
      callback,
    )
  }

  async destroyAllForUser(userId: string | number): Promise<number> {
    const user = userKey(userId, 'MemorySessionStore destroyAllForUser')
    let destroyed = 0
    for (const sessionId of [...(this.#users.get(user)?.keys() ?? [])]) {
      if (this.#live(sessionId) !== undefined) destroyed++
      this.#destroy(sessionId)
    }
    this.#users.delete(user)
    return destroyed
  }

  async listForUser(userId: string | number): Promise<SessionRecord[]> {
    const user = userKey(userId, 'MemorySessionStore listForUser')
    const records: SessionRecord[] = []
    for (const sessionId of [...(this.#users.get(user)?.keys() ?? [])]) {
      const stored = this.#live(sessionId)
      if (stored === undefined || stored.owner !== user) {
        this.#unindex(user, sessionId)
        continue
      }
      const session = decodeSession(stored.payload)
      records.push({ sessionId, expiresAt: new Date(stored.expiresAt), session })
    }
    return records.sort((a, b) => a.expiresAt.getTime() - b.expiresAt.getTime())
  }

  #set(sessionId: string, session: SessionData): void {
    const payload = encodeSession(session)
    const now = this.#options.now()
    if (this.#tombstoned(sessionId, now)) {
      this.#log.debug({ larder: 'session' }, 'larder: a save of a destroyed session was refused')
      return
    }
    const px = lifetime(session, this.#options.ttl, Date.now())
    const owner = ownerOf(session, this.#options.userField)
    const previous = this.#sessions.get(sessionId)?.owner
    if (previous !== undefined && previous !== owner) this.#unindex(previous, sessionId)
    if (px <= 0) {
      this.#sessions.delete(sessionId)
      return
    }
    const expiresAt = now + px
    this.#sessions.set(sessionId, { payload, owner, expiresAt })
    if (owner !== undefined) {
      const ids = this.#users.get(owner) ?? new Map<string, number>()
      this.#users.set(owner, ids)
      ids.set(sessionId, expiresAt)
      for (const [id, at] of ids) if (at <= now) ids.delete(id)
    }
  }

  #get(sessionId: string): SessionData | null {
    const stored = this.#live(sessionId)
    return stored === undefined ? null : decodeSession(stored.payload)
  }

  #destroy(sessionId: string): void {
    const stored = this.#sessions.get(sessionId)
    this.#sessions.delete(sessionId)
    if (stored?.owner !== undefined) this.#unindex(stored.owner, sessionId)
    this.#tombstones.set(sessionId, this.#options.now() + this.#options.tombstoneTtl)
  }

  /** The stored session unless it has expired; an expired one is dropped on sight. */
  #live(sessionId: string): Stored | undefined {
    const stored = this.#sessions.get(sessionId)
    if (stored === undefined || stored.expiresAt > this.#options.now()) return stored
    this.#sessions.delete(sessionId)
    if (stored.owner !== undefined) this.#unindex(stored.owner, sessionId)
    return undefined
  }

  #tombstoned(sessionId: string, now: number): boolean {
    const until = this.#tombstones.get(sessionId)
    if (until === undefined) return false
    if (until > now) return true
    this.#tombstones.delete(sessionId)
    return false
  }

  #unindex(user: string, sessionId: string): void {
    const ids = this.#users.get(user)
    if (ids === undefined) return
    ids.delete(sessionId)
    if (ids.size === 0) this.#users.delete(user)
  }
}
