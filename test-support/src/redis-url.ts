/** The long-lived Redis shared by all test files; isolate data with `uniquePrefix`. */
export const sharedRedisUrl: string = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
