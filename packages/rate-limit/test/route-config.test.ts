import Fastify, { type FastifyRequest } from 'fastify'
import t from 'tap'
import { contextSymbol, routeConfigReader } from '../src/route-config.js'

t.test('the route config is read as routeOptions gives it, for routes and for 404s', async (t) => {
  const fastify = Fastify()
  t.teardown(() => fastify.close())
  const read = routeConfigReader()
  const seen: Array<[unknown, unknown]> = []
  const symbols = new Set<string>()
  fastify.addHook('onRequest', (request, _reply, done) => {
    symbols.add(typeof contextSymbol(request))
    seen.push([read(request), request.routeOptions.config])
    done()
  })
  fastify.get('/a', { config: { rateLimit: false } }, () => 'a')
  fastify.get('/b', () => 'b')
  for (const url of ['/a', '/b', '/nowhere', '/a']) await fastify.inject(url)
  t.equal(seen.length, 4, 'every request was seen')
  t.same(
    [...symbols],
    ['symbol'],
    "Fastify's request holds its route context: the reader needs no routeOptions",
  )
  for (const [i, [read, expected]] of seen.entries())
    t.equal(read, expected, `request ${i}: the same config object`)
  t.same(seen[0]?.[0], { rateLimit: false, url: '/a', method: 'GET' }, "/a's own config")
})

t.test('where the request holds no such context, routeOptions answers', async (t) => {
  const config = { url: '/x', method: 'GET' }
  const request = { routeOptions: { config }, [Symbol('other')]: { config: {} } } as unknown as FastifyRequest
  t.equal(contextSymbol(request), null, 'no symbol holds the route config')
  const read = routeConfigReader()
  t.equal(read(request), config, 'the first request is read through routeOptions')
  t.equal(read(request), config, 'and so is the next')
})
