import responseCache from '@larder/response-cache'
import Fastify from 'fastify'
import t, { type Test } from 'tap'

async function app(t: Test) {
  const fastify = Fastify()
  await fastify.register(responseCache)
  t.teardown(() => fastify.close())
  return fastify
}

t.test('first GET is a MISS, the second a HIT served without the handler', async (t) => {
  const fastify = await app(t)
  let calls = 0
  fastify.get(
    '/products/:id',
    { config: { cache: { ttl: '10m', tags: ['product:{params.id}'] } } },
    async (request) => {
      calls++
      return { id: Number((request.params as { id: string }).id), name: 'Tea', calls }
    },
  )
  const first = await fastify.inject('/products/1')
  t.equal(first.statusCode, 200, 'status')
  t.equal(first.headers['x-cache'], 'MISS', 'first is a MISS')
  const second = await fastify.inject('/products/1')
  t.equal(second.headers['x-cache'], 'HIT', 'second is a HIT')
  t.equal(second.body, first.body, 'byte-identical body')
  t.equal(second.headers['content-type'], first.headers['content-type'], 'same content-type')
  t.equal(second.headers.etag, first.headers.etag, 'same etag')
  t.ok(second.headers.age !== undefined, 'Age header')
  t.equal(calls, 1, 'the handler ran once')
  const head = await fastify.inject({ method: 'HEAD', url: '/products/1' })
  t.equal(head.headers['x-cache'], 'HIT', 'HEAD served from the GET entry')
  t.equal(head.body, '', 'HEAD has no body')
  const conditional = await fastify.inject({
    url: '/products/1',
    headers: { 'if-none-match': first.headers.etag as string },
  })
  t.equal(conditional.statusCode, 304, '304 for a matching ETag')
  t.equal(conditional.body, '', '304 has no body')
  t.equal(calls, 1, 'the handler still ran once')
  t.match(
    first.headers['cache-control'],
    /public, max-age=600/,
    'Cache-Control tells downstream caches the TTL',
  )
})

t.test("a HIT still runs the app's onSend and onResponse hooks", async (t) => {
  const fastify = await app(t)
  const seen = { onSend: 0, onResponse: 0, routeOnResponse: 0 }
  fastify.addHook('onSend', async (_request, reply, payload) => {
    seen.onSend++
    reply.header('x-app', 'stamped')
    return payload
  })
  fastify.addHook('onResponse', async () => {
    seen.onResponse++
  })
  let calls = 0
  fastify.get(
    '/stamped',
    {
      config: { cache: { ttl: '10m' } },
      onResponse: async () => {
        seen.routeOnResponse++
      },
    },
    async () => ({ calls: ++calls }),
  )
  const miss = await fastify.inject('/stamped')
  const hit = await fastify.inject('/stamped')
  t.equal(miss.headers['x-cache'], 'MISS', 'first is a MISS')
  t.equal(hit.headers['x-cache'], 'HIT', 'second is a HIT')
  t.equal(calls, 1, 'the handler ran once')
  t.equal(hit.headers['x-app'], 'stamped', "the HIT carries the app's onSend header")
  t.same(seen, { onSend: 2, onResponse: 2, routeOnResponse: 2 }, 'every hook ran for both responses')
})
