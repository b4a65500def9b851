import type { Cluster, Redis } from 'ioredis'

/** Escapes the characters SCAN MATCH treats as glob syntax, so the prefix matches literally. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&')
}

// `isCluster` rather than instanceof: it also works when the client comes from another copy of ioredis.
function isCluster(client: Redis | Cluster): client is Cluster {
  return client.isCluster
}

/** SCANs one node and UNLINKs what matches, one key per command so keys in different slots never CROSSSLOT. */
async function unlinkOnNode(node: Redis, storedPrefix: string): Promise<void> {
  // ioredis prepends the client's keyPrefix to UNLINK's argument (not to SCAN's output), so strip it.
  const nodePrefixLength = node.options.keyPrefix?.length ?? 0
  const pattern = `${escapeGlob(storedPrefix)}*`
  let cursor = '0'
  do {
    const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = next
    if (keys.length === 0) continue
    const pipeline = node.pipeline()
    for (const key of keys) pipeline.unlink(key.slice(nodePrefixLength))
    // A pipeline reports per-command errors in its result instead of rejecting.
    for (const [error] of (await pipeline.exec()) ?? []) if (error) throw error
  } while (cursor !== '0')
}

/**
 * Deletes every key starting with `prefix` (as seen through `client`, i.e. after its keyPrefix).
 * Uses SCAN, never KEYS, so it does not block a shared Redis; on a Cluster it visits every master.
 */
export async function cleanupPrefix(client: Redis | Cluster, prefix: string): Promise<void> {
  const storedPrefix = (client.options.keyPrefix ?? '') + prefix
  if (!isCluster(client)) return unlinkOnNode(client, storedPrefix)
  // Any command makes a lazy or still-connecting Cluster load its slot map, without which nodes() is empty.
  await client.ping()
  await Promise.all(client.nodes('master').map((node) => unlinkOnNode(node, storedPrefix)))
}
