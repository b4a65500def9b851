import { createServer } from 'node:net'

const HOST = '127.0.0.1'

/** Resolves with the port if it can be bound on 127.0.0.1 right now, or null if it cannot. */
function tryListen(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(null))
    server.listen({ port, host: HOST }, () => {
      const address = server.address()
      const bound = typeof address === 'object' && address !== null ? address.port : null
      server.close(() => resolve(bound))
    })
  })
}

/**
 * A port that was free a moment ago. Another process may still take it before we bind it,
 * so callers must detect a failed bind and retry (see `launchRedis`).
 */
export async function freePort(): Promise<number> {
  const port = await tryListen(0)
  if (port === null) throw new Error('could not bind an ephemeral port on 127.0.0.1')
  return port
}

/**
 * A free port whose cluster bus port (port + 10000) is free too, avoiding `exclude`
 * (ports, and their bus ports, already picked for sibling nodes).
 */
export async function freeClusterPort(exclude: ReadonlySet<number> = new Set()): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = await freePort()
    // The bus port must stay below 65536; 55000 leaves headroom.
    if (port >= 55000 || exclude.has(port) || exclude.has(port + 10000)) continue
    if ((await tryListen(port + 10000)) !== null) return port
  }
  throw new Error('could not find a free port pair (port, port + 10000) for a cluster node')
}
