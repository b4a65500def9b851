import { BlockList, isIP } from 'node:net'
import { LarderError, parseDuration } from '@larder/core'
import type { FastifyRequest } from 'fastify'
import { defaultKey } from './key.js'
import type { LimitSpec } from './stores/store.js'
import type { LimitOptions, RateLimitOptions } from './types.js'

/** One limit, ready for the request path. */
export interface CompiledLimit {
  name: string
  spec: LimitSpec
  /** Separates this limit's counts from every other limit's: the route (or "global") and the name. */
  scope: string
  key(request: FastifyRequest): string
  cost(request: FastifyRequest): number
  /** This limit's item of the `RateLimit-Policy` header. */
  policy: string
  /** The start of this limit's item of the `RateLimit` header, up to the remaining units. */
  remainingPrefix: string
  hook: 'onRequest' | 'preHandler'
}

const GLOBAL_OPTIONS = new Set([
  'limit',
  'window',
  'algorithm',
  'key',
  'cost',
  'name',
  'hook',
  'skip',
  'allowList',
  'redis',
  'store',
  'prefix',
  'headers',
  'onExceeded',
  'failMode',
  'timeout',
  'maxKeys',
])
const LIMIT_OPTIONS = new Set(['limit', 'window', 'algorithm', 'key', 'cost', 'name', 'hook'])
// A Structured Field string: printable ASCII without `"` and `\`.
const NAME_RE = /^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}$/

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'object') return 'an object'
  return `${typeof value} ${String(value)}`
}

export function invalid(name: string, expected: string, value: unknown): LarderError {
  return new LarderError(
    'LARDER_INVALID_OPTION',
    `@larder/rate-limit ${name}: expected ${expected}, got ${describe(value)}`,
  )
}

function unknownOption(where: string, name: string): LarderError {
  return new LarderError('LARDER_UNKNOWN_OPTION', `@larder/rate-limit ${where}: unknown option '${name}'`)
}

function oneOf<T extends string>(value: unknown, allowed: readonly T[], name: string, fallback: T): T {
  if (value === undefined) return fallback
  if (allowed.includes(value as T)) return value as T
  throw invalid(name, allowed.map((item) => `'${item}'`).join(' or '), value)
}

function positiveInteger(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value === 'number' && Number.isInteger(value) && value > 0) return value
  throw invalid(name, 'an integer > 0', value)
}

function optionalFunction(value: unknown, name: string): void {
  if (value !== undefined && typeof value !== 'function') throw invalid(name, 'a function', value)
}

/** Checks the plugin options that are not a limit's; the limit's own are checked by `compileLimit`. */
export function checkGlobalOptions(options: RateLimitOptions): void {
  if (typeof options !== 'object' || options === null) throw invalid('options', 'an object', options)
  for (const name of Object.keys(options)) if (!GLOBAL_OPTIONS.has(name)) throw unknownOption('options', name)
  optionalFunction(options.skip, 'skip')
  optionalFunction(options.onExceeded, 'onExceeded')
  if (options.prefix !== undefined && typeof options.prefix !== 'string') {
    throw invalid('prefix', 'a string', options.prefix)
  }
  if (options.store !== undefined && typeof options.store?.consume !== 'function') {
    throw invalid('store', 'a RateLimitStore (with consume and close)', options.store)
  }
  if (options.headers !== false) oneOf(options.headers, ['draft', 'legacy', 'both'], 'headers', 'draft')
  oneOf(options.failMode, ['open', 'closed'], 'failMode', 'open')
  positiveInteger(options.maxKeys, 'maxKeys', 1)
  if (options.timeout !== undefined && parseDuration(options.timeout, '@larder/rate-limit timeout') === 0) {
    throw invalid('timeout', 'a duration > 0', options.timeout)
  }
}

/** `allowList` as a test on the request: IPs and CIDR ranges go into a BlockList. */
export function compileAllowList(
  value: RateLimitOptions['allowList'],
): ((request: FastifyRequest) => boolean) | undefined {
  if (value === undefined) return undefined
  if (typeof value === 'function') return value
  if (!Array.isArray(value))
    throw invalid('allowList', 'an array of IPs or CIDR ranges, or a function', value)
  const list = new BlockList()
  for (const entry of value) {
    const [address = '', bits] = typeof entry === 'string' ? entry.split('/') : []
    const family = isIP(address)
    const prefix = bits === undefined ? undefined : Number(bits)
    const max = family === 6 ? 128 : 32
    if (
      family === 0 ||
      (prefix !== undefined && !(Number.isInteger(prefix) && prefix >= 0 && prefix <= max))
    ) {
      throw invalid('allowList', "IPs or CIDR ranges such as '10.0.0.0/8'", entry)
    }
    const type = family === 6 ? 'ipv6' : 'ipv4'
    if (prefix === undefined) list.addAddress(address, type)
    else list.addSubnet(address, prefix, type)
  }
  return (request) => {
    const ip = request.ip.split('%')[0] as string
    const family = isIP(ip)
    return family !== 0 && list.check(ip, family === 6 ? 'ipv6' : 'ipv4')
  }
}

/**
 * One limit, from its options over the global ones. `where` names it in errors ("options",
 * "config.rateLimit of GET /login"); `scope` separates its counts from other limits'.
 */
export function compileLimit(
  options: LimitOptions,
  defaults: LimitOptions,
  where: string,
  scope: string,
  defaultName: string,
): CompiledLimit {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw invalid(where, 'an object, an array of them or false', options)
  }
  for (const name of Object.keys(options)) {
    if (!LIMIT_OPTIONS.has(name) && where !== 'options') throw unknownOption(where, name)
  }
  const merged = { ...pick(defaults), ...pick(options) }
  const at = (name: string) => (where === 'options' ? name : `${where}.${name}`)
  const limit = positiveInteger(merged.limit, at('limit'), 100)
  const window = parseDuration(merged.window ?? '1m', `@larder/rate-limit ${at('window')}`)
  if (window === 0) throw invalid(at('window'), 'a duration > 0', merged.window)
  const algorithm = oneOf(
    merged.algorithm,
    ['sliding-window', 'sliding-log'],
    at('algorithm'),
    'sliding-window',
  )
  optionalFunction(merged.key, at('key'))
  const name = options.name ?? defaultName
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw invalid(at('name'), '1-64 printable ASCII characters without " or \\', name)
  }
  return {
    name,
    spec: { limit, window, algorithm },
    scope: `${scope}|${name}`,
    key: merged.key ?? defaultKey,
    cost: compileCost(merged.cost, at('cost')),
    policy: `"${name}";q=${limit};w=${Math.ceil(window / 1000)}`,
    remainingPrefix: `"${name}";r=`,
    hook: oneOf(merged.hook, ['onRequest', 'preHandler'], at('hook'), 'onRequest'),
  }
}

function pick(options: LimitOptions): LimitOptions {
  const picked: LimitOptions = {}
  if (options.limit !== undefined) picked.limit = options.limit
  if (options.window !== undefined) picked.window = options.window
  if (options.algorithm !== undefined) picked.algorithm = options.algorithm
  if (options.key !== undefined) picked.key = options.key
  if (options.cost !== undefined) picked.cost = options.cost
  if (options.hook !== undefined) picked.hook = options.hook
  return picked
}

function isCost(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0
}

function compileCost(cost: LimitOptions['cost'], name: string): (request: FastifyRequest) => number {
  if (cost === undefined) return () => 1
  if (isCost(cost)) return () => cost
  if (typeof cost !== 'function') throw invalid(name, 'an integer >= 0 or a function', cost)
  return (request) => {
    const value = cost(request)
    if (!isCost(value)) throw invalid(name, 'the function to return an integer >= 0', value)
    return value
  }
}

/** The default policy name of the `index`th unnamed limit in a list: `'5-per-1m'`. */
export function listName(options: LimitOptions, defaults: LimitOptions): string {
  const limit = options.limit ?? defaults.limit ?? 100
  const window = options.window ?? defaults.window ?? '1m'
  return `${String(limit)}-per-${typeof window === 'number' ? `${window}ms` : window}`
}
