import { LarderError, parseDuration } from '@larder/core'
import type {
  FastifyPluginAsync,
  FastifyReply,
  FastifyRequest,
  onSendHookHandler,
  preHandlerHookHandler,
  preSerializationHookHandler,
  RouteOptions,
} from 'fastify'
import fp from 'fastify-plugin'
import { adminRoute } from './admin.js'
import { Invalidator } from './invalidator.js'
import { compileTargets, type Resolved } from './targets.js'
import type { InvalidationOptions, InvalidationTargets } from './types.js'

const kPending = Symbol('larder.invalidation')
const kPayload = Symbol('larder.invalidation.payload')
type WithPending = FastifyRequest & { [kPending]: Partial<Resolved> | null; [kPayload]: unknown }

function checkOptions(options: InvalidationOptions): void {
  for (const name of Object.keys(options)) {
    if (name !== 'retry' && name !== 'admin') {
      throw new LarderError('LARDER_UNKNOWN_OPTION', `@larder/invalidation: unknown option '${name}'`)
    }
  }
  if (options.admin !== undefined && typeof options.admin?.authorize !== 'function') {
    throw new LarderError(
      'LARDER_INVALID_OPTION',
      '@larder/invalidation admin.authorize: expected a function (request) => boolean deciding who may purge',
    )
  }
}

function addHook<T>(existing: T | T[] | undefined, hook: T): T[] {
  if (existing === undefined) return [hook]
  return Array.isArray(existing) ? [...existing, hook] : [existing, hook]
}

function merge(a: Partial<Resolved> | null, b: Partial<Resolved>): InvalidationTargets {
  return {
    tags: [...(a?.tags ?? []), ...(b.tags ?? [])],
    keys: [...(a?.keys ?? []), ...(b.keys ?? [])],
    patterns: [...(a?.patterns ?? []), ...(b.patterns ?? [])],
  }
}

/** A reply sent as a string or Buffer: its JSON for `{response.x}` templates; undefined when it is not JSON. */
function parsed(reply: FastifyReply, payload: unknown): unknown {
  if (typeof payload !== 'string' && !Buffer.isBuffer(payload)) return undefined
  if (!String(reply.getHeader('content-type') ?? '').includes('json')) return undefined
  try {
    return JSON.parse(payload.toString())
  } catch {
    return undefined
  }
}

const invalidationPlugin: FastifyPluginAsync<InvalidationOptions> = async (fastify, options) => {
  checkOptions(options)
  const retry = {
    attempts: options.retry?.attempts ?? 8,
    minDelay: parseDuration(options.retry?.minDelay ?? 100, 'retry.minDelay'),
    maxDelay: parseDuration(options.retry?.maxDelay ?? '10s', 'retry.maxDelay'),
  }
  const invalidator = new Invalidator(fastify.cache, fastify.log, retry)
  fastify.decorate('invalidate', (targets: InvalidationTargets) => invalidator.run(targets))
  fastify.decorate('invalidation', { stats: () => invalidator.stats() })
  fastify.decorateRequest(kPending, null)
  fastify.decorateRequest(kPayload, undefined)
  fastify.addHook('onClose', async () => invalidator.close())

  fastify.addHook('onRoute', (routeOptions: RouteOptions) => {
    const config = routeOptions.config?.invalidate
    if (config === undefined) return
    const targets = compileTargets(config, routeOptions.url)

    // Fills what the request alone decides before the handler: bad input never reaches the write.
    const preHandler: preHandlerHookHandler = async function larderInvalidationPrepare(request, reply) {
      try {
        ;(request as WithPending)[kPending] = targets.beforeHandler(request)
      } catch (error) {
        request.log.warn({ err: error }, 'larder: invalidation targets rejected')
        return reply.code(400).send({
          statusCode: 400,
          error: 'Bad Request',
          message: error instanceof Error ? error.message : 'invalid invalidation target',
        })
      }
    }

    // Keeps the handler's object for `{response.x}`: by onSend, hooks of the instance (@fastify/compress)
    // may have turned the serialized payload into bytes no JSON.parse can read.
    const preSerialization: preSerializationHookHandler<unknown> = async function larderInvalidationPayload(
      request,
      _reply,
      payload,
    ) {
      ;(request as WithPending)[kPayload] = payload
      return payload
    }

    // Runs only after a 2xx, before the response leaves: the client's next read is fresh.
    const onSend: onSendHookHandler = async function larderInvalidationRun(request, reply, payload) {
      if (reply.statusCode < 200 || reply.statusCode >= 300) return payload
      const early = (request as WithPending)[kPending]
      if (early === null) return payload // the preHandler refused the request
      const object = (request as WithPending)[kPayload]
      const late = targets.afterHandler(request, reply, object ?? parsed(reply, payload))
      await invalidator.run(merge(early, late))
      return payload
    }

    routeOptions.preHandler = addHook(routeOptions.preHandler, preHandler)
    routeOptions.preSerialization = addHook(routeOptions.preSerialization, preSerialization)
    routeOptions.onSend = addHook(routeOptions.onSend, onSend)
  })

  if (options.admin !== undefined) adminRoute(fastify, options.admin)
}

/** Invalidation hooks on write routes and `fastify.invalidate()`; needs @larder/response-cache first. */
export const invalidation = fp(invalidationPlugin, {
  fastify: '5.x',
  name: '@larder/invalidation',
  dependencies: ['@larder/response-cache'],
})
