import { rateLimit } from './plugin.js'

export { clientKey } from './key.js'
export type { CounterState } from './stores/algorithms.js'
export { MemoryStore, type MemoryStoreOptions } from './stores/memory-store.js'
export { RedisStore, type RedisStoreOptions } from './stores/redis-store.js'
export type { Decision, LimitSpec, RateLimitStore } from './stores/store.js'
export type {
  Algorithm,
  AllowList,
  ExceededInfo,
  LimitOptions,
  RateLimitOptions,
  RateLimitStats,
  RouteRateLimitConfig,
} from './types.js'
export { rateLimit }
export default rateLimit
