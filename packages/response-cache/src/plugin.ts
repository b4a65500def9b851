import {
  type Cache,
  type CacheOptions,
  createCache,
  LarderError,
  parseBytes,
  parseDuration,
} from '@larder/core'
import type { FastifyInstance, FastifyPluginAsync, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { kState, type Refresh, routeHooks } from './hooks.js'
import { compileRoute } from './route.js'
import type { ResponseCacheOptions, RouteCacheConfig } from './types.js'
import { checkWarm, scheduleWarm } from './warm.js'

/** How long startup waits for the bus subscription before serving anyway. */
const READY_WAIT_MS = 1_000

const KNOWN = new Set(['redis', 'cache', 'l1', 'prefix', 'defaults', 'maxEntryBytes', 'engine', 'warm'])

function invalid(name: string, expected: string): LarderError {
  return new LarderError('LARDER_INVALID_OPTION', `@larder/response-cache ${name}: expected ${expected}`)
}

function checkOptions(options: ResponseCacheOptions): void {
  for (const name of Object.keys(options)) {
    if (!KNOWN.has(name)) {
      throw new LarderError('LARDER_UNKNOWN_OPTION', `@larder/response-cache: unknown option '${name}'`)
    }
  }
  if (options.cache !== undefined && typeof options.cache?.wrap !== 'function') {
    throw invalid('cache', 'a Cache from @larder/core createCache()')
  }
  if (options.defaults !== undefined && (typeof options.defaults !== 'object' || options.defaults === null)) {
    throw invalid('defaults', 'an object')
  }
  for (const [name, value] of Object.entries(options.defaults ?? {})) {
    if (!['ttl', 'staleWhileRevalidate', 'staleIfError', 'notFoundTtl'].includes(name)) {
      throw new LarderError(
        'LARDER_UNKNOWN_OPTION',
        `@larder/response-cache defaults: unknown option '${name}'`,
      )
    }
    parseDuration(value, `@larder/response-cache defaults.${name}`)
  }
}

/** The engine: the one handed over, or one Larder creates (on `redis`, else `fastify.redis`, else L1 only). */
function engineFor(
  fastify: FastifyInstance,
  options: ResponseCacheOptions,
): { cache: Cache; owned: boolean } {
  if (options.cache !== undefined) return { cache: options.cache, owned: false }
  const fromDecorator = fastify.hasDecorator('redis')
    ? ((fastify as unknown as { redis: CacheOptions['redis'] }).redis as CacheOptions['redis'])
    : undefined
  const redis = options.redis ?? fromDecorator
  const defaults = options.defaults ?? {}
  const cacheOptions: CacheOptions = { ...options.engine, logger: fastify.log }
  if (redis !== undefined) cacheOptions.redis = redis
  if (options.l1 !== undefined) cacheOptions.l1 = options.l1
  if (options.prefix !== undefined) cacheOptions.prefix = options.prefix
  if (defaults.ttl !== undefined) cacheOptions.ttl = defaults.ttl
  if (defaults.staleWhileRevalidate !== undefined)
    cacheOptions.staleWhileRevalidate = defaults.staleWhileRevalidate
  if (defaults.staleIfError !== undefined) cacheOptions.staleIfError = defaults.staleIfError
  return { cache: createCache(cacheOptions), owned: true }
}

function addHooks<T>(existing: T | T[] | undefined, hook: T): T[] {
  if (existing === undefined) return [hook]
  return Array.isArray(existing) ? [...existing, hook] : [existing, hook]
}

const responseCachePlugin: FastifyPluginAsync<ResponseCacheOptions> = async (fastify, options) => {
  checkOptions(options)
  const warm = options.warm === undefined ? undefined : checkWarm(options.warm)
  const maxEntryBytes =
    options.maxEntryBytes === undefined ? 1024 * 1024 : parseBytes(options.maxEntryBytes, 'maxEntryBytes')
  const { cache, owned } = engineFor(fastify, options)
  fastify.decorate('cache', cache)
  fastify.decorateRequest(kState, null)
  if (owned) fastify.addHook('onClose', () => cache.close())
  // Listen on the bus before serving, so another instance's invalidations reach this one from the
  // first request; bounded, so a Redis that is down at start delays nothing.
  fastify.addHook('onReady', async () => {
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      cache.ready(),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, READY_WAIT_MS))),
    ])
    clearTimeout(timer)
  })
  if (warm !== undefined) scheduleWarm(fastify, warm)
  const defaults: Partial<RouteCacheConfig> = options.defaults ?? {}
  const refreshes = new Map<string, Refresh>()

  fastify.addHook('onRoute', (routeOptions: RouteOptions) => {
    const config = routeOptions.config?.cache
    if (config === undefined || config === false) return
    const route = compileRoute(
      config,
      defaults,
      routeOptions.url,
      fastify.hasReplyDecorator('compress'),
      routeOptions.constraints ?? {},
    )
    const hooks = routeHooks(route, { fastify, cache, maxEntryBytes, refreshes })
    routeOptions.onRequest = addHooks(routeOptions.onRequest, hooks.onRequest)
    routeOptions.onSend = addHooks(routeOptions.onSend, hooks.onSend)
  })
}

/** The route response cache and `fastify.cache`; register it before the routes it caches. */
export const responseCache = fp(responseCachePlugin, { fastify: '5.x', name: '@larder/response-cache' })
