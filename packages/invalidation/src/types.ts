import type {} from '@larder/response-cache'
import type { FastifyReply, FastifyRequest } from 'fastify'

/** A list of templates (`'product:{params.id}'`, `'{body.category}'`, `'{response.id}'`) or a function. */
export type TargetList =
  | readonly string[]
  | ((request: FastifyRequest, reply: FastifyReply, payload: unknown) => readonly string[])

/** Per-route `config.invalidate`: what a successful (2xx) response of this route makes stale. */
export interface RouteInvalidateConfig {
  /** Tags to invalidate (entries of `config.cache` and `fastify.cache.wrap` written with them). */
  tags?: TargetList
  /** Engine keys to delete (as given to `fastify.cache.wrap`/`set`). */
  keys?: TargetList
  /** Globs of engine keys (`'user:{params.id}:*'`); filled values may not contain glob characters. */
  patterns?: TargetList
}

export interface InvalidationTargets {
  tags?: readonly string[]
  keys?: readonly string[]
  patterns?: readonly string[]
}

export interface InvalidationOptions {
  /** Retries of an invalidation Redis did not confirm: attempts and the backoff between them. */
  retry?: { attempts?: number; minDelay?: number | string; maxDelay?: number | string }
  /**
   * An admin route `DELETE <path>?tag=…&key=…&pattern=…`, off by default. `authorize` decides who may
   * call it (e.g. a bearer token check).
   */
  admin?: { path?: string; authorize: (request: FastifyRequest) => boolean | Promise<boolean> }
}

export interface InvalidationStats {
  /** Invalidations run (routes and `fastify.invalidate`). */
  invalidations: number
  /** Attempts Redis did not confirm. */
  failures: number
  /** Invalidations waiting for a retry now. */
  pending: number
  /** Invalidations given up after the last retry. */
  abandoned: number
}

declare module 'fastify' {
  interface FastifyContextConfig {
    invalidate?: RouteInvalidateConfig
  }
  interface FastifyInstance {
    /** Invalidates tags, keys and patterns in every process; resolves once confirmed (or queued for retry). */
    invalidate(targets: InvalidationTargets): Promise<void>
    invalidation: { stats(): InvalidationStats }
  }
}
