import rateLimit, { clientKey } from '@larder/rate-limit'
import { sharedRedis } from '@larder/test-support'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import t, { type Test } from 'tap'

// Issue 5, points 5 and 8: X-Forwarded-For counts only when trusted; IPv6 clients are keyed by their
// /64; requests to unknown routes (404) are limited too.

const shared = sharedRedis(t)
const client = shared.redis
const prefix = shared.prefix('rate-keys')

let apps = 0
async function app(t: Test, server: FastifyServerOptions = {}): Promise<FastifyInstance> {
  const fastify = Fastify(server)
  await fastify.register(rateLimit, {
    redis: client,
    prefix: `${prefix}${++apps}:`,
    timeout: 2_000,
    limit: 2,
  })
  fastify.get('/items', async () => 'items')
  t.teardown(() => fastify.close())
  return fastify
}

function get(fastify: FastifyInstance, remoteAddress: string, forwardedFor?: string, url = '/items') {
  const headers = forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor }
  return fastify.inject({ url, remoteAddress, headers }).then((r) => r.statusCode)
}

t.test('trustProxy off: X-Forwarded-For is ignored, so spoofing it does not bypass the limit', async (t) => {
  const fastify = await app(t)
  const codes = []
  for (let i = 0; i < 4; i++) codes.push(await get(fastify, '203.0.113.9', `198.51.100.${i}`))
  t.same(codes, [200, 200, 429, 429], 'every request counts against the socket address')
})

t.test('trustProxy on: each forwarded client has its own limit', async (t) => {
  const fastify = await app(t, { trustProxy: true })
  t.same(
    [await get(fastify, '10.0.0.1', '198.51.100.1'), await get(fastify, '10.0.0.1', '198.51.100.1')],
    [200, 200],
    'client 1 uses its 2',
  )
  t.equal(await get(fastify, '10.0.0.1', '198.51.100.1'), 429, 'client 1 is then refused')
  t.equal(await get(fastify, '10.0.0.1', '198.51.100.2'), 200, 'client 2 behind the same proxy is served')
})

t.test('trustProxy naming the proxy: a header from anyone else is not believed', async (t) => {
  const fastify = await app(t, { trustProxy: '10.0.0.1' })
  const spoofed = []
  for (let i = 0; i < 3; i++) spoofed.push(await get(fastify, '203.0.113.50', `198.51.100.${i}`))
  t.same(spoofed, [200, 200, 429], 'an untrusted peer is limited by its own address')
  t.equal(await get(fastify, '10.0.0.1', '198.51.100.77'), 200, 'the trusted proxy forwards a fresh client')
})

t.test('two IPv6 addresses in one /64 share a limit; another /64 does not', async (t) => {
  const fastify = await app(t)
  t.equal(await get(fastify, '2001:db8:1:2::1'), 200, 'first address in the /64')
  t.equal(await get(fastify, '2001:db8:1:2:ffff:eeee:dddd:cccc'), 200, 'second address in the /64')
  t.equal(await get(fastify, '2001:db8:1:2::abcd'), 429, 'a third address in the /64 is refused')
  t.equal(await get(fastify, '2001:db8:1:3::1'), 200, 'the neighbouring /64 has its own limit')
})

t.test('clientKey: the /64 of IPv6 written any way, IPv4 as is', async (t) => {
  t.equal(clientKey('2001:DB8:0001:0002:0:0:0:1'), '2001:db8:1:2::/64', 'full form, upper case')
  t.equal(clientKey('2001:db8:1:2::1'), '2001:db8:1:2::/64', 'compressed form')
  t.equal(clientKey('2001:db8::1'), '2001:db8:0:0::/64', 'zeros inside the /64')
  t.equal(clientKey('fe80::1%eth0'), 'fe80:0:0:0::/64', 'a zone id is dropped')
  t.equal(clientKey('::ffff:192.0.2.1'), '192.0.2.1', 'an IPv4-mapped address is its IPv4 address')
  t.equal(clientKey('::1'), '0:0:0:0::/64', 'loopback')
  t.equal(clientKey('64:ff9b::192.0.2.1'), '64:ff9b:0:0::/64', 'an embedded IPv4 tail')
  t.equal(clientKey('192.0.2.1'), '192.0.2.1', 'IPv4 unchanged')
})

t.test('requests to unknown routes are limited too, and count with the others', async (t) => {
  const fastify = await app(t)
  t.equal(await get(fastify, '192.0.2.10', undefined, '/nope-1'), 404, 'a 404 is answered')
  t.equal(await get(fastify, '192.0.2.10', undefined, '/nope-2'), 404, 'another 404')
  const scan = await fastify.inject({ url: '/nope-3', remoteAddress: '192.0.2.10' })
  t.equal(scan.statusCode, 429, 'a scanner of unknown URLs is refused after the limit')
  t.ok(scan.headers['retry-after'], 'with Retry-After')
  t.equal(await get(fastify, '192.0.2.10'), 429, 'and the 404s counted against real routes too')
})

t.test('a custom not-found handler is limited as well', async (t) => {
  const fastify = Fastify()
  await fastify.register(rateLimit, {
    redis: client,
    prefix: `${prefix}${++apps}:`,
    timeout: 2_000,
    limit: 1,
  })
  fastify.setNotFoundHandler((_request, reply) => reply.code(404).send({ missing: true }))
  t.teardown(() => fastify.close())
  t.equal((await fastify.inject('/a')).statusCode, 404, 'the custom 404')
  t.equal((await fastify.inject('/b')).statusCode, 429, 'then refused')
})
