import { responseCache } from './plugin.js'

export { NotCacheable } from './lookup.js'
export type { ResponseCacheOptions, RouteCacheConfig } from './types.js'
export { responseCache }
export default responseCache
