import { responseCache } from './plugin.js'

export { NotCacheable } from './lookup.js'
export type { ResponseCacheOptions, RouteCacheConfig } from './types.js'
export type { WarmUrls } from './warm.js'
export { responseCache }
export default responseCache
