import { readFileSync } from 'node:fs'
import type { RedisClient } from '../types.js'

/** The raw replies of the Lua scripts; `*Buffer` variants return bulk strings as Buffers. */
export type GetReply =
  | [0, number]
  | [1, Buffer, Buffer, number, number, number, number, number, Buffer, Buffer | null, number]

export interface ScriptCommands {
  larderGetBuffer(key: string, tagPrefix: string): Promise<GetReply>
  larderSet(key: string, ...args: Array<string | number | Buffer>): Promise<number>
  larderAcquire(key: string, token: string, leaseMs: number): Promise<number>
  larderRelease(key: string, token: string): Promise<number>
  larderTagVersions(keyCount: number, ...keysThenTtl: Array<string | number>): Promise<string[]>
  larderInvalidateTags(keyCount: number, ...keysThenArgs: Array<string | number>): Promise<number>
}

const SCRIPTS: Array<[name: keyof ScriptCommands, file: string, keys?: number]> = [
  ['larderGetBuffer', 'get.lua', 1],
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
    const command = name.endsWith('Buffer') ? name.slice(0, -'Buffer'.length) : name
    if (typeof (client as unknown as Record<string, unknown>)[name] === 'function') continue
    client.defineCommand(
      command,
      keys === undefined ? { lua: source(file) } : { lua: source(file), numberOfKeys: keys },
    )
  }
  return client as RedisClient & ScriptCommands
}
