import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { RedisClient } from '../types.js'

/** get.lua's reply to a read that found an entry (see the script); bulk strings come as Buffers. */
export type GetHit = [
  found: 1,
  payload: Buffer,
  kind: Buffer,
  freshMs: number,
  staleMs: number,
  errorMs: number,
  ageMs: number,
  loadMs: number,
  earlyRefresh: Buffer,
  tags: Buffer | null,
  lockMs: number,
]
export type GetReply = [found: 0, lockMs: number] | GetHit

/** The scripts other than the reads, as commands defined on the client (`defineCommand`). */
export interface ScriptCommands {
  larderSet(key: string, ...args: Array<string | number | Buffer>): Promise<number>
  larderAcquire(key: string, token: string, leaseMs: number): Promise<number>
  larderRelease(key: string, token: string): Promise<number>
  larderTagVersions(keyCount: number, ...keysThenTtl: Array<string | number>): Promise<string[]>
  larderInvalidateTags(keyCount: number, ...keysThenArgs: Array<string | number>): Promise<number>
}

const SCRIPTS: Array<[name: keyof ScriptCommands, file: string, keys?: number]> = [
  ['larderSet', 'set.lua', 1],
  ['larderAcquire', 'acquire.lua', 1],
  ['larderRelease', 'release.lua', 1],
  ['larderTagVersions', 'tag-versions.lua'],
  ['larderInvalidateTags', 'invalidate-tags.lua'],
]

const sources = new Map<string, string>()
function source(file: string): string {
  let lua = sources.get(file)
  if (lua === undefined) {
    lua = readFileSync(new URL(file, import.meta.url), 'utf8')
    sources.set(file, lua)
  }
  return lua
}

/**
 * Defines the scripts on the client. ioredis runs them by EVALSHA and falls back to EVAL on NOSCRIPT,
 * so a restarted Redis (empty script cache) costs one extra round trip, never an error.
 */
export function defineScripts(client: RedisClient): RedisClient & ScriptCommands {
  for (const [name, file, keys] of SCRIPTS) {
    if (typeof (client as unknown as Record<string, unknown>)[name] === 'function') continue
    client.defineCommand(
      name,
      keys === undefined ? { lua: source(file) } : { lua: source(file), numberOfKeys: keys },
    )
  }
  return client as RedisClient & ScriptCommands
}

/** An entry's fields as read.lua returns them: those of HMGET v m t lu, or none for a key that is not a hash. */
export type ReadReply = Array<Buffer | null>

/**
 * The read scripts, sent by EVALSHA directly rather than as commands defined on the client: ioredis's
 * script wrapper costs a closure, a WeakSet lookup and a promise on each call, and every cache hit
 * runs one. On NOSCRIPT (a restarted or flushed Redis) the script is sent again by EVAL, as ioredis
 * does, so it costs one extra round trip, never an error.
 */
export const runRead = readScript<ReadReply>('read.lua')
/** get.lua: the read on a Cluster, judged on the clock of the node that holds the entry. */
export const runGet = readScript<GetReply>('get.lua')

function readScript<Reply>(
  file: string,
): (client: RedisClient, key: string, ...args: string[]) => Promise<Reply> {
  let script: { lua: string; sha: string } | undefined
  return (client, key, ...args) => {
    if (script === undefined) {
      const lua = source(file)
      script = { lua, sha: createHash('sha1').update(lua).digest('hex') }
    }
    const { lua, sha } = script
    return (client.callBuffer('evalsha', sha, 1, key, ...args) as Promise<Reply>).catch((error: unknown) => {
      if (!(error instanceof Error) || !error.message.includes('NOSCRIPT')) throw error
      return client.callBuffer('eval', lua, 1, key, ...args) as Promise<Reply>
    })
  }
}
