import type { Socket } from 'node:net'
import { Cluster, Redis, type RedisOptions } from 'ioredis'
import type { RedisClient } from '../types.js'

export interface Connection {
  client: RedisClient
  /** Opened by Larder (a URL or options), so Larder closes it; a handed client is never closed. */
  owned: boolean
  isCluster: boolean
}

/** Turns the `redis` option into a client. Every command goes through a RedisGuard, which bounds its wait. */
export function connect(redis: RedisClient | string | RedisOptions): Connection {
  if (isClient(redis)) return { client: redis, owned: false, isCluster: redis.isCluster === true }
  const defaults: RedisOptions = {
    maxRetriesPerRequest: 1,
    retryStrategy: (attempt) => Math.min(attempt * 100, 2_000),
  }
  const client = typeof redis === 'string' ? new Redis(redis, defaults) : new Redis({ ...defaults, ...redis })
  // Errors surface through the commands that fail; without a listener ioredis would log them raw.
  client.on('error', () => {})
  return { client, owned: true, isCluster: false }
}

/** ioredis's `keyPrefix` option: added to a command's declared keys, not to key names a script builds. */
export function keyPrefixOf(client: RedisClient): string {
  const options = client.options as { keyPrefix?: unknown }
  return typeof options.keyPrefix === 'string' ? options.keyPrefix : ''
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

/** Commands per write: large enough to save most system calls, small enough for Redis to start early. */
const BATCH = 16

const STARTING = new Set(['wait', 'connecting', 'connect'])

/**
 * Whether a command sent now can be answered soon. Before the first connection commands may wait for
 * it; after a disconnect they would sit in ioredis's offline queue, so they are not sent at all.
 */
export function usable(client: RedisClient, everReady: boolean): boolean {
  const status = client.status
  return status === 'ready' || (!everReady && STARTING.has(status))
}

/**
 * Holds the socket's writes until the event loop's check phase (`setImmediate`), so the commands sent
 * while one batch of I/O callbacks runs leave in one `writev` instead of one system call each: the
 * replies to many calls in flight come in one read and the calls that follow them go out together, and
 * so do the commands of HTTP requests that arrived together. Redis then reads them in one go too. The
 * wait is only for callbacks already due, never a timer. Every BATCH commands the held ones leave at
 * once (counted per guarded call, one command each but for a pipeline), so Redis works on them while
 * the rest are still being made instead of client and server taking turns. A Cluster spreads its
 * commands over one socket per node and is left as it is.
 */
export function writeBatcher(client: RedisClient): () => void {
  if (client.isCluster === true) return () => {}
  // One per client: Node counts nested corks, so two batchers on one socket would hold each other's writes.
  let batcher = batchers.get(client)
  if (batcher === undefined) {
    batcher = newBatcher(client as Redis)
    batchers.set(client, batcher)
  }
  return batcher
}

const batchers = new WeakMap<RedisClient, () => void>()

function newBatcher(client: Redis): () => void {
  let corked: Socket | undefined
  let held = 0
  const flush = (): void => {
    const stream = corked
    corked = undefined
    stream?.uncork()
  }
  return () => {
    if (corked !== undefined) {
      if (++held < BATCH) return
      held = 0
      corked.uncork()
      corked.cork()
      return
    }
    const stream = client.stream as Socket | undefined
    if (stream === undefined || typeof stream.cork !== 'function') return
    held = 1
    stream.cork()
    corked = stream
    setImmediate(flush)
  }
}
