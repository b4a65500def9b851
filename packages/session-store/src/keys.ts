import { createHash } from 'node:crypto'

/**
 * The keys of one session, all with the same hash tag so the scripts that touch them together run on
 * one Cluster slot: the session itself, its owner (the user id, for the per-user index) and its
 * tombstone (present for a while after it is destroyed). The tag is the session id; an id that holds
 * braces would break the tag, so it is tagged by its hash and kept whole after it.
 */
export interface SessionKeys {
  session: string
  owner: string
  tombstone: string
}

export function sessionKeys(prefix: string, sessionId: string): SessionKeys {
  const base = /[{}]/.test(sessionId)
    ? `${prefix}{${createHash('sha256').update(sessionId).digest('hex')}}${sessionId}`
    : `${prefix}{${sessionId}}`
  return { session: base, owner: `${base}:u`, tombstone: `${base}:x` }
}

/** The per-user index: a sorted set of session ids scored by expiry, in the user's own slot. */
export function userIndexKey(prefix: string, userId: string): string {
  return `${prefix}user:{${userId}}`
}
