import type { FastifyReply } from 'fastify'

/** Statuses a cache may store by default (RFC 9110 §15.1), minus those Larder leaves alone. */
const CACHEABLE_STATUSES = new Set([200, 203, 204, 300, 301, 308, 404, 410])

export function cacheableStatus(status: number): boolean {
  return CACHEABLE_STATUSES.has(status)
}

/** Why a response the handler produced is not stored, or undefined when it may be. */
export function refusal(
  reply: FastifyReply,
  allowPrivate: boolean,
  vary: readonly string[],
): string | undefined {
  if (!cacheableStatus(reply.statusCode)) return `status-${reply.statusCode}`
  if (reply.hasHeader('set-cookie')) return 'set-cookie'
  if (!variesWithin(reply.getHeader('vary'), vary)) return 'vary'
  const control = String(reply.getHeader('cache-control') ?? '').toLowerCase()
  if (control !== '') {
    if (/(^|[\s,])no-store\b/.test(control)) return 'no-store'
    if (!allowPrivate && /(^|[\s,])private\b/.test(control)) return 'private'
  }
  return undefined
}

/**
 * A `Vary` the handler set names only headers the key separates (or `Accept-Encoding`, which the
 * compressor negotiates per request): otherwise one variant would be served for another.
 */
function variesWithin(header: unknown, vary: readonly string[]): boolean {
  return varyNames(header).every((name) => name === 'accept-encoding' || vary.includes(name))
}

/** The route's `vary` headers added to the `Vary` the response already has (the compressor's, say). */
export function withVary(header: unknown, vary: readonly string[]): string {
  const have = varyNames(header)
  const missing = vary.filter((name) => !have.includes(name))
  if (header === undefined) return missing.join(', ')
  const text = Array.isArray(header) ? header.join(', ') : String(header)
  return missing.length === 0 ? text : `${text}, ${missing.join(', ')}`
}

/** The header names a `Vary` value lists, in lower case. */
function varyNames(header: unknown): string[] {
  if (header === undefined) return []
  return (Array.isArray(header) ? header.join(',') : String(header))
    .toLowerCase()
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '')
}

/** Headers that describe one transfer, not the representation: never stored, never replayed. */
const NOT_STORED = new Set([
  'age',
  'cache-status',
  'connection',
  'content-length',
  'date',
  'etag',
  'keep-alive',
  'set-cookie',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'x-cache',
])

/** The response's headers worth storing; `perRequest`: names set per request by earlier hooks. */
export function storableHeaders(
  reply: FastifyReply,
  perRequest: readonly string[] = [],
): Record<string, string | string[]> {
  const stored: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(reply.getHeaders())) {
    if (value === undefined || NOT_STORED.has(name) || perRequest.includes(name)) continue
    stored[name] = typeof value === 'number' ? String(value) : value
  }
  return stored
}

/** `If-None-Match` matches when it lists the entry's ETag (weak comparison) or is `*`. */
export function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false
  if (header.trim() === '*') return true
  const bare = etag.startsWith('W/') ? etag.slice(2) : etag
  for (const candidate of header.split(',')) {
    const tag = candidate.trim()
    if (tag === bare || tag === `W/${bare}`) return true
  }
  return false
}
