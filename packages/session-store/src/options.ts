import { LarderError, type Logger, parseDuration } from '@larder/core'
import type { MemorySessionStoreOptions, RedisSessionStoreOptions, SessionStoreOptions } from './types.js'

/** The shared options with every duration in milliseconds. */
export interface ResolvedOptions {
  ttl: number
  tombstoneTtl: number
  userField: string
  logger: Logger
}

const COMMON = ['ttl', 'tombstoneTtl', 'userField', 'logger']
const REDIS_NAMES = new Set([...COMMON, 'client', 'prefix', 'timeout'])
const MEMORY_NAMES = new Set([...COMMON, 'maxSessions', 'now'])

// Corrupt sessions must be seen even when no logger is given; debug lines are not worth the noise.
const consoleLogger: Logger = {
  debug: () => {},
  warn: (obj, msg) => console.warn(msg, obj),
  error: (obj, msg) => console.error(msg, obj),
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'object') return 'an object'
  return `${typeof value} ${String(value)}`
}

export function invalid(where: string, name: string, expected: string, value: unknown): LarderError {
  return new LarderError(
    'LARDER_INVALID_OPTION',
    `${where} ${name}: expected ${expected}, got ${describe(value)}`,
  )
}

function common(options: SessionStoreOptions, where: string, known: Set<string>): ResolvedOptions {
  if (typeof options !== 'object' || options === null) throw invalid(where, 'options', 'an object', options)
  for (const name of Object.keys(options)) {
    if (!known.has(name)) throw new LarderError('LARDER_UNKNOWN_OPTION', `${where}: unknown option '${name}'`)
  }
  const duration = (name: 'ttl' | 'tombstoneTtl', fallback: number, min: number): number => {
    const value = options[name]
    if (value === undefined) return fallback
    const ms = parseDuration(value, `${where} ${name}`)
    if (ms < min) throw invalid(where, name, `at least ${min} ms`, value)
    return ms
  }
  const { userField = 'userId', logger = consoleLogger } = options
  if (typeof userField !== 'string' || userField === '' || userField === 'cookie') {
    throw invalid(where, 'userField', "a session field name other than 'cookie'", userField)
  }
  if (
    typeof logger?.warn !== 'function' ||
    typeof logger.error !== 'function' ||
    typeof logger.debug !== 'function'
  ) {
    throw invalid(where, 'logger', 'a logger with debug, warn and error (e.g. fastify.log)', logger)
  }
  return {
    ttl: duration('ttl', 86_400_000, 1),
    tombstoneTtl: duration('tombstoneTtl', 600_000, 1),
    userField,
    logger,
  }
}

export interface ResolvedRedisOptions extends ResolvedOptions {
  prefix: string
  timeout: number
}

const WHERE_REDIS = 'RedisSessionStore'

export function resolveRedisOptions(options: RedisSessionStoreOptions): ResolvedRedisOptions {
  const resolved = common(options, WHERE_REDIS, REDIS_NAMES)
  const client = options.client as unknown as { defineCommand?: unknown; status?: unknown } | undefined
  if (typeof client?.defineCommand !== 'function' || typeof client.status !== 'string') {
    throw invalid(WHERE_REDIS, 'client', 'an ioredis Redis or Cluster', options.client)
  }
  const { prefix = 'sess:' } = options
  if (typeof prefix !== 'string') throw invalid(WHERE_REDIS, 'prefix', 'a string', prefix)
  const timeout =
    options.timeout === undefined ? 1_000 : parseDuration(options.timeout, `${WHERE_REDIS} timeout`)
  if (timeout < 1) throw invalid(WHERE_REDIS, 'timeout', 'at least 1 ms', options.timeout)
  return { ...resolved, prefix, timeout }
}

export interface ResolvedMemoryOptions extends ResolvedOptions {
  maxSessions: number
  now: () => number
}

const WHERE_MEMORY = 'MemorySessionStore'

export function resolveMemoryOptions(options: MemorySessionStoreOptions): ResolvedMemoryOptions {
  const resolved = common(options, WHERE_MEMORY, MEMORY_NAMES)
  const { maxSessions = 10_000, now = Date.now } = options
  if (!Number.isInteger(maxSessions) || maxSessions < 1) {
    throw invalid(WHERE_MEMORY, 'maxSessions', 'an integer > 0', maxSessions)
  }
  if (typeof now !== 'function') throw invalid(WHERE_MEMORY, 'now', 'a function returning milliseconds', now)
  return { ...resolved, maxSessions, now }
}

/** A user id as given to destroyAllForUser/listForUser, as the string the index uses. */
export function userKey(userId: unknown, where: string): string {
  if (
    (typeof userId === 'string' && userId !== '') ||
    (typeof userId === 'number' && Number.isFinite(userId))
  ) {
    return String(userId)
  }
  throw invalid(where, 'userId', 'a non-empty string or a finite number', userId)
}
