import { parseDuration, type RedisClient } from '@larder/core'
import type {
  FastifyContextConfig,
  FastifyInstance,
  FastifyPluginAsync,
  FastifyRequest,
  preHandlerHookHandler,
  RouteOptions,
} from 'fastify'
import fp from 'fastify-plugin'
import { Redis } from 'ioredis'
import { type LimiterContext, type LimitHook, limitHook } from './limiter.js'
import {
  type CompiledLimit,
  checkGlobalOptions,
  compileAllowList,
  compileLimit,
  invalid,
  listName,
} from './options.js'
import { routeConfigReader } from './route-config.js'
import { FailoverStore } from './stores/failover-store.js'
import { MemoryStore } from './stores/memory-store.js'
import { RedisStore } from './stores/redis-store.js'
import type { RateLimitStore } from './stores/store.js'
import type { LimitOptions, RateLimitOptions, RateLimitStats } from './types.js'

function isClient(value: unknown): value is RedisClient {
  const candidate = value as { defineCommand?: unknown; status?: unknown } | null
  return (
    typeof candidate === 'object' &&
    candidate !== null &&
    typeof candidate.defineCommand === 'function' &&
    typeof candidate.status === 'string'
  )
}

/** The `redis` option (or `fastify.redis`) → a client, and whether Larder opened it (then it closes it). */
function redisClient(
  fastify: FastifyInstance,
  options: RateLimitOptions,
): { client: RedisClient; owned: boolean } | undefined {
  const redis =
    options.redis ??
    (fastify.hasDecorator('redis') ? (fastify as unknown as { redis: unknown }).redis : undefined)
  if (redis === undefined) return undefined
  if (isClient(redis)) return { client: redis, owned: false }
  if (typeof redis !== 'string' && (typeof redis !== 'object' || redis === null)) {
    throw invalid('redis', 'an ioredis client, a redis:// URL or ioredis options', redis)
  }
  // Few retries per command: the guard answers for a Redis that is away, not ioredis's offline queue.
  const defaults = {
    maxRetriesPerRequest: 1,
    retryStrategy: (attempt: number) => Math.min(attempt * 50, 500),
  }
  const client = typeof redis === 'string' ? new Redis(redis, defaults) : new Redis({ ...defaults, ...redis })
  client.on('error', () => {})
  return { client, owned: true }
}

/** The store the options choose; a shared store gets the fail-open/fail-closed wrapper. */
function chooseStore(
  fastify: FastifyInstance,
  options: RateLimitOptions,
  stats: RateLimitStats,
): { store: RateLimitStore; close: () => Promise<void> } {
  const maxKeys = options.maxKeys ?? 10_000
  const timeout = options.timeout === undefined ? 100 : parseDuration(options.timeout)
  const redis = options.store === undefined ? redisClient(fastify, options) : undefined
  if (options.store === undefined && redis === undefined) {
    const memory = new MemoryStore({ maxKeys })
    return { store: memory, close: () => memory.close() }
  }
  const primary =
    options.store ??
    new RedisStore({
      client: (redis as { client: RedisClient }).client,
      prefix: options.prefix ?? 'larder:',
      timeout,
    })
  if (primary instanceof MemoryStore) return { store: primary, close: async () => {} }
  const fallback = new MemoryStore({ maxKeys })
  const store = new FailoverStore({
    primary,
    fallback,
    mode: options.failMode ?? 'open',
    logger: fastify.log,
    onError: () => stats.redisErrors++,
    onFallback: () => stats.fallbacks++,
  })
  return {
    store,
    close: async () => {
      await fallback.close()
      if (redis?.owned) redis.client.disconnect()
    },
  }
}

/** Marks a route config whose limits got a route-level hook (in onRoute). */
const kOwnHook = Symbol('larder.rateLimit.ownHook')

function addHook<T>(existing: T | T[] | undefined, hook: T): T[] {
  if (existing === undefined) return [hook]
  return Array.isArray(existing) ? [...existing, hook] : [existing, hook]
}

/** `GET` and the `HEAD` Fastify derives from it share their counts. */
function routeScope(route: Pick<RouteOptions, 'method' | 'url'>): string {
  const methods = (Array.isArray(route.method) ? route.method : [route.method]).map((m) =>
    m === 'HEAD' ? 'GET' : m,
  )
  return `${methods.join(',')} ${route.url}`
}

const rateLimitPlugin: FastifyPluginAsync<RateLimitOptions> = async (fastify, options) => {
  checkGlobalOptions(options)
  // Registrations in sibling contexts (say /api and /auth) on one Redis count apart.
  const globalScope = fastify.prefix === '' ? 'global' : `global ${fastify.prefix}`
  const global = compileLimit(options, {}, 'options', globalScope, options.name ?? 'default')
  const defaults: LimitOptions = { ...options }
  const stats: RateLimitStats = { allowed: 0, refused: 0, fallbacks: 0, unavailable: 0, redisErrors: 0 }
  const { store, close } = chooseStore(fastify, options, stats)
  fastify.addHook('onClose', close)
  fastify.decorate('rateLimitStats', () => ({ ...stats }))
  const context: LimiterContext = {
    store,
    headers: options.headers ?? 'draft',
    skip: options.skip,
    allowListed: compileAllowList(options.allowList),
    onExceeded: options.onExceeded,
    stats,
  }

  /** The limits of a route's own config.rateLimit, compiled into one hook. */
  function routeLimits(route: Pick<RouteOptions, 'method' | 'url'>, config: unknown): CompiledLimit[] {
    const scope = routeScope(route)
    const where = `config.rateLimit of ${scope}`
    const limits = Array.isArray(config)
      ? config.map((item: LimitOptions, i) =>
          compileLimit(item, defaults, `${where}[${i}]`, scope, listName(item, defaults)),
        )
      : [compileLimit(config as LimitOptions, defaults, where, scope, 'default')]
    if (limits.length === 0) throw invalid(where, 'at least one limit', config)
    const names = new Set(limits.map((limit) => limit.name))
    if (names.size !== limits.length) throw invalid(`${where} names`, 'distinct names', [...names].join())
    return limits
  }

  // A route declared before the plugin was registered never reached onRoute: its own limits are
  // compiled on its first request and applied by the global hook, rather than left unlimited.
  const late = new WeakMap<object, LimitHook>()
  function lateHook(request: FastifyRequest, config: FastifyContextConfig): LimitHook {
    let hook = late.get(config)
    if (hook === undefined) {
      const route = {
        method: request.routeOptions.method as RouteOptions['method'],
        url: request.routeOptions.url ?? '',
      }
      hook = limitHook(routeLimits(route, config.rateLimit), context)
      late.set(config, hook)
    }
    return hook
  }

  // The global limit runs at the instance level, so requests that match no route (404s) are limited
  // too: Fastify runs the instance's onRequest hooks for them. Routes with their own config.rateLimit
  // (a limit, a list or false) are left to their route-level hook.
  const globalHook = limitHook([global], context)
  const routeConfig = routeConfigReader()
  const onGlobal: LimitHook = (request, reply, done) => {
    const config = routeConfig(request)
    if (config.rateLimit === undefined) globalHook(request, reply, done)
    else if (config.rateLimit === false || (config as unknown as Record<symbol, unknown>)[kOwnHook] === true)
      done()
    else {
      let hook: LimitHook
      try {
        hook = lateHook(request, config)
      } catch (error) {
        done(error as Error)
        return
      }
      hook(request, reply, done)
    }
  }
  fastify.addHook(global.hook as 'onRequest', onGlobal)

  fastify.addHook('onRoute', (route: RouteOptions) => {
    const config = route.config?.rateLimit
    if (config === undefined || config === false) return
    const limits = routeLimits(route, config)
    ;(route.config as unknown as Record<symbol, unknown>)[kOwnHook] = true
    // One hook for all of a route's limits: preHandler if any of them needs the body.
    const hook = limitHook(limits, context)
    if (limits.some((limit) => limit.hook === 'preHandler')) {
      route.preHandler = addHook(route.preHandler, hook as preHandlerHookHandler)
    } else route.onRequest = addHook(route.onRequest, hook)
  })
}

/** Sliding-window rate limits; register it before the routes it limits. */
export const rateLimit = fp(rateLimitPlugin, { fastify: '5.x', name: '@larder/rate-limit' })
