import type { ChildProcess } from 'node:child_process'
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { trackDir, untrackDir } from './exit-cleanup.js'
import { freeClusterPort } from './free-port.js'
import { launchRedisOnFreePort, REDIS_HOST, stopRedis, withConnection } from './redis-process.js'
import { waitFor } from './wait-for.js'

const execFileAsync = promisify(execFile)

export interface RedisClusterOptions {
  /** Number of masters (no replicas). Default 3, the minimum redis-cli accepts. */
  masters?: number
}

export interface RedisCluster {
  /** Seed nodes, e.g. for `new Cluster(cluster.nodes)`. */
  readonly nodes: Array<{ host: string; port: number }>
  /** Stops every node and removes their data directories. Idempotent. */
  close(): Promise<void>
}

/** True when this node sees a healthy cluster of `size` masters covering all slots. */
async function nodeReady(port: number, size: number): Promise<boolean> {
  const info = await withConnection(port, (client) => client.cluster('INFO'))
  const field = (name: string): string | undefined => new RegExp(`^${name}:(\\S+)`, 'm').exec(info)?.[1]
  return (
    field('cluster_state') === 'ok' &&
    field('cluster_slots_assigned') === '16384' &&
    field('cluster_slots_ok') === '16384' &&
    field('cluster_known_nodes') === String(size)
  )
}

/** A private Redis Cluster of `masters` nodes on 127.0.0.1, for cluster-mode tests. */
export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisCluster> {
  const masters = options.masters ?? 3
  if (!Number.isInteger(masters) || masters < 3) {
    throw new RangeError(`startRedisCluster: masters must be an integer >= 3, got ${masters}`)
  }
  const root = await mkdtemp(join(tmpdir(), 'larder-cluster-'))
  trackDir(root)
  const children: ChildProcess[] = []
  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await Promise.all(children.map((child) => stopRedis(child)))
      untrackDir(root)
      await rm(root, { recursive: true, force: true })
    })()
    return closing
  }

  try {
    const taken = new Set<number>()
    const ports: number[] = []
    // Sequential, so each pick can avoid the ports (and bus ports) of the nodes before it.
    for (let i = 0; i < masters; i++) {
      const dir = join(root, `node-${i}`)
      await mkdir(dir)
      const args = [
        ...['--cluster-enabled', 'yes', '--cluster-config-file', join(dir, 'nodes.conf')],
        ...['--cluster-node-timeout', '2000'],
      ]
      const { port, child } = await launchRedisOnFreePort(() => freeClusterPort(taken), dir, args)
      children.push(child)
      ports.push(port)
      taken.add(port).add(port + 10000)
    }

    const addresses = ports.map((port) => `${REDIS_HOST}:${port}`)
    const createArgs = ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes']
    await execFileAsync('redis-cli', createArgs, { timeout: 30_000 }).catch((error: unknown) => {
      const output = error instanceof Error && 'stdout' in error ? `\n${String(error.stdout)}` : ''
      throw new Error(`redis-cli --cluster create failed${output}`, { cause: error })
    })

    // redis-cli returns once the nodes agree on the config; gossip may still be spreading state.
    await waitFor(
      async () => (await Promise.all(ports.map((port) => nodeReady(port, masters)))).every(Boolean),
      { timeout: 20_000, interval: 100, message: 'Redis Cluster did not reach cluster_state:ok within 20s' },
    )
    return { nodes: ports.map((port) => ({ host: REDIS_HOST, port })), close }
  } catch (error) {
    await close()
    throw error
  }
}
