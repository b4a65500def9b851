// Test infrastructure, not product code: kept out of coverage so it never counts for or against the packages
// whose tests import it (tap would otherwise demand 100% of it from every package's test run).

/** The long-lived Redis shared by all test files; isolate data with `uniquePrefix`. */
export const sharedRedisUrl: string = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
