export { parseBytes } from './bytes.js'
export { Cache, type CacheEntryInfo, createCache } from './cache.js'
export { type Duration, parseDuration } from './duration.js'
export { LarderError } from './errors.js'
export { globToRegExp } from './keys.js'
export { validateTags } from './options.js'
export { type GuardOptions, RedisGuard } from './redis/guard.js'
export { channels } from './stats.js'
export { compileTemplate, type Template } from './template.js'
export type {
  CacheOptions,
  CacheStats,
  CacheValue,
  EntryOptions,
  L1Options,
  Loader,
  LoaderContext,
  Logger,
  RedisClient,
} from './types.js'
export type { WarmEntry, WarmOptions, WarmReport } from './warm.js'
export {
  createWriteBehind,
  type WriteBehind,
  type WriteBehindItem,
  type WriteBehindOptions,
  type WriteBehindStats,
  writeBehindChannels,
} from './write-behind.js'
export { type Persist, writeThroughChannel } from './write-through.js'
