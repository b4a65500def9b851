import invalidation, { type InvalidationOptions, type RouteInvalidateConfig } from '@larder/invalidation'
import responseCache from '@larder/response-cache'
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'

// Issue 4: mistakes in how the plugin is registered or configured fail at registration, with a message
// that says what is wrong, never as a silent no-op.

async function withResponseCache(t: Test): Promise<FastifyInstance> {
  const fastify = Fastify()
  t.teardown(() => fastify.close())
  await fastify.register(responseCache)
  await fastify.register(invalidation)
  return fastify
}

t.test('registering without @larder/response-cache fails and names the missing plugin', async (t) => {
  const fastify = Fastify()
  t.teardown(() => fastify.close())
  fastify.register(invalidation)
  await t.rejects(
    async () => {
      await fastify.ready()
    },
    { message: /'@larder\/response-cache'.*'@larder\/invalidation'/ },
    'the dependency check of fastify-plugin names both plugins',
  )
})

t.test('registered after @larder/response-cache it decorates fastify.invalidate', async (t) => {
  const fastify = await withResponseCache(t)
  await fastify.ready()
  t.type(fastify.invalidate, 'function', 'fastify.invalidate is there')
  t.same(
    fastify.invalidation.stats(),
    { invalidations: 0, failures: 0, pending: 0, abandoned: 0 },
    'and stats start at zero',
  )
})

t.test('plugin options are checked', async (t) => {
  const cases: Array<{ options: unknown; error: { code: string; message: RegExp }; what: string }> = [
    {
      options: { retries: 3 },
      error: { code: 'LARDER_UNKNOWN_OPTION', message: /unknown option 'retries'/ },
      what: 'an unknown option',
    },
    {
      options: { admin: { path: '/purge' } },
      error: { code: 'LARDER_INVALID_OPTION', message: /admin\.authorize: expected a function/ },
      what: 'admin without authorize',
    },
    {
      options: { retry: { minDelay: 'soon' } },
      error: { code: 'LARDER_INVALID_DURATION', message: /retry\.minDelay/ },
      what: 'a retry delay that is not a duration',
    },
  ]
  for (const { options, error, what } of cases) {
    const fastify = Fastify()
    t.teardown(() => fastify.close())
    await fastify.register(responseCache)
    fastify.register(invalidation, options as InvalidationOptions)
    await t.rejects(async () => void (await fastify.ready()), error, `${what}: ${error.code}`)
  }
})

t.test('an invalid config.invalidate fails when the route is registered', async (t) => {
  const cases: Array<{ config: unknown; error: { code: string; message: RegExp }; what: string }> = [
    {
      config: { tag: ['product:{params.id}'] },
      error: {
        code: 'LARDER_UNKNOWN_OPTION',
        message: /config\.invalidate of \/things\/:id: unknown option 'tag'/,
      },
      what: 'an unknown key',
    },
    {
      config: { tags: ['product:{headers.x}'] },
      error: {
        code: 'LARDER_INVALID_TEMPLATE',
        message: /roots: params, query, body, response.*\{headers\.x\}/,
      },
      what: 'a template with the unknown root {headers.x}',
    },
    {
      config: { tags: ['product:{id}'] },
      error: { code: 'LARDER_INVALID_TEMPLATE', message: /\{id\}/ },
      what: 'a placeholder without a root',
    },
    {
      config: { tags: 'product:{params.id}' },
      error: {
        code: 'LARDER_INVALID_OPTION',
        message: /config\.invalidate\.tags of \/things\/:id: expected/,
      },
      what: 'a string instead of a list',
    },
    {
      config: { patterns: [''] },
      error: { code: 'LARDER_INVALID_OPTION', message: /config\.invalidate\.patterns/ },
      what: 'an empty template',
    },
    {
      config: { tags: ['all products'] },
      error: { code: 'LARDER_INVALID_TARGET', message: /config\.invalidate\.tags.*"all products"/ },
      what: 'a literal tag the engine would refuse',
    },
    {
      config: 'products',
      error: {
        code: 'LARDER_INVALID_OPTION',
        message: /config\.invalidate of \/things\/:id: expected an object/,
      },
      what: 'not an object',
    },
  ]
  for (const { config, error, what } of cases) {
    const fastify = await withResponseCache(t)
    t.throws(
      () =>
        fastify.put('/things/:id', { config: { invalidate: config as RouteInvalidateConfig } }, async () => ({
          ok: true,
        })),
      error,
      `${what}: ${error.code}`,
    )
  }
})

t.test('routes without config.invalidate are left alone', async (t) => {
  const fastify = await withResponseCache(t)
  let calls = 0
  fastify.put('/plain', async () => ({ calls: ++calls }))
  const response = await fastify.inject({ method: 'PUT', url: '/plain', payload: { tag: '*' } })
  t.equal(response.statusCode, 200, 'the route answers')
  t.equal(calls, 1, 'its handler ran')
  t.equal(fastify.invalidation.stats().invalidations, 0, 'and nothing was invalidated')
})
