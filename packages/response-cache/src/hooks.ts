import { randomUUID } from 'node:crypto'
import { Readable } from 'node:stream'
import type { Cache, CacheEntryInfo, LoaderContext } from '@larder/core'
import type {
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  onRequestHookHandler,
  onSendHookHandler,
} from 'fastify'
import { etagMatches, refusal, storableHeaders, withVary } from './http.js'
import { type Lead, type Lookup, lookup, NotCacheable } from './lookup.js'
import type { CompiledRoute } from './route.js'
import { decodeStored, encodeStored, type StoredResponse, strongEtag } from './stored-response.js'

/** What a cached route decided for one request. */
type State = { mode: 'served' } | { mode: 'bypass'; reason: string } | LeadState
type LeadState = {
  mode: 'lead'
  lead: Lead
  tags: readonly string[]
  done: boolean
  /** Headers set before the cache's hook (a request id, a CORS origin): set again on every hit, never stored. */
  hookHeaders: readonly string[]
}

export const kState = Symbol('larder.responseCache')
const SERVED: State = { mode: 'served' }
const NO_TAGS: readonly string[] = []
type WithState = FastifyRequest & { [kState]: State | null }

/** Background refreshes replay the request through `inject`, carrying one of these ids. */
const REFRESH_HEADER = 'x-larder-refresh'

export interface Refresh {
  commit(value: Buffer, ttlMs?: number): void
  abort(reason: Error): void
}

export interface HookContext {
  fastify: FastifyInstance
  cache: Cache
  maxEntryBytes: number
  /** Refreshes in flight, shared by all routes (a HEAD request's refresh replays the GET route). */
  refreshes: Map<string, Refresh>
}

/** The hooks one cached route gets; routes without `config.cache` get none. */
export function routeHooks(route: CompiledRoute, context: HookContext) {
  const { cache, maxEntryBytes, refreshes } = context

  /** Replays the request in the background (stale-while-revalidate) so no client waits for it. */
  const refreshVia = (url: string, headers: FastifyRequest['headers']) => async (loader: LoaderContext) => {
    const id = randomUUID()
    const done = new Promise<Buffer>((commit, abort) =>
      refreshes.set(id, {
        commit(value, ttlMs) {
          if (ttlMs !== undefined) loader.setTtl(ttlMs)
          commit(value)
        },
        abort,
      }),
    )
    try {
      const replay = { ...headers, [REFRESH_HEADER]: id }
      delete replay['if-none-match']
      delete replay['if-modified-since']
      await context.fastify.inject({ method: 'GET', url, headers: replay })
      refreshes.get(id)?.abort(new NotCacheable('refresh did not reach the route'))
      return await done
    } finally {
      refreshes.delete(id)
    }
  }

  /**
   * A fresh entry in this process's memory is answered synchronously: no promise, no Redis. Returns
   * true when it answered; otherwise the key it built, if it got that far, so `decide` reuses it.
   */
  function answerFromMemory(request: FastifyRequest, reply: FastifyReply): true | string | undefined {
    if (request.method !== 'GET' && request.method !== 'HEAD') return undefined
    if (request.headers[REFRESH_HEADER] !== undefined) return undefined
    if (route.refusesCredentials(request.headers)) return undefined
    let key: string | undefined
    try {
      key = route.key(request)
    } catch {
      return undefined
    }
    if (key === undefined) return undefined
    const info = cache.peek<Buffer>(key)
    const stored = info === undefined ? undefined : decodeStored(info.value)
    if (info === undefined || stored === undefined) return key
    let tags = NO_TAGS
    if (route.cdn) {
      try {
        tags = route.tags(request)
      } catch {
        // A tag that cannot be built here is a bypass, decided (and logged) by the full path.
        return key
      }
    }
    ;(request as WithState)[kState] = SERVED
    serve(request, reply, stored, info, tags)
    return true
  }

  const onRequest: onRequestHookHandler = function larderCacheLookup(request, reply, done) {
    const known = answerFromMemory(request, reply)
    if (known === true) return
    decide(request, reply, known).then((served) => {
      if (!served) done()
    }, done)
  }

  /**
   * Resolves true when it answered the request itself (a hit), false to let the handler run.
   * `knownKey`: the key `answerFromMemory` already built for this request.
   */
  async function decide(request: FastifyRequest, reply: FastifyReply, knownKey?: string): Promise<boolean> {
    const req = request as WithState
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      req[kState] = { mode: 'bypass', reason: 'method' }
      return false
    }
    const refreshId = request.headers[REFRESH_HEADER]
    const refresh = typeof refreshId === 'string' ? refreshes.get(refreshId) : undefined
    if (refresh !== undefined) {
      refreshes.delete(refreshId as string)
      const tags = route.tags(request)
      const lead: Lead = { commit: refresh.commit, abort: refresh.abort, result: Promise.reject() }
      lead.result.catch(() => {})
      hold(req, reply, lead, tags)
      return false
    }
    if (route.refusesCredentials(request.headers)) {
      req[kState] = { mode: 'bypass', reason: 'credentials' }
      return false
    }
    let key: string | undefined
    let tags: readonly string[]
    try {
      key = knownKey ?? route.key(request)
      tags = route.tags(request)
    } catch (error) {
      request.log.warn({ err: error }, 'larder: cache key or tags could not be built, request not cached')
      req[kState] = { mode: 'bypass', reason: 'key' }
      return false
    }
    if (key === undefined) {
      req[kState] = { mode: 'bypass', reason: 'anonymous' }
      return false
    }
    let found: Lookup | undefined
    for (let attempt = 0; found === undefined; attempt++) {
      try {
        found = await lookup(cache, key, route.entryOptions(tags), refreshVia(request.url, request.headers))
      } catch (error) {
        const reason = error instanceof NotCacheable ? error.reason : 'error'
        // A HEAD we waited on stored nothing (it has no body): a GET tries once more, to load it itself.
        if (reason === 'head' && request.method === 'GET' && attempt === 0) continue
        // The request we waited on was not cacheable (or failed): handle this one ourselves.
        req[kState] = { mode: 'bypass', reason }
        return false
      }
    }
    if (found.kind === 'lead') {
      if (request.method === 'HEAD') {
        // A HEAD response has no body to store; let the GET that follows fill the entry.
        found.lead.abort(new NotCacheable('head'))
        req[kState] = { mode: 'bypass', reason: 'head' }
        return false
      }
      hold(req, reply, found.lead, tags)
      return false
    }
    const stored = decodeStored(found.info.value)
    if (stored === undefined) {
      req[kState] = { mode: 'bypass', reason: 'unreadable' }
      return false
    }
    req[kState] = SERVED
    serve(request, reply, stored, found.info, tags)
    return true
  }

  function serve(
    request: FastifyRequest,
    reply: FastifyReply,
    stored: StoredResponse,
    info: CacheEntryInfo<Buffer>,
    tags: readonly string[],
  ) {
    const verdict = info.stale ? 'STALE' : 'HIT'
    // Headers that hooks before this one set (a request id, a CORS origin) were not stored (see hold),
    // so the ones this request's hooks just set stand.
    reply.headers(stored.headers)
    reply.header('etag', stored.etag)
    reply.header('age', String(info.ageSeconds))
    reply.header('x-cache', verdict)
    reply.header('cache-status', `larder; hit${info.stale ? '; fwd=stale' : ''}`)
    if (route.cdn) cdnHeaders(reply, tags)
    // Preconditions apply to 2xx responses only (RFC 9110 §13.2.1): a cached redirect or 404 is sent whole.
    if (stored.status < 300 && etagMatches(headerText(request.headers['if-none-match']), stored.etag)) {
      reply.removeHeader('content-type')
      reply.removeHeader('content-encoding')
      return reply.code(304).send()
    }
    return reply.code(stored.status).send(stored.body)
  }

  /**
   * Calls `done` at once unless this request leads a store (then Fastify waits on the promise it
   * returns): a hit or a bypass costs no promise, and its response is written in the same tick.
   */
  const onSend: onSendHookHandler = function larderCacheStore(request, reply, payload, done) {
    const state = (request as WithState)[kState]
    if (state === null) {
      // Answered before the cache's hook ran (a route hook that replied, say): still say so.
      if (!reply.hasHeader('x-cache')) {
        reply.header('x-cache', 'BYPASS')
        reply.header('cache-status', 'larder; fwd=bypass; detail=not-reached')
      }
      return done(null, payload)
    }
    if (state.mode === 'served') return done(null, payload)
    if (state.mode === 'bypass') {
      if (!reply.hasHeader('x-cache')) {
        reply.header('x-cache', 'BYPASS')
        reply.header(
          'cache-status',
          `larder; fwd=${state.reason === 'method' ? 'method' : 'bypass'}; detail=${state.reason}`,
        )
      }
      return done(null, payload)
    }
    if (state.done) return done(null, payload)
    state.done = true
    return storeLead(request, reply, payload, state)
  }

  async function storeLead(
    request: FastifyRequest,
    reply: FastifyReply,
    payload: unknown,
    state: LeadState,
  ): Promise<unknown> {
    try {
      return await finishLead(request, reply, payload, state)
    } catch (error) {
      // Whatever went wrong here, the requests waiting on this one must not hang.
      state.lead.abort(new NotCacheable('store-failed'))
      throw error
    }
  }

  async function finishLead(
    request: FastifyRequest,
    reply: FastifyReply,
    payload: unknown,
    state: LeadState,
  ): Promise<unknown> {
    const { lead } = state
    const why = refusal(reply, route.isPrivate, route.vary)
    if (why !== undefined) {
      if (reply.statusCode >= 500 && route.staleIfError > 0)
        return standInForError(request, reply, payload, lead, why)
      return bypass(reply, lead, why, payload)
    }
    const body = await bodyBytes(payload, reply, maxEntryBytes)
    if (body === undefined) return bypass(reply, lead, 'stream', payload)
    if (!Buffer.isBuffer(body)) return bypass(reply, lead, 'too-large', body)
    if (body.length > maxEntryBytes) return bypass(reply, lead, 'too-large', body)
    if (!reply.hasHeader('cache-control')) {
      reply.header(
        'cache-control',
        reply.statusCode === 404 ? route.notFoundCacheControl : route.cacheControl,
      )
    }
    if (route.vary.length > 0) reply.header('vary', withVary(reply.getHeader('vary'), route.vary))
    const etag = String(reply.getHeader('etag') ?? strongEtag(body))
    reply.header('etag', etag)
    const stored: StoredResponse = {
      status: reply.statusCode,
      headers: storableHeaders(reply, state.hookHeaders),
      etag,
      body,
    }
    lead.commit(encodeStored(stored), reply.statusCode === 404 ? route.notFoundTtl : undefined)
    reply.header('age', '0')
    reply.header('x-cache', 'MISS')
    reply.header('cache-status', 'larder; fwd=miss; stored')
    if (route.cdn) cdnHeaders(reply, state.tags)
    return body
  }

  /** The handler failed: answer with the stale response if the engine still has one in its window. */
  async function standInForError(
    request: FastifyRequest,
    reply: FastifyReply,
    payload: unknown,
    lead: Lead,
    why: string,
  ): Promise<unknown> {
    lead.abort(new NotCacheable(why))
    const stale = await lead.result.catch(() => undefined)
    const stored = stale === undefined ? undefined : decodeStored(stale.value)
    if (stale === undefined || stored === undefined || !stale.stale) {
      reply.header('x-cache', 'BYPASS')
      reply.header('cache-status', `larder; fwd=bypass; detail=${why}`)
      return payload
    }
    request.log.warn({ status: reply.statusCode }, 'larder: handler failed, serving the stale response')
    for (const name of Object.keys(reply.getHeaders())) reply.removeHeader(name)
    reply.code(stored.status)
    reply.headers(stored.headers)
    reply.header('etag', stored.etag)
    reply.header('age', String(stale.ageSeconds))
    reply.header('x-cache', 'STALE')
    reply.header('cache-status', 'larder; hit; fwd=stale; detail=stale-if-error')
    return stored.body
  }

  return { onRequest, onSend }
}

/**
 * Makes the request the lead, and lets go of the lead if its response never reaches onSend (aborted
 * request, hijacked reply). A listener per lead rather than onResponse/onRequestAbort hooks, which
 * would cost every hit two listeners and two hook runs.
 */
function hold(request: WithState, reply: FastifyReply, lead: Lead, tags: readonly string[]): void {
  const state: LeadState = {
    mode: 'lead',
    lead,
    tags,
    done: false,
    hookHeaders: Object.keys(reply.getHeaders()),
  }
  request[kState] = state
  reply.raw.once('close', () => {
    if (state.done) return
    state.done = true
    lead.abort(new NotCacheable('no-response'))
  })
}

function bypass(reply: FastifyReply, lead: Lead, why: string, payload: unknown): unknown {
  lead.abort(new NotCacheable(why))
  reply.header('x-cache', 'BYPASS')
  reply.header('cache-status', `larder; fwd=bypass; detail=${why}`)
  return payload
}

function cdnHeaders(reply: FastifyReply, tags: readonly string[]): void {
  if (tags.length === 0) return
  reply.header('surrogate-key', tags.join(' '))
  reply.header('cache-tag', tags.join(','))
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(',') : value
}

/**
 * The serialized body as bytes, or undefined for a stream: streams are not cached, except the one
 * @fastify/compress makes of a body it compressed (recognised by the Content-Encoding it set). That
 * one is read up to `limit` bytes: past that it is handed on as a stream of what was read and the
 * rest, so a large or endless body is never held whole in memory.
 */
async function bodyBytes(
  payload: unknown,
  reply: FastifyReply,
  limit: number,
): Promise<Buffer | Readable | undefined> {
  if (payload === null || payload === undefined) return Buffer.alloc(0)
  if (Buffer.isBuffer(payload)) return payload
  if (typeof payload === 'string') return Buffer.from(payload)
  if (!isReadable(payload) || !reply.hasHeader('content-encoding')) return undefined
  const chunks: Buffer[] = []
  let size = 0
  const iterator = payload[Symbol.asyncIterator]()
  for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
    const chunk = asBuffer(next.value)
    chunks.push(chunk)
    size += chunk.length
    if (size > limit) return Readable.from(rest(chunks, iterator))
  }
  return Buffer.concat(chunks)
}

async function* rest(read: Buffer[], iterator: AsyncIterator<unknown>): AsyncGenerator<Buffer> {
  yield* read
  for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
    yield asBuffer(next.value)
  }
}

function asBuffer(chunk: unknown): Buffer {
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string)
}

function isReadable(value: unknown): value is Readable {
  return typeof value === 'object' && value !== null && typeof (value as Readable).pipe === 'function'
}
