export { SessionStoreUnavailableError } from './errors.js'
export { MemorySessionStore } from './memory-store.js'
export { RedisSessionStore } from './redis/redis-store.js'
export type {
  MemorySessionStoreOptions,
  RedisSessionStoreOptions,
  SessionData,
  SessionRecord,
  SessionStoreOptions,
  UserSessionStore,
} from './types.js'
