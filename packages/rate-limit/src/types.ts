import type { Duration, RedisClient } from '@larder/core'
import type { FastifyRequest } from 'fastify'
import type { RedisOptions } from 'ioredis'
import type { RateLimitStore } from './stores/store.js'

export type Algorithm = 'sliding-window' | 'sliding-log'

/** One limit: `limit` units of cost per sliding `window`, counted per `key`. */
export interface LimitOptions {
  /** Units allowed per window (a request costs 1 unless `cost` says otherwise). */
  limit?: number
  /** Length of the sliding window. */
  window?: Duration
  /** `'sliding-window'`: weighted two-window counter, O(1) per key. `'sliding-log'`: exact, one entry per unit. */
  algorithm?: Algorithm
  /** Who is limited. Default: the client IP (`request.ip`, which follows `trustProxy`), IPv6 by its /64. */
  key?: (request: FastifyRequest) => string
  /** Units a request costs (an integer >= 0). Default 1. */
  cost?: number | ((request: FastifyRequest) => number)
  /** The policy name in the `RateLimit-Policy`/`RateLimit` headers. */
  name?: string
  /**
   * When the limit runs. `'onRequest'` (default) refuses before the body is read; `'preHandler'` lets
   * `key`/`cost` read `request.body` (e.g. limit logins per IP and e-mail).
   */
  hook?: 'onRequest' | 'preHandler'
}

/** Why a request was refused, for `onExceeded`. */
export interface ExceededInfo {
  /** The limit's policy name. */
  name: string
  key: string
  limit: number
  /** Window in milliseconds. */
  window: number
  /** Seconds until the refused request would fit. */
  retryAfter: number
}

export type AllowList = readonly string[] | ((request: FastifyRequest) => boolean)

export interface RateLimitOptions extends LimitOptions {
  /** Requests for which this returns true are not limited (and not counted). */
  skip?: (request: FastifyRequest) => boolean | Promise<boolean>
  /** Never limited: client IPs or CIDR ranges (`'10.0.0.0/8'`, `'2001:db8::/32'`), or a function. */
  allowList?: AllowList
  /** An ioredis `Redis`/`Cluster` (never closed by Larder), a URL or ioredis options. Default `fastify.redis` if present, else memory. */
  redis?: RedisClient | string | RedisOptions
  /** A store to use instead (one implementing `RateLimitStore`); its owner closes it. */
  store?: RateLimitStore
  /** Redis key prefix. Default `'larder:'`. */
  prefix?: string
  /** Which headers limited responses carry. Default `'draft'` (IETF `RateLimit-Policy` and `RateLimit`). */
  headers?: 'draft' | 'legacy' | 'both' | false
  /** Called for every refused request (before the 429 is sent), e.g. to log or count. */
  onExceeded?: (request: FastifyRequest, info: ExceededInfo) => void
  /** Redis unreachable: `'open'` limits from process memory, `'closed'` answers 503. Default `'open'`. */
  failMode?: 'open' | 'closed'
  /** Longest a request waits on Redis before Redis counts as down. Default 100 ms. */
  timeout?: Duration
  /** Keys the memory store (and the fail-open fallback) keeps at most. Default 10,000. */
  maxKeys?: number
}

/** Per-route `config.rateLimit`: replaces the global limit, lists several limits, or exempts the route. */
export type RouteRateLimitConfig = LimitOptions | readonly LimitOptions[] | false

/** Counters since registration (`fastify.rateLimitStats()`). */
export interface RateLimitStats {
  allowed: number
  refused: number
  /** Decisions taken from process memory because Redis was unavailable (fail open). */
  fallbacks: number
  /** Requests answered 503 because Redis was unavailable (fail closed). */
  unavailable: number
  /** Redis calls that failed or timed out. */
  redisErrors: number
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A limit for this route instead of the global one, several limits, or `false` to exempt it. */
    rateLimit?: RouteRateLimitConfig
  }
  interface FastifyInstance {
    /** Counters of the rate limiter since registration. */
    rateLimitStats(): RateLimitStats
  }
}
