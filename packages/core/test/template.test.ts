import { compileTemplate } from '@larder/core'
import t from 'tap'

t.test('templates fill placeholders from the request context', async (t) => {
  const tag = compileTemplate('product:{params.id}', ['params', 'query'])
  t.equal(tag({ params: { id: '42' } }), 'product:42', 'a param')
  t.equal(
    compileTemplate('{query.page}-{params.id}', ['params', 'query'])({
      params: { id: 7 },
      query: { page: 2 },
    }),
    '2-7',
    'two placeholders, numbers',
  )
  t.equal(compileTemplate('products', ['params'])({}), 'products', 'a literal')
  t.equal(
    compileTemplate('u:{response.user.id}', ['response'])({ response: { user: { id: 5 } } }),
    'u:5',
    'a nested path',
  )
})

t.test('a template that cannot be filled fails loudly', async (t) => {
  const tag = compileTemplate('product:{params.id}', ['params'])
  t.throws(
    () => tag({ params: {} }),
    { code: 'LARDER_TEMPLATE_UNRESOLVED', message: /\{params.id\}/ },
    'a missing param',
  )
  t.throws(() => tag({ params: { id: { a: 1 } } }), { code: 'LARDER_TEMPLATE_UNRESOLVED' }, 'an object')
  t.throws(
    () => tag({ params: { id: 'x'.repeat(10_000) } }),
    { code: 'LARDER_TEMPLATE_UNRESOLVED' },
    'a 10 kB string',
  )
  t.throws(
    () => compileTemplate('x:{headers.host}', ['params']),
    { code: 'LARDER_INVALID_TEMPLATE', message: /roots: params/ },
    'an unknown root is refused at compile time',
  )
  t.throws(
    () => compileTemplate('x:{params}', ['params']),
    { code: 'LARDER_INVALID_TEMPLATE' },
    'a bare root',
  )
  t.throws(() => compileTemplate('', ['params']), { code: 'LARDER_INVALID_TEMPLATE' }, 'an empty template')
})
