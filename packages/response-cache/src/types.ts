import type { Cache, CacheOptions, Duration, L1Options } from '@larder/core'
import type { FastifyRequest } from 'fastify'
import type { WarmUrls } from './warm.js'

/** Per-route `config.cache`. Only routes that declare it are touched. */
export interface RouteCacheConfig {
  /** How long a response stays fresh. Required. */
  ttl: Duration
  /** After `ttl`, serve the stale response at once for this long while one background refresh runs. */
  staleWhileRevalidate?: Duration
  /** After `ttl`, serve the stale response for this long when the handler throws or answers 5xx. */
  staleIfError?: Duration
  /** TTL of a cached 404. Default 30 s (or `ttl`, if shorter). */
  notFoundTtl?: Duration
  /** Tags for invalidation: templates (`'product:{params.id}'`, `'{query.category}'`) or a function. */
  tags?: readonly string[] | ((request: FastifyRequest) => readonly string[])
  /** Request headers whose values are part of the key (e.g. `accept-language`). */
  vary?: readonly string[]
  /** Query parameters that are part of the key (allowlist); default all, sorted. `[]` ignores the query. */
  query?: readonly string[]
  /** Replaces the params + query part of the key. */
  key?: (request: FastifyRequest) => string
  /**
   * Caches per user: returns the user's key (e.g. the session's user id) or `undefined` to bypass.
   * Responses then say `Cache-Control: private`, and requests with credentials may be cached.
   */
  private?: (request: FastifyRequest) => string | undefined
  /** Emits `s-maxage` and the tags as `Surrogate-Key` and `Cache-Tag` for a CDN. */
  cdn?: boolean
}

export interface ResponseCacheOptions {
  /** An ioredis client, URL or options; default `fastify.redis` when @fastify/redis is registered, else L1 only. */
  redis?: CacheOptions['redis']
  /** An engine to use instead of creating one (its owner closes it). */
  cache?: Cache
  /** The in-process tier of the engine Larder creates. */
  l1?: L1Options | false
  /** Redis key prefix of the engine Larder creates. Default `'larder:'`. */
  prefix?: string
  /** Defaults for `config.cache` on every route and for `fastify.cache.wrap`. */
  defaults?: Partial<Pick<RouteCacheConfig, 'ttl' | 'staleWhileRevalidate' | 'staleIfError' | 'notFoundTtl'>>
  /** Responses larger than this are not cached. Default 1 MiB. */
  maxEntryBytes?: number | string
  /** Options passed on to `createCache` (timeout, breaker, lock, tagTtl, ...). */
  engine?: Omit<CacheOptions, 'redis' | 'l1' | 'prefix' | 'logger'>
  /**
   * URLs (or a function returning them) requested once through `fastify.inject` right after the
   * server is ready, so the first visitors get HITs. Runs in the background; failures are logged.
   */
  warm?: WarmUrls
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Cache this route's GET/HEAD responses (see `RouteCacheConfig`); `false` or absent: not cached. */
    cache?: RouteCacheConfig | false
  }
  interface FastifyInstance {
    /** The Larder engine, for query caching: `fastify.cache.wrap(key, loader, { ttl, tags })`. */
    cache: Cache
  }
}
