import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { trackDir, untrackDir } from './exit-cleanup.js'
import { freePort } from './free-port.js'
import { launchRedis, launchRedisOnFreePort, REDIS_HOST, stopRedis } from './redis-process.js'

export interface RedisServerOptions {
  /** Extra redis-server arguments, e.g. ['--maxmemory', '1mb']; they override the defaults. */
  args?: string[]
}

export interface RedisServer {
  readonly port: number
  readonly host: '127.0.0.1'
  readonly url: string
  /** Stops the server (no save) and waits for it to exit. The port is kept for `start()`. */
  stop(): Promise<void>
  /** Starts the server again on the same port and waits until it answers PING. No-op if running. */
  start(): Promise<void>
  /** Stops for good and removes the data directory. Idempotent. */
  close(): Promise<void>
}

/** A private redis-server for tests that restart, break or reconfigure Redis. */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const args = options.args ?? []
  const dir = await mkdtemp(join(tmpdir(), 'larder-redis-'))
  trackDir(dir)
  const launched = await launchRedisOnFreePort(freePort, dir, args).catch(async (error: unknown) => {
    untrackDir(dir)
    await rm(dir, { recursive: true, force: true })
    throw error
  })
  const { port } = launched
  let child = launched.child

  let closing: Promise<void> | undefined
  const running = (): boolean => child.exitCode === null && child.signalCode === null

  return {
    port,
    host: REDIS_HOST,
    url: `redis://${REDIS_HOST}:${port}`,
    stop: () => stopRedis(child),
    async start() {
      if (closing) throw new Error('start() called on a closed RedisServer')
      if (running()) return
      // Same port on purpose: clients configured with the old URL must reconnect to it.
      child = await launchRedis(port, dir, args)
    },
    close() {
      closing ??= (async () => {
        await stopRedis(child)
        untrackDir(dir)
        await rm(dir, { recursive: true, force: true })
      })()
      return closing
    },
  }
}
