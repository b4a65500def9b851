import { RedisSessionStore } from '@larder/session-store'
import { sharedRedis } from '@larder/test-support'
import t from 'tap'
import { sessionStoreConformance } from './conformance.js'

const quiet = { debug: () => {}, warn: () => {}, error: () => {} }
const shared = sharedRedis(t)
const client = shared.redis
const prefix = shared.prefix('session-conformance')

let n = 0
sessionStoreConformance(
  t,
  async (_t, options) =>
    new RedisSessionStore({ client, prefix: `${prefix}${n++}:`, logger: quiet, ...options }),
)
