// Imported: the global `Buffer` is a getter, called on every hit.
import { Buffer } from 'node:buffer'
import { createHash } from 'node:crypto'

/** A response as the cache keeps it: one Buffer (head as a JSON line, then the body bytes). */
export interface StoredResponse {
  status: number
  headers: Record<string, string | string[]>
  etag: string
  body: Buffer
}

const NEWLINE = 0x0a
/** L1 hands back the same Buffer on every hit: decode it once. */
const decoded = new WeakMap<Buffer, StoredResponse>()

export function strongEtag(body: Buffer): string {
  return `"${createHash('sha1').update(body).digest('base64url')}"`
}

export function encodeStored(response: StoredResponse): Buffer {
  const head = Buffer.from(
    `${JSON.stringify({ s: response.status, h: response.headers, e: response.etag })}\n`,
    'utf8',
  )
  const buffer = Buffer.concat([head, response.body])
  decoded.set(buffer, { ...response, body: buffer.subarray(head.length) })
  return buffer
}

/** Undefined when the bytes are not a stored response (garbage is a miss, never a crash). */
export function decodeStored(buffer: unknown): StoredResponse | undefined {
  if (!Buffer.isBuffer(buffer)) return undefined
  const known = decoded.get(buffer)
  if (known !== undefined) return known
  const end = buffer.indexOf(NEWLINE)
  if (end < 0) return undefined
  try {
    const head = JSON.parse(buffer.toString('utf8', 0, end)) as { s?: unknown; h?: unknown; e?: unknown }
    if (
      typeof head.s !== 'number' ||
      typeof head.e !== 'string' ||
      typeof head.h !== 'object' ||
      head.h === null
    ) {
      return undefined
    }
    const response: StoredResponse = {
      status: head.s,
      headers: head.h as Record<string, string | string[]>,
      etag: head.e,
      body: buffer.subarray(end + 1),
    }
    decoded.set(buffer, response)
    return response
  } catch {
    return undefined
  }
}
