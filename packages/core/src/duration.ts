import { LarderError } from './errors.js'

/** A duration: milliseconds as a number, or a string such as `'250ms'`, `'90s'`, `'10m'`, `'1h'`, `'7d'`. */
export type Duration = number | `${number}${DurationUnit}` | `${number}`

type DurationUnit = 'ms' | 's' | 'm' | 'h' | 'd' | 'w'

const UNIT_MS: Record<DurationUnit, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
}

const DURATION_RE = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$/

/**
 * Parses a duration to whole milliseconds. `name` is the option being read, so a bad value fails at
 * configuration time with a message that says where it came from.
 */
export function parseDuration(value: unknown, name = 'duration'): number {
  if (typeof value === 'number') {
    if (Number.isFinite(value) && value >= 0) return Math.round(value)
  } else if (typeof value === 'string') {
    const match = DURATION_RE.exec(value)
    if (match) {
      const unit = (match[2] ?? 'ms') as DurationUnit
      return Math.round(Number(match[1]) * UNIT_MS[unit])
    }
  }
  throw new LarderError(
    'LARDER_INVALID_DURATION',
    `${name}: expected milliseconds (a number >= 0) or a string like '90s', '10m', '1h', '7d', got ${describe(value)}`,
  )
}

/** Like parseDuration, but `undefined` gives `fallback`. */
export function optionalDuration(value: unknown, name: string, fallback: number): number {
  return value === undefined ? fallback : parseDuration(value, name)
}

export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'object') return 'an object'
  return `${typeof value} ${String(value)}`
}
