import invalidation from '@larder/invalidation'
import responseCache from '@larder/response-cache'
import Fastify from 'fastify'
import t from 'tap'

t.test('a PUT invalidates the tag of the cached GET: the next GET is a MISS with the new data', async (t) => {
  const fastify = Fastify()
  await fastify.register(responseCache)
  await fastify.register(invalidation)
  t.teardown(() => fastify.close())
  const products = new Map([['1', { id: 1, name: 'Tea' }]])
  fastify.get(
    '/products/:id',
    { config: { cache: { ttl: '10m', tags: ['product:{params.id}'] } } },
    async (request) => products.get((request.params as { id: string }).id),
  )
  fastify.put(
    '/products/:id',
    { config: { invalidate: { tags: ['product:{params.id}'] } } },
    async (request) => {
      const { id } = request.params as { id: string }
      products.set(id, { id: Number(id), ...(request.body as { name: string }) })
      return products.get(id)
    },
  )
  t.equal((await fastify.inject('/products/1')).headers['x-cache'], 'MISS', 'first GET')
  t.equal((await fastify.inject('/products/1')).headers['x-cache'], 'HIT', 'cached')
  const put = await fastify.inject({ method: 'PUT', url: '/products/1', payload: { name: 'Green tea' } })
  t.equal(put.statusCode, 200, 'the write succeeds')
  const after = await fastify.inject('/products/1')
  t.equal(after.headers['x-cache'], 'MISS', 'the next GET is a MISS')
  t.equal(after.json().name, 'Green tea', 'with the new data')
})
