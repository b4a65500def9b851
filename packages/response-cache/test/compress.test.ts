import { randomBytes } from 'node:crypto'
import { get as httpGet } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib'
import compress from '@fastify/compress'
import responseCache, { type ResponseCacheOptions } from '@larder/response-cache'
import { cleanupPrefix, sharedRedisUrl, uniquePrefix, waitFor } from '@larder/test-support'
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'

// Issue 3, point 10: with @fastify/compress registered, a cached body is served compressed or plain
// according to each request's Accept-Encoding, never garbled and never with the wrong Content-Encoding.

/** A ~5 KB JSON body: above @fastify/compress's 1 KiB threshold, so it is compressed. */
const CATALOGUE = {
  items: Array.from({ length: 60 }, (_, i) => ({
    id: i + 1,
    name: `Product number ${i + 1}`,
    category: ['tea', 'coffee', 'cocoa'][i % 3],
    price: 3.5 + i,
  })),
}
const CATALOGUE_TEXT = JSON.stringify(CATALOGUE)

const DECODERS: Record<string, (body: Buffer) => Buffer> = {
  gzip: gunzipSync,
  br: brotliDecompressSync,
  deflate: inflateSync,
}

interface Setup {
  name: string
  /** Register @fastify/compress before the response cache (true) or after it. */
  compressFirst: boolean
  /** @fastify/compress's syncThreshold: 0 makes it compress through a stream. */
  syncThreshold?: number
  redis?: boolean
}

const SETUPS: Setup[] = [
  { name: 'compress registered before responseCache', compressFirst: true },
  { name: 'compress registered after responseCache', compressFirst: false },
  { name: 'compress (stream path) before responseCache', compressFirst: true, syncThreshold: 0 },
  { name: 'compress (stream path) after responseCache', compressFirst: false, syncThreshold: 0 },
  { name: 'compress before responseCache, Redis with l1: false', compressFirst: true, redis: true },
  { name: 'compress after responseCache, Redis with l1: false', compressFirst: false, redis: true },
]

async function app(t: Test, setup: Setup): Promise<{ fastify: FastifyInstance; calls(): number }> {
  let options: ResponseCacheOptions = {}
  if (setup.redis === true) {
    const prefix = uniquePrefix('rc-compress')
    const admin = new Redis(sharedRedisUrl)
    t.teardown(async () => {
      await cleanupPrefix(admin, prefix)
      await admin.quit()
    })
    options = { redis: sharedRedisUrl, prefix, l1: false }
  }
  const fastify = Fastify()
  const compressOptions = setup.syncThreshold === undefined ? {} : { syncThreshold: setup.syncThreshold }
  if (setup.compressFirst) await fastify.register(compress, compressOptions)
  await fastify.register(responseCache, options)
  if (!setup.compressFirst) await fastify.register(compress, compressOptions)
  t.teardown(() => fastify.close())
  let calls = 0
  fastify.get('/catalogue', { config: { cache: { ttl: '1m' } } }, async () => {
    calls++
    return CATALOGUE
  })
  await fastify.ready()
  return { fastify, calls: () => calls }
}

function get(fastify: FastifyInstance, encoding?: string): Promise<LightMyRequestResponse> {
  return fastify.inject({
    url: '/catalogue',
    headers: encoding === undefined ? {} : { 'accept-encoding': encoding },
  })
}

/** The response is `encoding`-compressed and decodes to the catalogue. */
function assertEncoded(t: Test, response: LightMyRequestResponse, encoding: string, what: string): void {
  t.equal(response.statusCode, 200, `${what}: status 200`)
  t.equal(response.headers['content-encoding'], encoding, `${what}: Content-Encoding ${encoding}`)
  t.match(String(response.headers.vary), /accept-encoding/i, `${what}: Vary names Accept-Encoding`)
  t.match(response.headers['content-type'], /^application\/json/, `${what}: JSON content-type`)
  const decode = DECODERS[encoding] as (body: Buffer) => Buffer
  let decoded = ''
  try {
    decoded = decode(response.rawPayload).toString('utf8')
  } catch (error) {
    t.fail(`${what}: the body does not decode as ${encoding} (${String(error)})`)
    return
  }
  t.equal(decoded, CATALOGUE_TEXT, `${what}: the body decodes to the JSON`)
  t.ok(response.rawPayload.length < CATALOGUE_TEXT.length, `${what}: the body is smaller than the JSON`)
  const length = response.headers['content-length']
  if (length !== undefined) {
    t.equal(Number(length), response.rawPayload.length, `${what}: Content-Length is the compressed length`)
  }
}

function assertPlain(t: Test, response: LightMyRequestResponse, what: string): void {
  t.equal(response.statusCode, 200, `${what}: status 200`)
  t.equal(response.headers['content-encoding'], undefined, `${what}: no Content-Encoding`)
  t.match(response.headers['content-type'], /^application\/json/, `${what}: JSON content-type`)
  t.equal(response.body, CATALOGUE_TEXT, `${what}: the body is the plain JSON`)
}

for (const setup of SETUPS) {
  t.test(setup.name, async (t) => {
    t.test('each encoding is stored and served as its own entry', async (t) => {
      const { fastify, calls } = await app(t, setup)
      for (const encoding of ['gzip', 'br', 'deflate']) {
        const miss = await get(fastify, encoding)
        t.equal(miss.headers['x-cache'], 'MISS', `${encoding}: the first request is a MISS`)
        assertEncoded(t, miss, encoding, `${encoding} MISS`)
        const hit = await get(fastify, encoding)
        t.equal(hit.headers['x-cache'], 'HIT', `${encoding}: the second request is a HIT`)
        assertEncoded(t, hit, encoding, `${encoding} HIT`)
      }
      const plainMiss = await get(fastify)
      t.equal(plainMiss.headers['x-cache'], 'MISS', 'without Accept-Encoding: a MISS (its own entry)')
      assertPlain(t, plainMiss, 'plain MISS')
      const plainHit = await get(fastify)
      t.equal(plainHit.headers['x-cache'], 'HIT', 'without Accept-Encoding again: a HIT')
      assertPlain(t, plainHit, 'plain HIT')
      t.equal(calls(), 4, 'the handler ran once per encoding (gzip, br, deflate, identity)')
    })

    t.test(
      'a plain entry is never served to a gzip client, nor a gzip entry to a plain client',
      async (t) => {
        const { fastify, calls } = await app(t, setup)
        assertPlain(t, await get(fastify), 'plain first (MISS)')
        assertEncoded(t, await get(fastify, 'gzip'), 'gzip', 'gzip after a cached plain entry')
        assertPlain(t, await get(fastify), 'plain after a cached gzip entry')
        assertPlain(t, await get(fastify, 'identity'), 'Accept-Encoding: identity')
        assertEncoded(t, await get(fastify, 'gzip, deflate, br'), 'br', 'a browser-like Accept-Encoding')
        assertEncoded(t, await get(fastify, 'br, gzip, deflate'), 'br', 'the same codings in another order')
        assertEncoded(t, await get(fastify, 'gzip'), 'gzip', 'gzip again (HIT)')
        t.ok(calls() <= 4, 'the handler did not run for the HITs')
      },
    )

    t.test('HEAD and 304 with compression', async (t) => {
      const { fastify, calls } = await app(t, setup)
      const gzip = await get(fastify, 'gzip')
      assertEncoded(t, gzip, 'gzip', 'gzip MISS')
      const head = await fastify.inject({
        method: 'HEAD',
        url: '/catalogue',
        headers: { 'accept-encoding': 'gzip' },
      })
      t.equal(head.statusCode, 200, 'HEAD: status 200')
      t.equal(head.headers['x-cache'], 'HIT', 'HEAD is served from the GET entry')
      t.equal(head.body, '', 'HEAD has no body')
      if (setup.compressFirst) {
        // The entry holds the gzipped response, headers included.
        t.equal(head.headers['content-encoding'], 'gzip', 'HEAD: the Content-Encoding the GET has')
      } else {
        // The entry holds the plain response; @fastify/compress does not compress HEAD responses
        // (without a cache either), so HEAD describes the plain body it would otherwise describe.
        t.equal(head.headers['content-encoding'], undefined, 'HEAD: no Content-Encoding, as without a cache')
        t.equal(
          head.headers['content-length'],
          String(CATALOGUE_TEXT.length),
          'HEAD: a Content-Length that matches the plain body (no encoding claimed)',
        )
      }
      t.equal(head.headers.etag, gzip.headers.etag, 'HEAD: the ETag the GET has')

      const notModified = await fastify.inject({
        url: '/catalogue',
        headers: { 'accept-encoding': 'gzip', 'if-none-match': String(gzip.headers.etag) },
      })
      t.equal(notModified.statusCode, 304, 'If-None-Match with the gzip entry’s ETag: 304')
      t.equal(notModified.rawPayload.length, 0, '304 has no body')
      t.equal(notModified.headers.etag, gzip.headers.etag, '304 carries the ETag')

      const plain = await get(fastify)
      assertPlain(t, plain, 'plain MISS')
      const plainNotModified = await fastify.inject({
        url: '/catalogue',
        headers: { 'if-none-match': String(plain.headers.etag) },
      })
      t.equal(plainNotModified.statusCode, 304, 'If-None-Match with the plain entry’s ETag: 304')
      t.equal(plainNotModified.rawPayload.length, 0, '304 has no body')
      t.equal(calls(), 2, 'the handler ran once per encoding, not for HEAD or 304')
    })
  })
}

t.test('a cached body above the threshold is compressed; below it stays plain', async (t) => {
  const fastify = Fastify()
  await fastify.register(compress)
  await fastify.register(responseCache)
  t.teardown(() => fastify.close())
  fastify.get('/tiny', { config: { cache: { ttl: '1m' } } }, async () => ({ ok: true }))
  await fastify.ready()
  for (const verdict of ['MISS', 'HIT']) {
    const response = await fastify.inject({ url: '/tiny', headers: { 'accept-encoding': 'gzip' } })
    t.equal(response.headers['x-cache'], verdict, `tiny body: ${verdict}`)
    t.equal(response.headers['content-encoding'], undefined, `tiny body (${verdict}): not compressed`)
    t.same(response.json(), { ok: true }, `tiny body (${verdict}): plain JSON`)
  }
})

for (const compressFirst of [true, false]) {
  const order = compressFirst ? 'before' : 'after'
  t.test(
    `compress ${order} responseCache: a background refresh stores what each encoding needs`,
    async (t) => {
      const fastify = Fastify()
      if (compressFirst) await fastify.register(compress)
      await fastify.register(responseCache)
      if (!compressFirst) await fastify.register(compress)
      t.teardown(() => fastify.close())
      let version = 0
      fastify.get(
        '/catalogue',
        { config: { cache: { ttl: '100ms', staleWhileRevalidate: '5s' } } },
        async () => ({ ...CATALOGUE, version: ++version }),
      )
      await fastify.ready()

      const decoded = (response: LightMyRequestResponse) =>
        JSON.parse(
          response.headers['content-encoding'] === 'gzip'
            ? gunzipSync(response.rawPayload).toString('utf8')
            : response.body,
        ) as { version: number }
      const gzipFirst = await get(fastify, 'gzip')
      const plainFirst = await get(fastify)
      t.equal(decoded(gzipFirst).version, 1, 'gzip: the first version')
      t.equal(decoded(plainFirst).version, 2, 'plain: its own entry')
      await sleep(150)

      for (const [encoding, first] of [
        ['gzip', gzipFirst],
        [undefined, plainFirst],
      ] as const) {
        const what = encoding ?? 'plain'
        const stale = await get(fastify, encoding)
        t.equal(stale.headers['x-cache'], 'STALE', `${what}: STALE after the TTL`)
        t.equal(stale.headers['content-encoding'], encoding, `${what}: STALE with the right Content-Encoding`)
        t.equal(decoded(stale).version, decoded(first).version, `${what}: STALE with the old body`)
        const fresh = await waitFor(async () => {
          const response = await get(fastify, encoding)
          if (response.headers['x-cache'] !== 'HIT') throw new Error(`X-Cache ${response.headers['x-cache']}`)
          return response
        })
        t.equal(
          fresh.headers['content-encoding'],
          encoding,
          `${what}: refreshed HIT with the right Content-Encoding`,
        )
        t.ok(
          decoded(fresh).version > decoded(first).version,
          `${what}: refreshed HIT decodes to the new body`,
        )
      }
    },
  )
}

t.test(
  'a handler stream compressed before the cache is not held whole: the response starts past maxEntryBytes',
  async (t) => {
    const prefix = uniquePrefix('rc-compress-stream')
    const fastify = Fastify()
    t.teardown(() => fastify.close())
    await fastify.register(compress, { global: true })
    await fastify.register(responseCache, { redis: sharedRedisUrl, prefix, maxEntryBytes: 64 * 1024 })
    let responded = (): void => {}
    const clientHasHeaders = new Promise<void>((resolve) => (responded = resolve))
    // Random bytes do not compress: 256 KiB of them exceed maxEntryBytes once gzipped. The stream then
    // waits for the client to see the response before it ends, which it can only do if the cache has
    // let the response start instead of reading the whole body first.
    fastify.get('/export', { config: { cache: { ttl: '1m' } } }, (_request, reply) => {
      reply.type('application/octet-stream')
      return Readable.from(
        (async function* () {
          for (let i = 0; i < 8; i++) yield randomBytes(32 * 1024)
          await clientHasHeaders
          yield Buffer.from('end')
        })(),
      )
    })
    await fastify.listen({ port: 0, host: '127.0.0.1' })
    const { port } = fastify.server.address() as AddressInfo
    const body = await new Promise<{ cache: string | undefined; bytes: number }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no response: the body was being read whole')), 5_000)
      httpGet(
        { host: '127.0.0.1', port, path: '/export', headers: { 'accept-encoding': 'gzip' } },
        (response) => {
          responded()
          const chunks: Buffer[] = []
          response.on('data', (chunk: Buffer) => chunks.push(chunk))
          response.on('end', () => {
            clearTimeout(timer)
            resolve({
              cache: response.headers['x-cache'] as string | undefined,
              bytes: gunzipSync(Buffer.concat(chunks)).length,
            })
          })
        },
      ).on('error', reject)
    })
    t.equal(body.cache, 'BYPASS', 'not stored (over maxEntryBytes)')
    t.equal(body.bytes, 8 * 32 * 1024 + 3, 'and every byte arrived, in order')
    const redis = new Redis(sharedRedisUrl)
    await cleanupPrefix(redis, prefix)
    await redis.quit()
  },
)
