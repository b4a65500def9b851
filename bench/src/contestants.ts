import { createKeyv as createRedisKeyv } from '@keyv/redis'
import { createCache } from '@larder/core'
import { BentoCache, bentostore } from 'bentocache'
import { memoryDriver } from 'bentocache/drivers/memory'
import { redisBusDriver, redisDriver } from 'bentocache/drivers/redis'
import { createCache as createCacheManager } from 'cache-manager'
import { Cacheable, createKeyv as createMemoryKeyv } from 'cacheable'
import type { Product } from './value.js'

export type Loader = () => Promise<Product>

/** A read-through cache seen the same way for every library: `wrap(key, loader)`. */
export interface Contestant {
  name: string
  /** The library call behind `wrap`. */
  method: string
  wrap(key: string, loader: Loader): Promise<unknown>
  /** Resolves once the instance is connected (and subscribed, where it has a bus). */
  ready(): Promise<void>
  close(): Promise<void>
}

/** `tiered`: in-process memory in front of Redis (with a bus where the library has one). `redis`: Redis only. */
export type Tiers = 'tiered' | 'redis'

export interface Setup {
  redisUrl: string
  /** Every Redis key a contestant writes starts with this (cleaned up at the end). */
  prefix: string
  tiers: Tiers
}

const TTL_MS = 10 * 60_000
const L1_ENTRIES = 10_000

function hostAndPort(url: string): { host: string; port: number } {
  const parsed = new URL(url)
  return { host: parsed.hostname, port: Number(parsed.port || 6379) }
}

export function larder(setup: Setup): Contestant {
  const cache = createCache({
    redis: setup.redisUrl,
    prefix: `${setup.prefix}larder:`,
    l1: setup.tiers === 'redis' ? false : { maxEntries: L1_ENTRIES },
    ttl: TTL_MS,
  })
  return {
    name: 'Larder',
    method: 'wrap',
    wrap: (key, loader) => cache.wrap(key, loader),
    ready: () => cache.ready(),
    close: () => cache.close(),
  }
}

/**
 * bentocache: memory L1 + Redis L2 + its Redis bus. Its memory driver serializes by default (a hit parses
 * the JSON again); `serialize: false` keeps the object like Larder's L1, but bentocache 1.6.1 then
 * throws a TypeError (CacheEntry.fromDriver) on the next hit of any entry copied into L1 from L2: the
 * copy is stored serialized. So that variant gets keys of its own and serves only the single-instance
 * L1-hit benchmark, where every entry was loaded by the instance itself.
 */
export function bentocache(setup: Setup, serialize = true): Contestant {
  const connection = hostAndPort(setup.redisUrl)
  const prefix = `${setup.prefix}${serialize ? 'bento' : 'bento-raw'}`
  let store = bentostore()
  if (setup.tiers === 'tiered') {
    store = store
      .useL1Layer(memoryDriver({ maxItems: L1_ENTRIES, serialize }))
      .useL2Layer(redisDriver({ connection, prefix }))
      .useBus(redisBusDriver({ connection }))
  } else {
    store = store.useL2Layer(redisDriver({ connection, prefix }))
  }
  const bento = new BentoCache({ default: 'store', stores: { store } })
  return {
    name: serialize ? 'bentocache' : 'bentocache, L1 `serialize: false`,',
    method: 'getOrSet',
    wrap: (key, loader) => bento.getOrSet({ key, factory: loader, ttl: TTL_MS }),
    ready: async () => {
      await bento.has({ key: 'ready-probe' })
    },
    close: () => bento.disconnectAll(),
  }
}

/** @keyv/redis (node-redis) under keyv, as cache-manager and cacheable document it. */
function redisKeyv(setup: Setup, name: string) {
  return createRedisKeyv(setup.redisUrl, { namespace: `${setup.prefix}${name}` })
}

/** An in-process Keyv store without cloning on read (the default clones every hit). */
function memoryKeyv() {
  return createMemoryKeyv({ useClone: false, lruSize: L1_ENTRIES })
}

/** cache-manager 7: `stores` are tried in order; `wrap` coalesces concurrent misses in the process. */
export function cacheManager(setup: Setup): Contestant {
  const redis = redisKeyv(setup, 'cm')
  const cache = createCacheManager({
    stores: setup.tiers === 'tiered' ? [memoryKeyv(), redis] : [redis],
    ttl: TTL_MS,
  })
  return {
    name: 'cache-manager',
    method: 'wrap',
    wrap: (key, loader) => cache.wrap(key, loader, TTL_MS),
    ready: async () => {
      await cache.get('ready-probe')
    },
    close: async () => {
      await cache.disconnect()
    },
  }
}

/** cacheable 2: a primary (memory) and secondary (Redis) store; `getOrSet` is its read-through. */
export function cacheable(setup: Setup): Contestant {
  const redis = redisKeyv(setup, 'cacheable')
  const cache =
    setup.tiers === 'tiered'
      ? new Cacheable({ primary: memoryKeyv(), secondary: redis, ttl: TTL_MS })
      : new Cacheable({ primary: redis, ttl: TTL_MS })
  return {
    name: 'cacheable',
    method: 'getOrSet',
    wrap: (key, loader) => cache.getOrSet(key, loader, { ttl: TTL_MS }),
    ready: async () => {
      await cache.get('ready-probe')
    },
    close: () => cache.disconnect(),
  }
}

/** The peers, in the order tables list them. */
export const peers = [bentocache, cacheManager, cacheable] as const
