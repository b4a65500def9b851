import responseCache, { type ResponseCacheOptions } from '@larder/response-cache'
import { cleanupPrefix, sharedRedisUrl, uniquePrefix } from '@larder/test-support'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'

// Issue 3, point 12: `fastify.cache.wrap` inside a handler caches a query result; the tags declared
// there are invalidated by `fastify.cache.invalidateTags`.

interface Product {
  id: number
  name: string
}

/** A stand-in database that counts its queries. */
class Database {
  queries = 0
  products: Product[] = [
    { id: 1, name: 'Tea' },
    { id: 2, name: 'Coffee' },
  ]

  async listProducts(): Promise<Product[]> {
    this.queries++
    return this.products.map((product) => ({ ...product }))
  }
}

interface Tier {
  name: string
  options(prefix: string): ResponseCacheOptions
}

/** Cleans `prefix` out of the shared Redis when the test ends; returns a client to look into it. */
function sharedRedis(t: Test, prefix: string): Redis {
  const admin = new Redis(sharedRedisUrl)
  t.teardown(async () => {
    await cleanupPrefix(admin, prefix)
    await admin.quit()
  })
  return admin
}

const TIERS: Tier[] = [
  { name: 'L1 only', options: () => ({}) },
  { name: 'Redis + L1', options: (prefix) => ({ redis: sharedRedisUrl, prefix }) },
  { name: 'Redis, l1: false', options: (prefix) => ({ redis: sharedRedisUrl, prefix, l1: false }) },
]

/** Routes that use the query cache: none of them has `config.cache`. */
async function app(t: Test, options: ResponseCacheOptions, db: Database): Promise<FastifyInstance> {
  const fastify = Fastify()
  await fastify.register(responseCache, options)
  t.teardown(() => fastify.close())
  fastify.get('/products', async () => {
    const items = await fastify.cache.wrap('products:list', () => db.listProducts(), {
      ttl: '1m',
      tags: ['products'],
    })
    return { items }
  })
  fastify.post('/products', async (request, reply) => {
    const { name } = request.body as { name: string }
    const product = { id: db.products.length + 1, name }
    db.products.push(product)
    await fastify.cache.invalidateTags(['products'])
    return reply.code(201).send(product)
  })
  await fastify.ready()
  return fastify
}

for (const tier of TIERS) {
  t.test(`${tier.name}: fastify.cache.wrap caches a query; invalidateTags drops it`, async (t) => {
    const prefix = uniquePrefix('rc-query')
    const admin = sharedRedis(t, prefix)
    const db = new Database()
    const fastify = await app(t, tier.options(prefix), db)

    const first = await fastify.inject('/products')
    t.equal(first.statusCode, 200, 'the first request answers 200')
    t.same(first.json(), { items: db.products }, 'with the products from the database')
    t.equal(db.queries, 1, 'the first request queried the database')
    t.equal(first.headers['x-cache'], undefined, 'a route without config.cache gets no X-Cache header')

    const second = await fastify.inject('/products')
    t.equal(second.body, first.body, 'the second request gets the same products')
    t.equal(db.queries, 1, 'the second request did not query the database (the loader did not run)')

    if (tier.name !== 'L1 only') {
      const stored = await admin.exists(`${prefix}products:list`)
      t.equal(stored, 1, 'the query result is stored in Redis under the prefix')
    }

    const created = await fastify.inject({ method: 'POST', url: '/products', payload: { name: 'Cocoa' } })
    t.equal(created.statusCode, 201, 'creating a product succeeds')
    const third = await fastify.inject('/products')
    t.equal(db.queries, 2, 'after invalidateTags(["products"]) the loader ran again')
    t.same(
      third.json<{ items: Product[] }>().items.map((product) => product.name),
      ['Tea', 'Coffee', 'Cocoa'],
      'and the response has the new product',
    )
    await fastify.inject('/products')
    t.equal(db.queries, 2, 'the reloaded result is cached again')

    await fastify.cache.invalidateTags(['users'])
    await fastify.inject('/products')
    t.equal(db.queries, 2, 'invalidating another tag leaves the query cached')
  })
}

t.test('two instances sharing Redis: the query is loaded once, an invalidation reaches both', async (t) => {
  const prefix = uniquePrefix('rc-query-two')
  sharedRedis(t, prefix)
  const db = new Database()
  const options = { redis: sharedRedisUrl, prefix }
  const first = await app(t, options, db)
  const second = await app(t, options, db)
  await first.cache.ready()
  await second.cache.ready()

  await first.inject('/products')
  await second.inject('/products')
  t.equal(db.queries, 1, 'the second instance got the result from Redis, not the database')
  await first.inject('/products')
  await second.inject('/products')
  t.equal(db.queries, 1, 'both instances then answer from their cache')

  const created = await first.inject({ method: 'POST', url: '/products', payload: { name: 'Cocoa' } })
  t.equal(created.statusCode, 201, 'the first instance creates a product')
  const fromSecond = await second.inject('/products')
  t.same(
    fromSecond.json<{ items: Product[] }>().items.map((product) => product.name),
    ['Tea', 'Coffee', 'Cocoa'],
    "the second instance's next read has the new product (its L1 copy was dropped)",
  )
  t.equal(db.queries, 2, 'the query ran once more')
  await first.inject('/products')
  t.equal(db.queries, 2, 'the first instance reads the reloaded result from Redis')
})

t.test('a query tag invalidates the cached routes that carry it too', async (t) => {
  const db = new Database()
  const fastify = Fastify()
  await fastify.register(responseCache)
  t.teardown(() => fastify.close())
  let renders = 0
  fastify.get('/dashboard', { config: { cache: { ttl: '1h', tags: ['products'] } } }, async () => {
    renders++
    const items = await fastify.cache.wrap('products:list', () => db.listProducts(), {
      ttl: '1m',
      tags: ['products'],
    })
    return { count: items.length }
  })
  await fastify.ready()

  t.same((await fastify.inject('/dashboard')).json(), { count: 2 }, 'the first render counts 2 products')
  t.equal((await fastify.inject('/dashboard')).headers['x-cache'], 'HIT', 'the page is then a HIT')
  db.products.push({ id: 3, name: 'Cocoa' })
  await fastify.cache.invalidateTags(['products'])
  const after = await fastify.inject('/dashboard')
  t.equal(after.headers['x-cache'], 'MISS', 'after invalidateTags the page is rendered again')
  t.same(after.json(), { count: 3 }, 'from a fresh query')
  t.equal(renders, 2, 'the handler ran twice')
  t.equal(db.queries, 2, 'the query ran twice')
})
