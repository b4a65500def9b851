import { Cluster, Redis, type RedisOptions } from 'ioredis'
import type { RedisClient } from '../types.js'

export interface Connection {
  client: RedisClient
  /** Opened by Larder (a URL or options), so Larder closes it; a handed client is never closed. */
  owned: boolean
  isCluster: boolean
}

/** Turns the `redis` option into a client. Clients Larder opens never queue commands for long offline. */
export function connect(redis: RedisClient | string | RedisOptions, timeout: number): Connection {
  if (isClient(redis)) return { client: redis, owned: false, isCluster: redis.isCluster === true }
  const defaults: RedisOptions = {
    maxRetriesPerRequest: 1,
    commandTimeout: timeout * 4,
    retryStrategy: (attempt) => Math.min(attempt * 100, 2_000),
  }
  const client = typeof redis === 'string' ? new Redis(redis, defaults) : new Redis({ ...defaults, ...redis })
  // Errors surface through the commands that fail; without a listener ioredis would log them raw.
  client.on('error', () => {})
  return { client, owned: true, isCluster: false }
}

/** Duck-typed, so a client from another copy of ioredis (another version in node_modules) is still one. */
function isClient(redis: unknown): redis is RedisClient {
  if (redis instanceof Redis || redis instanceof Cluster) return true
  const candidate = redis as { defineCommand?: unknown; duplicate?: unknown; status?: unknown } | null
  return (
    typeof candidate === 'object' &&
    candidate !== null &&
    typeof candidate.defineCommand === 'function' &&
    typeof candidate.duplicate === 'function' &&
    typeof candidate.status === 'string'
  )
}

const STARTING = new Set(['wait', 'connecting', 'connect'])

/**
 * Whether a command sent now can be answered soon. Before the first connection commands may wait for
 * it; after a disconnect they would sit in ioredis's offline queue, so they are not sent at all.
 */
export function usable(client: RedisClient, everReady: boolean): boolean {
  const status = client.status
  return status === 'ready' || (!everReady && STARTING.has(status))
}
