import { randomBytes } from 'node:crypto'

/**
 * A key prefix no other test file can produce: tap runs files in parallel processes against the
 * same Redis, so the pid separates processes and the random part separates runs within one.
 */
export function uniquePrefix(name: string): string {
  return `t:${name}:${process.pid}:${randomBytes(3).toString('hex')}:`
}
