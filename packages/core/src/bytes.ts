import { describe } from './duration.js'
import { LarderError } from './errors.js'

const UNIT: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }
const BYTES_RE = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i

/** Parses a byte size: a number, or `'512kb'`, `'64mb'`, `'1gb'` (powers of 1024). */
export function parseBytes(value: unknown, name: string): number {
  if (typeof value === 'number' && Number.isFinite(value) && value > 0) return Math.floor(value)
  if (typeof value === 'string') {
    const match = BYTES_RE.exec(value)
    if (match) {
      const bytes = Math.floor(Number(match[1]) * (UNIT[(match[2] ?? 'b').toLowerCase()] ?? 1))
      if (bytes > 0) return bytes
    }
  }
  throw new LarderError(
    'LARDER_INVALID_OPTION',
    `${name}: expected a byte size (a number > 0 or a string like '64mb'), got ${describe(value)}`,
  )
}
