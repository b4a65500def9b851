import responseCache, { type ResponseCacheOptions } from '@larder/response-cache'
import { waitFor } from '@larder/test-support'
import Fastify from 'fastify'
import t from 'tap'

/** The plugin first, then the route it caches (as the README says). */
async function app(calls: Map<string, number>, options: ResponseCacheOptions, warnings?: unknown[]) {
  const fastify = Fastify()
  if (warnings !== undefined) {
    fastify.log.warn = ((obj: unknown) => void warnings.push(obj)) as typeof fastify.log.warn
  }
  await fastify.register(responseCache, options)
  fastify.get('/products/:id', { config: { cache: { ttl: '10m' } } }, async (request) => {
    const id = (request.params as { id: string }).id
    calls.set(id, (calls.get(id) ?? 0) + 1)
    return { id }
  })
  return fastify
}

t.test('the warm URLs are requested once after ready: the first visitors get HITs', async (t) => {
  const calls = new Map<string, number>()
  const fastify = await app(calls, { warm: ['/products/1', '/products/2', '/products/3'] })
  t.teardown(() => fastify.close())
  await fastify.ready()
  await waitFor(() => calls.size === 3, { message: 'warming never ran' })
  for (const id of ['1', '2', '3']) {
    const response = await fastify.inject(`/products/${id}`)
    t.equal(response.headers['x-cache'], 'HIT', `/products/${id} is a HIT for the first visitor`)
    t.equal(response.json().id, id, 'with the right body')
  }
  t.same([...calls.values()], [1, 1, 1], 'each handler ran once')
})

t.test('warm may be a function; failing URLs are logged, the others warmed', async (t) => {
  const calls = new Map<string, number>()
  const warnings: unknown[] = []
  const fastify = await app(calls, { warm: async () => ['/products/9', '/missing'] }, warnings)
  t.teardown(() => fastify.close())
  await fastify.ready()
  await waitFor(() => warnings.length > 0, { message: 'no warning for /missing' })
  t.match(warnings[0], { failed: [{ url: '/missing', status: 404 }] }, 'the 404 is logged')
  t.equal((await fastify.inject('/products/9')).headers['x-cache'], 'HIT', 'the good URL was warmed')
  t.equal(calls.get('9'), 1, 'its handler ran once')
})

t.test('warm is validated at registration', async (t) => {
  for (const warm of [['products/1'], 'nope', [1]]) {
    const fastify = Fastify()
    t.teardown(() => fastify.close())
    await t.rejects(
      async () => {
        await fastify.register(responseCache, { warm: warm as string[] })
      },
      { code: 'LARDER_INVALID_OPTION', message: /warm/ },
      `${JSON.stringify(warm)} is refused`,
    )
  }
  const fastify = Fastify()
  const warnings: unknown[] = []
  fastify.log.warn = ((obj: unknown) => void warnings.push(obj)) as typeof fastify.log.warn
  await fastify.register(responseCache, { warm: async () => 'nope' as unknown as string[] })
  t.teardown(() => fastify.close())
  await fastify.ready()
  await waitFor(() => warnings.length > 0, { message: 'a bad list is logged' })
  t.match(
    warnings[0],
    { err: { code: 'LARDER_INVALID_OPTION' } },
    'a function returning a non-list is logged',
  )
})
