import { LarderError } from '@larder/core'
import type { SessionData } from './types.js'

/**
 * A session as stored: `{"d":[paths of Date values],"s":{the session as JSON}}`. Dates are recorded by
 * path rather than tagged in place, so no value a user stores can be mistaken for a date.
 */
export function encodeSession(session: object): string {
  const paths = new Map<object, string[]>()
  const dates: string[][] = []
  let json: string | undefined
  try {
    // The replacer sees each value after its toJSON and, as `this`, the object holding it: the
    // path of a value is its holder's path plus its key; `this[key]` is still the Date itself.
    json = JSON.stringify(session, function (this: Record<string, unknown>, key: string, value: unknown) {
      const path = key === '' && this[key] === session ? [] : [...(paths.get(this) ?? []), key]
      if (this[key] instanceof Date) {
        if (typeof value === 'string') dates.push(path)
      } else if (typeof value === 'object' && value !== null) {
        paths.set(value, path)
      }
      return value
    })
  } catch (error) {
    throw new LarderError(
      'LARDER_SESSION_UNSERIALIZABLE',
      `session: expected JSON-able data, got a value JSON.stringify refuses (${(error as Error).message})`,
      { cause: error },
    )
  }
  if (json === undefined) {
    throw new LarderError('LARDER_SESSION_UNSERIALIZABLE', 'session: expected an object, got undefined')
  }
  return `{"d":${JSON.stringify(dates)},"s":${json}}`
}

/** Parses a stored session; throws on anything that is not one (the caller treats it as absent). */
export function decodeSession(text: string): SessionData {
  const parsed: unknown = JSON.parse(text)
  if (!isObject(parsed) || !isObject(parsed.s) || !Array.isArray(parsed.d)) {
    throw new Error('not a stored session')
  }
  for (const path of parsed.d) revive(parsed.s, path)
  return parsed.s as unknown as SessionData
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function revive(root: Record<string, unknown>, path: unknown): void {
  if (!Array.isArray(path) || path.length === 0) throw new Error('bad date path')
  let holder: unknown = root
  for (let i = 0; i < path.length - 1; i++) holder = step(holder, path[i])
  const last = path[path.length - 1]
  const text = step(holder, last)
  const date = new Date(text as string)
  if (typeof text !== 'string' || Number.isNaN(date.getTime())) throw new Error('bad date value')
  ;(holder as Record<string, unknown>)[last as string] = date
}

// Own properties only: a path through `__proto__` or `constructor` must not reach a prototype.
function step(holder: unknown, key: unknown): unknown {
  if (
    typeof key !== 'string' ||
    typeof holder !== 'object' ||
    holder === null ||
    !Object.hasOwn(holder, key)
  ) {
    throw new Error('bad date path')
  }
  return (holder as Record<string, unknown>)[key]
}
