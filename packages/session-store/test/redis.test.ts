import { RedisSessionStore } from '@larder/session-store'
import { cleanupPrefix, sharedRedisUrl, uniquePrefix } from '@larder/test-support'
import { Redis } from 'ioredis'
import t from 'tap'
import { sessionStoreConformance } from './conformance.js'

const quiet = { debug: () => {}, warn: () => {}, error: () => {} }
const client = new Redis(sharedRedisUrl)
const prefix = uniquePrefix('session-conformance')
t.teardown(async () => {
  await cleanupPrefix(client, prefix)
  client.disconnect()
})

let n = 0
sessionStoreConformance(
  t,
  async (_t, options) =>
    new RedisSessionStore({ client, prefix: `${prefix}${n++}:`, logger: quiet, ...options }),
)
