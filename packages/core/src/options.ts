import { parseBytes } from './bytes.js'
import { describe, optionalDuration } from './duration.js'
import { LarderError } from './errors.js'
import type { CacheOptions, EntryOptions, Logger } from './types.js'

/** Entry options with every duration in milliseconds. */
export interface ResolvedEntryOptions {
  ttl: number
  tags: readonly string[]
  staleWhileRevalidate: number
  staleIfError: number
  negativeTtl: number
  /** XFetch beta; 0 is off. */
  earlyRefresh: number
}

export interface ResolvedCacheOptions {
  prefix: string
  defaults: ResolvedEntryOptions
  l1: { maxBytes: number; maxEntries: number } | false
  logger: Logger
  timeout: number
  breakerThreshold: number
  breakerCooldown: number
  lockLease: number
  lockWait: number
  tagTtl: number
  maxKeyLength: number
}

const CACHE_OPTION_NAMES = new Set([
  'redis',
  'l1',
  'prefix',
  'logger',
  'timeout',
  'breaker',
  'lock',
  'tagTtl',
  'maxKeyLength',
  'ttl',
  'staleWhileRevalidate',
  'staleIfError',
  'negativeTtl',
  'earlyRefresh',
])
const ENTRY_OPTION_NAMES = new Set([
  'ttl',
  'tags',
  'staleWhileRevalidate',
  'staleIfError',
  'negativeTtl',
  'earlyRefresh',
])

const NOOP = () => {}
export const silentLogger: Logger = { debug: NOOP, warn: NOOP, error: NOOP }

const TAG_RE = /^[^\s\n*?[\]]{1,256}$/

export function invalid(name: string, expected: string, value: unknown): LarderError {
  return new LarderError('LARDER_INVALID_OPTION', `${name}: expected ${expected}, got ${describe(value)}`)
}

export function rejectUnknown(options: object, known: Set<string>, where: string): void {
  for (const name of Object.keys(options)) {
    if (!known.has(name)) throw new LarderError('LARDER_UNKNOWN_OPTION', `${where}: unknown option '${name}'`)
  }
}

/** A tag is 1–256 characters with no whitespace and no glob characters, so request data cannot widen it. */
export function validateTags(tags: unknown, name = 'tags'): readonly string[] {
  if (tags === undefined) return []
  if (!Array.isArray(tags)) throw invalid(name, 'an array of strings', tags)
  for (const tag of tags) {
    if (typeof tag !== 'string' || !TAG_RE.test(tag)) {
      throw invalid(name, 'tags of 1-256 characters without whitespace or * ? [ ]', tag)
    }
  }
  return tags
}

function earlyRefreshBeta(value: unknown, name: string): number {
  if (value === undefined || value === false) return 0
  if (value === true) return 1
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return value
  throw invalid(name, 'a boolean or a beta factor >= 0', value)
}

export function resolveEntryOptions(
  options: EntryOptions | undefined,
  defaults: ResolvedEntryOptions,
  where = 'options',
): ResolvedEntryOptions {
  if (options === undefined) return defaults
  if (typeof options !== 'object' || options === null) throw invalid(where, 'an object', options)
  rejectUnknown(options, ENTRY_OPTION_NAMES, where)
  return {
    ttl: optionalDuration(options.ttl, `${where}.ttl`, defaults.ttl),
    tags: options.tags === undefined ? defaults.tags : validateTags(options.tags, `${where}.tags`),
    staleWhileRevalidate: optionalDuration(
      options.staleWhileRevalidate,
      `${where}.staleWhileRevalidate`,
      defaults.staleWhileRevalidate,
    ),
    staleIfError: optionalDuration(options.staleIfError, `${where}.staleIfError`, defaults.staleIfError),
    negativeTtl: optionalDuration(options.negativeTtl, `${where}.negativeTtl`, defaults.negativeTtl),
    earlyRefresh:
      options.earlyRefresh === undefined
        ? defaults.earlyRefresh
        : earlyRefreshBeta(options.earlyRefresh, `${where}.earlyRefresh`),
  }
}

function positiveInteger(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value === 'number' && Number.isInteger(value) && value > 0) return value
  throw invalid(name, 'an integer > 0', value)
}

function optionalObject<T extends object>(value: T | undefined, name: string, known: string[]): Partial<T> {
  if (value === undefined) return {}
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw invalid(name, 'an object', value)
  rejectUnknown(value, new Set(known), name)
  return value
}

export function resolveCacheOptions(options: CacheOptions): ResolvedCacheOptions {
  if (typeof options !== 'object' || options === null)
    throw invalid('createCache options', 'an object', options)
  rejectUnknown(options, CACHE_OPTION_NAMES, 'createCache')
  const ttl = optionalDuration(options.ttl, 'ttl', 60_000)
  if (ttl === 0) throw invalid('ttl', 'a duration > 0', options.ttl)
  const defaults: ResolvedEntryOptions = {
    ttl,
    tags: [],
    staleWhileRevalidate: optionalDuration(options.staleWhileRevalidate, 'staleWhileRevalidate', 0),
    staleIfError: optionalDuration(options.staleIfError, 'staleIfError', 0),
    negativeTtl: optionalDuration(options.negativeTtl, 'negativeTtl', Math.min(ttl, 30_000)),
    earlyRefresh: earlyRefreshBeta(options.earlyRefresh, 'earlyRefresh'),
  }
  if (options.prefix !== undefined && typeof options.prefix !== 'string') {
    throw invalid('prefix', 'a string', options.prefix)
  }
  if (options.l1 === false && options.redis === undefined) {
    throw invalid('l1', 'L1 options (l1: false needs the redis option)', false)
  }
  return finish(options, defaults, options.l1 === false ? false : resolveL1(options.l1))
}

function resolveL1(options: CacheOptions['l1']): ResolvedCacheOptions['l1'] {
  const l1 = optionalObject(options || undefined, 'l1', ['maxBytes', 'maxEntries'])
  return {
    maxBytes: l1.maxBytes === undefined ? 64 * 1024 ** 2 : parseBytes(l1.maxBytes, 'l1.maxBytes'),
    maxEntries: positiveInteger(l1.maxEntries, 'l1.maxEntries', 10_000),
  }
}

function finish(
  options: CacheOptions,
  defaults: ResolvedEntryOptions,
  l1: ResolvedCacheOptions['l1'],
): ResolvedCacheOptions {
  const breaker = optionalObject(options.breaker, 'breaker', ['threshold', 'cooldown'])
  const lock = optionalObject(options.lock, 'lock', ['lease', 'wait'])
  const logger = options.logger ?? silentLogger
  if (typeof logger.warn !== 'function' || typeof logger.error !== 'function') {
    throw invalid('logger', 'a pino-like logger with debug/warn/error', logger)
  }
  return {
    prefix: options.prefix ?? 'larder:',
    defaults,
    l1,
    logger,
    timeout: Math.max(1, optionalDuration(options.timeout, 'timeout', 250)),
    breakerThreshold: positiveInteger(breaker.threshold, 'breaker.threshold', 5),
    breakerCooldown: optionalDuration(breaker.cooldown, 'breaker.cooldown', 2_000),
    lockLease: Math.max(1, optionalDuration(lock.lease, 'lock.lease', 10_000)),
    lockWait: optionalDuration(lock.wait, 'lock.wait', 10_000),
    tagTtl: Math.max(1_000, optionalDuration(options.tagTtl, 'tagTtl', 30 * 86_400_000)),
    maxKeyLength: positiveInteger(options.maxKeyLength, 'maxKeyLength', 512),
  }
}
