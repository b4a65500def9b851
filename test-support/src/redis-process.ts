import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, openSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { trackChild } from './exit-cleanup.js'
import { waitFor } from './wait-for.js'

export const REDIS_HOST = '127.0.0.1'

/** Opens a one-shot connection that never retries, runs `fn`, and always disconnects. */
export async function withConnection<T>(port: number, fn: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis({
    host: REDIS_HOST,
    port,
    lazyConnect: true,
    connectTimeout: 1000,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
  })
  // Without a listener ioredis logs every refused connection as "Unhandled error event".
  client.on('error', () => {})
  try {
    await client.connect()
    return await fn(client)
  } finally {
    client.disconnect()
  }
}

/** True once `port` answers PING and the answering server is `pid`, not a stranger that took the port. */
async function answersAs(port: number, pid: number): Promise<boolean> {
  return withConnection(port, async (client) => {
    await client.ping()
    const info = await client.info('server')
    return new RegExp(`^process_id:${pid}\\r?$`, 'm').test(info)
  }).catch(() => false)
}

async function logTail(logFile: string): Promise<string> {
  const text = await readFile(logFile, 'utf8').catch(() => '')
  return text.trim().split('\n').slice(-15).join('\n')
}

/** Thrown when redis-server could not bind its port, so the caller may retry on another one. */
export class PortInUseError extends Error {}

/**
 * Spawns `redis-server` on `port` with its data and log in `dir`, and resolves once it answers PING.
 * No persistence and no daemonizing, so the ChildProcess is the server and killing it is enough.
 */
export async function launchRedis(port: number, dir: string, args: readonly string[]): Promise<ChildProcess> {
  const logFile = join(dir, 'redis.log')
  // Output goes to a file rather than a pipe: an unread pipe could fill and block the server,
  // and a pipe handle would keep the test process alive.
  const out = openSync(logFile, 'a')
  let child: ChildProcess
  try {
    child = spawn(
      'redis-server',
      [
        ...['--port', String(port), '--bind', REDIS_HOST, '--dir', dir],
        ...['--save', '', '--appendonly', 'no', '--daemonize', 'no'],
        ...args,
      ],
      { stdio: ['ignore', out, out] },
    )
  } finally {
    closeSync(out)
  }
  let spawnError: Error | undefined
  child.once('error', (error) => {
    spawnError = error
  })
  trackChild(child)
  // A server left running by a test that forgot close() must not keep the test process alive;
  // exit-cleanup kills it when the process exits.
  child.unref()

  const outcome = await waitFor(
    async () => {
      if (spawnError) return 'spawn-error'
      if (child.exitCode !== null || child.signalCode !== null) return 'exited'
      return child.pid !== undefined && (await answersAs(port, child.pid)) ? 'ready' : false
    },
    { timeout: 10_000, message: `redis-server on port ${port} did not answer PING within 10s` },
  ).catch(async (error: unknown) => {
    await stopRedis(child)
    throw error
  })
  if (outcome === 'ready') return child
  if (spawnError) throw new Error(`could not spawn redis-server (is it on PATH?): ${spawnError.message}`)
  const tail = await logTail(logFile)
  const message = `redis-server on port ${port} exited during startup:\n${tail}`
  throw /address already in use/i.test(tail) ? new PortInUseError(message) : new Error(message)
}

/** Launches on ports from `pickPort` until one is not lost to a concurrent process. */
export async function launchRedisOnFreePort(
  pickPort: () => Promise<number>,
  dir: string,
  args: readonly string[],
): Promise<{ port: number; child: ChildProcess }> {
  for (let attempt = 1; ; attempt++) {
    const port = await pickPort()
    try {
      return { port, child: await launchRedis(port, dir, args) }
    } catch (error) {
      if (!(error instanceof PortInUseError) || attempt >= 5) throw error
    }
  }
}

/** SIGTERM (no save points are configured, so nothing is written) and wait for exit; SIGKILL after 5s. */
export async function stopRedis(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
  // The child is unref'd; re-ref it so the process stays alive until we have seen it exit.
  child.ref()
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  try {
    await exited
  } finally {
    clearTimeout(timer)
  }
}
