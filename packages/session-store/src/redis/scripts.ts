import { readFileSync } from 'node:fs'
import type { RedisClient } from '@larder/core'

/** set.lua's reply: status (1 written, 0 refused, 2 removed) and the previous owner. */
export type SetReply = [status: 0 | 1 | 2, previousOwner: string | null]
/** destroy.lua's reply: status (1 destroyed, 0 nothing stored, -1 another user's) and the owner. */
export type DestroyReply = [status: -1 | 0 | 1, owner: string | null]

/** The store's scripts, as commands defined on the client. */
export interface SessionCommands {
  larderSessionSet(
    session: string,
    owner: string,
    tombstone: string,
    payload: string,
    px: number,
    user: string,
  ): Promise<SetReply>
  larderSessionDestroy(
    session: string,
    owner: string,
    tombstone: string,
    tombstoneMs: number,
    expectedOwner: string,
  ): Promise<DestroyReply>
  larderSessionIndexAdd(index: string, sessionId: string, px: number): Promise<number>
  larderSessionIndexRead(index: string): Promise<string[]>
}

const SCRIPTS: Array<[name: keyof SessionCommands, file: string, keys: number]> = [
  ['larderSessionSet', 'set.lua', 3],
  ['larderSessionDestroy', 'destroy.lua', 3],
  ['larderSessionIndexAdd', 'index-add.lua', 1],
  ['larderSessionIndexRead', 'index-read.lua', 1],
]

/**
 * Defines the scripts on the client. ioredis runs them by EVALSHA and falls back to EVAL on NOSCRIPT,
 * so a restarted Redis (empty script cache) costs one extra round trip, never an error.
 */
export function defineScripts(client: RedisClient): RedisClient & SessionCommands {
  for (const [name, file, numberOfKeys] of SCRIPTS) {
    if (typeof (client as unknown as Record<string, unknown>)[name] === 'function') continue
    client.defineCommand(name, { lua: readFileSync(new URL(file, import.meta.url), 'utf8'), numberOfKeys })
  }
  return client as RedisClient & SessionCommands
}
