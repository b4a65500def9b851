import diagnostics from 'node:diagnostics_channel'
import { createCache } from '@larder/core'
import t from 'tap'

t.test('events are published on larder:cache:* channels for metrics and tracing', async (t) => {
  const seen: Array<{ channel: string; message: Record<string, unknown> }> = []
  const names = ['hit', 'miss', 'stale', 'load', 'coalesce', 'invalidate']
  const listeners = names.map((name) => {
    const channel = `larder:cache:${name}`
    const listener = (message: unknown) =>
      seen.push({ channel: name, message: message as Record<string, unknown> })
    diagnostics.subscribe(channel, listener)
    return () => diagnostics.unsubscribe(channel, listener)
  })
  t.teardown(() => {
    for (const off of listeners) off()
  })
  const cache = createCache({ prefix: 'diag:' })
  t.teardown(() => cache.close())

  await Promise.all([cache.wrap('k', async () => 1), cache.wrap('k', async () => 1)])
  await cache.wrap('k', async () => 1)
  await cache.invalidateTags(['products'])
  const kinds = seen.map((event) => event.channel)
  t.ok(kinds.includes('miss'), 'a miss')
  t.ok(kinds.includes('load'), 'a load')
  t.ok(kinds.includes('coalesce'), 'a coalesced call')
  t.ok(kinds.includes('hit'), 'a hit')
  t.ok(kinds.includes('invalidate'), 'an invalidation')
  const load = seen.find((event) => event.channel === 'load')?.message
  t.equal(load?.cache, 'diag:', 'messages name the cache by its prefix')
  t.equal(load?.key, 'k', 'and the key')
  t.type(load?.durationMs, 'number', 'loads carry their duration')
})
