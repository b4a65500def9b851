import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { type RedisClient, RedisGuard } from '@larder/core'
import type { Decision, LimitSpec, RateLimitStore } from './store.js'

export interface RedisStoreOptions {
  /** An ioredis `Redis` or `Cluster`. The store never closes it. */
  client: RedisClient
  /** Prepended to every key. Default `'larder:'`. */
  prefix?: string
  /** Longest a decision waits on Redis, in ms; then it rejects (the plugin fails open or closed). Default 100. */
  timeout?: number
}

type Reply = [allowed: number, remaining: number, resetMs: number, retryAfterMs: number]

interface Commands {
  larderRateWindow(key: string, limit: number, window: number, cost: number, check: number): Promise<Reply>
  larderRateLog(
    key: string,
    limit: number,
    window: number,
    cost: number,
    member: string,
    check: number,
  ): Promise<Reply>
}

const lua = (file: string): string => readFileSync(new URL(file, import.meta.url), 'utf8')

const toDecision = (reply: Reply): Decision => ({
  allowed: reply[0] === 1,
  remaining: reply[1],
  resetMs: reply[2],
  retryAfterMs: reply[3],
})

/** Braces would change the key's hash slot and long keys waste memory: such keys are hashed. */
function safeKey(key: string): string {
  if (key.length <= 200 && !key.includes('{') && !key.includes('}')) return key
  return createHash('sha256').update(key).digest('base64url')
}

/**
 * Counts in Redis, shared by every instance: one atomic Lua call per decision, on Redis's clock. Each
 * key is `prefix + 'rl:{' + key + '}' + kind`, so everything one limit touches hashes to one slot
 * (Redis Cluster). Scripts are defined with `defineCommand` (EVALSHA, EVAL on NOSCRIPT), so a restarted
 * Redis with an empty script cache costs one extra round trip, never an error.
 */
export class RedisStore implements RateLimitStore {
  readonly #client: RedisClient & Commands
  readonly #prefix: string
  readonly #guard: RedisGuard
  // Log members must be unique across processes and calls: a random process id and a counter.
  readonly #member = randomBytes(6).toString('hex')
  #sequence = 0

  constructor(options: RedisStoreOptions) {
    const client = options.client as RedisClient & Commands
    if (typeof client.larderRateWindow !== 'function') {
      client.defineCommand('larderRateWindow', { lua: lua('sliding-window.lua'), numberOfKeys: 1 })
      client.defineCommand('larderRateLog', { lua: lua('sliding-log.lua'), numberOfKeys: 1 })
    }
    this.#client = client
    this.#prefix = options.prefix ?? 'larder:'
    this.#guard = new RedisGuard(client, { timeout: options.timeout ?? 100, threshold: 3, cooldown: 1_000 })
  }

  /** The Redis key that holds `key`'s counts under `spec`. */
  keyFor(key: string, spec: LimitSpec): string {
    return `${this.#prefix}rl:{${safeKey(key)}}:${spec.algorithm === 'sliding-log' ? 'log' : 'win'}`
  }

  // Not async: one frame and one promise fewer per request on the hot path.
  consume(key: string, spec: LimitSpec, cost: number, check = false): Promise<Decision> {
    const redisKey = this.keyFor(key, spec)
    const dry = check ? 1 : 0
    return this.#guard
      .run('rateLimit', () =>
        spec.algorithm === 'sliding-log'
          ? this.#client.larderRateLog(
              redisKey,
              spec.limit,
              spec.window,
              cost,
              `${this.#member}:${++this.#sequence}`,
              dry,
            )
          : this.#client.larderRateWindow(redisKey, spec.limit, spec.window, cost, dry),
      )
      .then(toDecision)
  }

  /** The client was handed over: its owner closes it. */
  close(): Promise<void> {
    return Promise.resolve()
  }
}
