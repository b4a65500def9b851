import { Redis } from 'ioredis'
import { cleanupPrefix } from './cleanup-prefix.js'
import { sharedRedisUrl } from './redis-url.js'
import { uniquePrefix } from './unique-prefix.js'

export interface SharedRedis {
  /** A client of the shared Redis, for the test's own checks; closed at teardown. */
  redis: Redis
  /** A fresh key prefix for one test; its keys are removed at teardown. */
  prefix(name: string): string
}

/**
 * The shared Redis for a test file: a client and prefixes that are cleaned up when `t` ends, so files
 * can run in parallel without touching each other's keys.
 */
export function sharedRedis(t: { teardown(fn: () => unknown): void }): SharedRedis {
  const redis = new Redis(sharedRedisUrl)
  const prefixes: string[] = []
  t.teardown(async () => {
    for (const prefix of prefixes) await cleanupPrefix(redis, prefix)
    await redis.quit()
  })
  return {
    redis,
    prefix(name) {
      const p = uniquePrefix(name)
      prefixes.push(p)
      return p
    },
  }
}
