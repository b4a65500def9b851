import type { Redis } from 'ioredis'

/**
 * Keys under `pattern` (a SCAN glob) that hold a stored response, a hash with a value; a key holding
 * only a loader's lock on its way out (released just after the response) is not one.
 */
export async function storedEntries(redis: Redis, pattern: string): Promise<string[]> {
  const found: string[] = []
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = next
    for (const key of keys) if ((await redis.hexists(key, 'v')) === 1) found.push(key)
  } while (cursor !== '0')
  return found.sort()
}
