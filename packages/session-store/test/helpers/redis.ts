import type { Logger } from '@larder/core'
import { RedisSessionStore } from '@larder/session-store'
import { cleanupPrefix, sharedRedisUrl, uniquePrefix } from '@larder/test-support'
import { Redis } from 'ioredis'
import type { Test } from 'tap'

export interface Logged {
  level: 'debug' | 'warn' | 'error'
  msg: string | undefined
}

/** A logger that records what the store reports. */
export function recordingLogger(): { logger: Logger; lines: Logged[] } {
  const lines: Logged[] = []
  const at = (level: Logged['level']) => (_obj: object, msg?: string) => void lines.push({ level, msg })
  return { logger: { debug: at('debug'), warn: at('warn'), error: at('error') }, lines }
}

/** A store on the shared Redis under a prefix of its own, removed after the test. */
export function sharedStore(
  t: Test,
  name: string,
  options: Omit<ConstructorParameters<typeof RedisSessionStore>[0], 'client' | 'prefix'> = {},
): { store: RedisSessionStore; redis: Redis; prefix: string } {
  const redis = new Redis(sharedRedisUrl)
  const prefix = uniquePrefix(name)
  t.teardown(async () => {
    await cleanupPrefix(redis, prefix)
    redis.disconnect()
  })
  return { store: new RedisSessionStore({ client: redis, prefix, ...options }), redis, prefix }
}

/** Where the store keeps a session (see src/keys.ts). */
export function keyOf(prefix: string, sessionId: string): string {
  return `${prefix}{${sessionId}}`
}
