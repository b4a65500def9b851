import type { FastifyInstance } from 'fastify'
import type { InvalidationOptions } from './types.js'

function list(value: unknown): string[] {
  if (value === undefined) return []
  return (Array.isArray(value) ? value : [value]).map(String)
}

/** `DELETE /_larder/cache?tag=…&key=…&pattern=…`, answered 204 once done; guarded by `authorize`. */
export function adminRoute(fastify: FastifyInstance, admin: NonNullable<InvalidationOptions['admin']>): void {
  fastify.route({
    method: 'DELETE',
    url: admin.path ?? '/_larder/cache',
    config: { cache: false },
    handler: async (request, reply) => {
      if (!(await admin.authorize(request))) {
        return reply
          .code(403)
          .send({ statusCode: 403, error: 'Forbidden', message: 'not allowed to purge the cache' })
      }
      const query = request.query as Record<string, unknown>
      const targets = { tags: list(query.tag), keys: list(query.key), patterns: list(query.pattern) }
      if (targets.tags.length + targets.keys.length + targets.patterns.length === 0) {
        return reply.code(400).send({
          statusCode: 400,
          error: 'Bad Request',
          message: 'expected at least one tag, key or pattern query parameter',
        })
      }
      try {
        await fastify.invalidate(targets)
      } catch (error) {
        return reply.code(400).send({
          statusCode: 400,
          error: 'Bad Request',
          message: error instanceof Error ? error.message : 'invalid target',
        })
      }
      return reply.code(204).send()
    },
  })
}
