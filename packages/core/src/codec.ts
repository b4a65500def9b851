import { LarderError } from './errors.js'

/** How a value is stored: JSON text, raw bytes, or `undefined` (which JSON cannot express). */
export type ValueKind = 'j' | 'b' | 'u'

export interface Encoded {
  kind: ValueKind
  /** JSON text stays a string (ioredis writes it without a copy); a Buffer is stored byte for byte. */
  payload: string | Buffer
  bytes: number
}

const EMPTY = ''

export function encode(value: unknown): Encoded {
  if (value === undefined) return { kind: 'u', payload: EMPTY, bytes: 1 }
  if (Buffer.isBuffer(value)) return { kind: 'b', payload: value, bytes: value.length || 1 }
  let text: string | undefined
  try {
    text = JSON.stringify(value)
  } catch (error) {
    throw new LarderError(
      'LARDER_UNSERIALIZABLE',
      `value: expected JSON-able data or a Buffer, got ${String(error)}`,
    )
  }
  if (text === undefined) {
    throw new LarderError(
      'LARDER_UNSERIALIZABLE',
      `value: expected JSON-able data or a Buffer, got ${typeof value}`,
    )
  }
  return { kind: 'j', payload: text, bytes: Buffer.byteLength(text) }
}

/** The kinds as bytes: 'j', 'b', 'u'. */
const JSON_KIND = 0x6a
const BYTES_KIND = 0x62
const UNDEFINED_KIND = 0x75

/** `kind` as Redis returned it (one byte). Throws on garbage; callers treat that as a miss. */
export function decode(kind: Buffer, payload: Buffer): unknown {
  const byte = kind.length === 1 ? kind[0] : undefined
  if (byte === JSON_KIND) return JSON.parse(payload.toString('utf8'))
  if (byte === BYTES_KIND) return payload
  if (byte === UNDEFINED_KIND) return undefined
  throw new LarderError(
    'LARDER_CORRUPT_ENTRY',
    `entry kind: expected j, b or u, got ${JSON.stringify(kind.toString('latin1'))}`,
  )
}
