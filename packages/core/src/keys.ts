import { createHash } from 'node:crypto'
import { describe } from './duration.js'
import { LarderError } from './errors.js'

/** Reserved inside the prefix for tag versions; a user key may not start with it. */
export const TAG_SPACE = '{t}'

/**
 * Turns a user key into the key used by both tiers. Over-long keys keep a readable head and end in a
 * hash of the whole key, so Redis never stores megabyte key names.
 */
export function cacheKey(key: unknown, maxLength: number): string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new LarderError('LARDER_INVALID_KEY', `key: expected a non-empty string, got ${describe(key)}`)
  }
  if (key.startsWith(TAG_SPACE)) {
    throw new LarderError(
      'LARDER_INVALID_KEY',
      `key: must not start with the reserved '${TAG_SPACE}', got ${describe(key)}`,
    )
  }
  if (key.length <= maxLength) return key
  return `${key.slice(0, 64)}#${createHash('sha256').update(key).digest('hex')}`
}

/** Escapes Redis glob characters so a prefix matches only itself in SCAN MATCH. */
export function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&')
}

/** A RegExp with Redis's glob semantics (`*`, `?`, `[abc]`, `[^a]`, `\x`) for matching L1 keys. */
export function globToRegExp(glob: string): RegExp {
  let source = '^'
  for (let i = 0; i < glob.length; i++) {
    const char = glob[i] as string
    if (char === '*') source += '[\\s\\S]*'
    else if (char === '?') source += '[\\s\\S]'
    else if (char === '\\' && i + 1 < glob.length) source += escapeRegExp(glob[++i] as string)
    else if (char === '[') {
      const end = glob.indexOf(']', i + 2)
      if (end === -1) source += '\\['
      else {
        let body = glob.slice(i + 1, end)
        if (body.startsWith('^')) body = `^${body.slice(1).replace(/[\\\]]/g, '\\$&')}`
        else body = body.replace(/[\\\]^]/g, '\\$&')
        source += `[${body}]`
        i = end
      }
    } else source += escapeRegExp(char)
  }
  return new RegExp(`${source}$`)
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
}

/** A pattern must be a non-empty string of bounded length; `*` alone is allowed (it clears the prefix). */
export function validatePattern(pattern: unknown): string {
  if (typeof pattern !== 'string' || pattern.length === 0 || pattern.length > 1024) {
    throw new LarderError(
      'LARDER_INVALID_PATTERN',
      `pattern: expected a glob of 1-1024 characters, got ${describe(pattern)}`,
    )
  }
  return pattern
}
