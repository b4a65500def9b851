import { createHash } from 'node:crypto'
import { compileTemplate, type EntryOptions, LarderError, parseDuration, validateTags } from '@larder/core'
import type { FastifyRequest } from 'fastify'
import type { RouteCacheConfig } from './types.js'

/** Everything the request path needs about a route, computed once when the route is registered. */
export interface CompiledRoute {
  url: string
  ttl: number
  staleWhileRevalidate: number
  staleIfError: number
  notFoundTtl: number
  /**
   * The request carries credentials the key does not separate: `Authorization` unless the route is
   * private or varies on it, `Cookie` unless the route is private or varies on it.
   */
  refusesCredentials(headers: FastifyRequest['headers']): boolean
  /** Varies on `Accept-Encoding` (@fastify/compress is registered). */
  byEncoding: boolean
  cdn: boolean
  isPrivate: boolean
  cacheControl: string
  /** `cacheControl` for a cached 404, whose TTL is `notFoundTtl`. */
  notFoundCacheControl: string
  /** The request headers the key separates (lower case). */
  vary: readonly string[]
  key(request: FastifyRequest): string | undefined
  tags(request: FastifyRequest): readonly string[]
  entryOptions(tags: readonly string[]): EntryOptions
}

const KNOWN = new Set([
  'ttl',
  'staleWhileRevalidate',
  'staleIfError',
  'notFoundTtl',
  'tags',
  'vary',
  'query',
  'key',
  'private',
  'cdn',
])
const TAG_ROOTS = ['params', 'query'] as const
/** The tags of a route that declares none: one frozen array, not a new one per request. */
const NO_TAGS: readonly string[] = Object.freeze([])

function fail(route: string, message: string): LarderError {
  return new LarderError('LARDER_INVALID_OPTION', `config.cache of ${route}: ${message}`)
}

function stringList(value: unknown, route: string, name: string): readonly string[] | undefined {
  if (value === undefined) return undefined
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string' && item.length > 0)) {
    throw fail(route, `${name}: expected an array of non-empty strings`)
  }
  return value
}

function optionalFunction<T>(value: unknown, route: string, name: string): T | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'function') throw fail(route, `${name}: expected a function, got ${typeof value}`)
  return value as T
}

export function compileRoute(
  config: RouteCacheConfig,
  defaults: Partial<RouteCacheConfig>,
  route: string,
  byEncoding: boolean,
  constraints: RouteConstraints = {},
): CompiledRoute {
  if (typeof config !== 'object' || config === null) throw fail(route, 'expected an object or false')
  for (const name of Object.keys(config)) if (!KNOWN.has(name)) throw fail(route, `unknown option '${name}'`)
  const merged = { ...defaults, ...config }
  if (merged.ttl === undefined) throw fail(route, 'ttl: required (e.g. "10m")')
  const ttl = parseDuration(merged.ttl, `config.cache.ttl of ${route}`)
  if (ttl === 0) throw fail(route, 'ttl: expected a duration > 0')
  const staleWhileRevalidate = parseDuration(
    merged.staleWhileRevalidate ?? 0,
    `config.cache.staleWhileRevalidate of ${route}`,
  )
  const staleIfError = parseDuration(merged.staleIfError ?? 0, `config.cache.staleIfError of ${route}`)
  const notFoundTtl = parseDuration(
    merged.notFoundTtl ?? Math.min(ttl, 30_000),
    `config.cache.notFoundTtl of ${route}`,
  )
  const vary = (stringList(config.vary, route, 'vary') ?? []).map((name) => name.toLowerCase())
  const query = stringList(config.query, route, 'query')
  const customKey = optionalFunction<(request: FastifyRequest) => string>(config.key, route, 'key')
  const privateKey = optionalFunction<(request: FastifyRequest) => string | undefined>(
    config.private,
    route,
    'private',
  )
  const tags = compileTags(config.tags, route)
  const cdn = config.cdn === true
  const keyOf = compileKey(route, { vary, query, customKey, privateKey, byEncoding, constraints })
  const isPrivate = privateKey !== undefined
  const allowsAuthorization = isPrivate || vary.includes('authorization')
  const allowsCookie = isPrivate || vary.includes('cookie')
  // A response that depends on credentials is for its user's own cache only, never a shared one.
  const personal = isPrivate || allowsAuthorization || allowsCookie
  return {
    url: route,
    ttl,
    staleWhileRevalidate,
    staleIfError,
    notFoundTtl,
    refusesCredentials: (headers) =>
      (!allowsAuthorization && headers.authorization !== undefined) ||
      (!allowsCookie && headers.cookie !== undefined),
    byEncoding,
    cdn,
    isPrivate,
    cacheControl: cacheControl({ ttl, staleWhileRevalidate, staleIfError, cdn, isPrivate: personal }),
    notFoundCacheControl: cacheControl({
      ttl: notFoundTtl,
      staleWhileRevalidate,
      staleIfError,
      cdn,
      isPrivate: personal,
    }),
    vary,
    key: keyOf,
    tags,
    entryOptions: (routeTags) => ({ ttl, staleWhileRevalidate, staleIfError, tags: routeTags }),
  }
}

function compileTags(
  value: RouteCacheConfig['tags'],
  route: string,
): (request: FastifyRequest) => readonly string[] {
  if (value === undefined) return () => NO_TAGS
  if (typeof value === 'function') {
    return (request) => validateTags(value(request), `config.cache.tags of ${route}`)
  }
  const templates = stringList(value, route, 'tags') ?? []
  const compiled = templates.map((template) =>
    compileTemplate(template, TAG_ROOTS, `config.cache.tags of ${route}`),
  )
  return (request) =>
    validateTags(
      compiled.map((fill) => fill(request as unknown as Record<string, unknown>)),
      `config.cache.tags of ${route}`,
    )
}

function compileKey(
  route: string,
  options: {
    vary: readonly string[]
    query: readonly string[] | undefined
    customKey: ((request: FastifyRequest) => string) | undefined
    privateKey: ((request: FastifyRequest) => string | undefined) | undefined
    byEncoding: boolean
    constraints: RouteConstraints
  },
): (request: FastifyRequest) => string | undefined {
  const { vary, query, customKey, privateKey, byEncoding, constraints } = options
  // Routes that share a URL but not a host or version (Fastify constraints) must not share entries.
  const byHost = constraints.host !== undefined
  const byVersion = constraints.version !== undefined
  return (request) => {
    let key = `res:${route}`
    if (byHost) key += `|host=${encode(request.hostname.toLowerCase())}`
    if (byVersion) key += `|v=${headerValue(request.headers['accept-version'])}`
    if (privateKey !== undefined) {
      const user = privateKey(request)
      if (typeof user !== 'string' || user.length === 0) return undefined
      key += `|u=${encodeURIComponent(user)}`
    }
    if (customKey !== undefined) key += `|k=${customKey(request)}`
    else key += `|${paramsPart(request.params)}?${queryPart(request.query, query)}`
    for (const name of vary) {
      const value = headerValue(request.headers[name])
      // Credentials are keyed by a digest: a key name is visible to anyone who can SCAN, and is logged.
      key += `|${name}=${CREDENTIALS.has(name) && value !== '' ? digest(value) : value}`
    }
    if (byEncoding) key += `|ae=${normalizeEncoding(request.headers['accept-encoding'])}`
    return key
  }
}

function paramsPart(params: unknown): string {
  if (params === null || typeof params !== 'object') return ''
  let out = ''
  // for-in + hasOwn: Object.keys' order without its array.
  for (const name in params) {
    if (Object.hasOwn(params, name))
      out += `${name}=${encode(String((params as Record<string, unknown>)[name]))}/`
  }
  return out
}

const URI_SAFE = /^[\w.~-]*$/
const CREDENTIALS = new Set(['authorization', 'cookie'])

function digest(text: string): string {
  return createHash('sha256').update(text).digest('base64url')
}

/** The route's Fastify constraints, of which host and version change what a URL means. */
export interface RouteConstraints {
  host?: unknown
  version?: unknown
}

/** `encodeURIComponent`, skipped for the usual id or slug that it would return unchanged. */
function encode(text: string): string {
  return URI_SAFE.test(text) ? text : encodeURIComponent(text)
}

function queryPart(query: unknown, allow: readonly string[] | undefined): string {
  if (query === null || typeof query !== 'object') return ''
  // The common case, no query string: no arrays to build.
  if (allow === undefined && !hasOwnKeys(query)) return ''
  const names = (allow ?? Object.keys(query)).filter(
    (name) => (query as Record<string, unknown>)[name] !== undefined,
  )
  if (names.length === 0) return ''
  return [...names]
    .sort()
    .map((name) => {
      const value = (query as Record<string, unknown>)[name]
      const values = Array.isArray(value) ? value : [value]
      // A parser that builds objects (?filter[owner]=alice) must not key them all as "[object Object]".
      return values
        .map(
          (v) =>
            `${encodeURIComponent(name)}=${encodeURIComponent(typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v))}`,
        )
        .join('&')
    })
    .join('&')
}

function hasOwnKeys(value: object): boolean {
  for (const name in value) if (Object.hasOwn(value, name)) return true
  return false
}

function headerValue(value: string | string[] | undefined): string {
  if (value === undefined) return ''
  return encodeURIComponent(Array.isArray(value) ? value.join(',') : value)
}

/** `gzip, br;q=0.8` and `br,gzip` are the same request for a compressor: sort the codings. */
function normalizeEncoding(value: string | string[] | undefined): string {
  if (value === undefined) return ''
  const text = Array.isArray(value) ? value.join(',') : value
  return text
    .toLowerCase()
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0)
    .sort()
    .join(',')
}

function cacheControl(route: {
  ttl: number
  staleWhileRevalidate: number
  staleIfError: number
  cdn: boolean
  isPrivate: boolean
}): string {
  const seconds = (ms: number) => Math.floor(ms / 1000)
  const parts = [route.isPrivate ? 'private' : 'public', `max-age=${seconds(route.ttl)}`]
  if (route.cdn && !route.isPrivate) parts.push(`s-maxage=${seconds(route.ttl)}`)
  if (route.staleWhileRevalidate > 0)
    parts.push(`stale-while-revalidate=${seconds(route.staleWhileRevalidate)}`)
  if (route.staleIfError > 0) parts.push(`stale-if-error=${seconds(route.staleIfError)}`)
  return parts.join(', ')
}
