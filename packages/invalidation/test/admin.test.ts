import t from 'tap'
import { cached, productApp, Store, testPrefix } from './fixtures/app.js'

// Issue 4: the admin route `DELETE /_larder/cache?tag=...` is opt-in and guarded by the user's function.

const TOKEN = 'Bearer s3cret'

t.test('the admin route is off by default', async (t) => {
  const a = await productApp(t, { store: new Store(), prefix: testPrefix(t, 'inv-admin-off') })
  await a.inject('/products')
  const response = await a.inject({ method: 'DELETE', url: '/_larder/cache?tag=products' })
  t.equal(response.statusCode, 404, 'DELETE /_larder/cache is a 404')
  t.equal((await a.inject('/products')).headers['x-cache'], 'HIT', 'and nothing was invalidated')
})

t.test('the admin route purges tags, keys and patterns for callers authorize accepts', async (t) => {
  const prefix = testPrefix(t, 'inv-admin')
  const store = new Store()
  const asked: string[] = []
  const options = {
    store,
    prefix,
    invalidation: {
      admin: {
        // Async on purpose: a token check may look something up.
        authorize: async (request: { headers: { authorization?: string } }) => {
          asked.push(request.headers.authorization ?? '')
          return request.headers.authorization === TOKEN
        },
      },
    },
  }
  const a = await productApp(t, options)
  const b = await productApp(t, options)
  await a.inject('/products')
  await a.inject('/products/1')
  await a.cache.set('report:daily', { total: 1 }, { ttl: '10m' })
  await a.cache.set('user:5:feed', ['a'], { ttl: '10m' })
  await a.cache.set('user:55:feed', ['b'], { ttl: '10m' })
  await cached(t, b, '/products', 'B: the list is cached')

  for (const headers of [{}, { authorization: 'Bearer wrong' }]) {
    const refused = await a.inject({ method: 'DELETE', url: '/_larder/cache?tag=products', headers })
    t.equal(refused.statusCode, 403, `authorize returned false (${JSON.stringify(headers)}): 403`)
    t.match(refused.json(), { statusCode: 403, message: /not allowed/ }, 'with a message')
  }
  t.equal((await b.inject('/products')).headers['x-cache'], 'HIT', 'a refused call invalidated nothing')
  t.same(asked, ['', 'Bearer wrong'], 'authorize saw each request')

  const noTarget = await a.inject({
    method: 'DELETE',
    url: '/_larder/cache',
    headers: { authorization: TOKEN },
  })
  t.equal(noTarget.statusCode, 400, 'no tag, key or pattern: 400')
  t.match(
    noTarget.json().message,
    /at least one tag, key or pattern/,
    'with a message saying what is missing',
  )

  const badTag = await a.inject({
    method: 'DELETE',
    url: '/_larder/cache?tag=all%20products',
    headers: { authorization: TOKEN },
  })
  t.equal(badTag.statusCode, 400, 'a tag the engine refuses: 400')
  t.match(badTag.json().message, /1-256 characters without whitespace/, 'with the rule it broke')
  t.equal(a.invalidation.stats().pending, 0, 'a refused tag is not queued for retry')

  const purge = await a.inject({
    method: 'DELETE',
    url: '/_larder/cache?tag=products&tag=product:1',
    headers: { authorization: TOKEN },
  })
  t.equal(purge.statusCode, 204, 'authorized: 204')
  t.equal(purge.body, '', 'with no body')
  t.equal((await b.inject('/products')).headers['x-cache'], 'MISS', 'B: the tag products was invalidated')
  t.equal((await b.inject('/products/1')).headers['x-cache'], 'MISS', 'B: so was product:1 (repeated ?tag=)')

  const keysAndPatterns = await a.inject({
    method: 'DELETE',
    url: `/_larder/cache?key=report:daily&pattern=${encodeURIComponent('user:5:*')}`,
    headers: { authorization: TOKEN },
  })
  t.equal(keysAndPatterns.statusCode, 204, 'keys and patterns: 204')
  t.equal(await b.cache.get('report:daily'), undefined, 'the key is gone')
  t.equal(await b.cache.get('user:5:feed'), undefined, 'the pattern removed user:5:*')
  t.same(await b.cache.get('user:55:feed'), ['b'], 'and left user:55:*')
})

t.test('the admin route can live at another path', async (t) => {
  const a = await productApp(t, {
    store: new Store(),
    prefix: testPrefix(t, 'inv-admin-path'),
    invalidation: { admin: { path: '/ops/cache', authorize: () => true } },
  })
  await a.inject('/products')
  t.equal(
    (await a.inject({ method: 'DELETE', url: '/_larder/cache?tag=products' })).statusCode,
    404,
    'not at the default path',
  )
  t.equal(
    (await a.inject({ method: 'DELETE', url: '/ops/cache?tag=products' })).statusCode,
    204,
    'at its own: 204',
  )
  t.equal((await a.inject('/products')).headers['x-cache'], 'MISS', 'and the tag was invalidated')
})
