import type { FastifyContextConfig, FastifyRequest } from 'fastify'

type RouteContext = { config?: unknown }

/**
 * A reader of the request's route config that avoids `request.routeOptions`, a getter that builds a
 * new twelve-field object on every call: the limiter reads the config on every request. Fastify keeps
 * the route's context, whose `config` that getter returns, on each request under a symbol of its own.
 * The first request finds the symbol by comparing with `routeOptions.config`; where none matches (a
 * Fastify that keeps it elsewhere), and for any request that lacks it, `routeOptions` answers.
 */
export function routeConfigReader(): (request: FastifyRequest) => FastifyContextConfig {
  let context: symbol | null | undefined
  return function routeConfig(request) {
    if (context === undefined) context = contextSymbol(request)
    const found = context === null ? undefined : (request as unknown as Record<symbol, RouteContext>)[context]
    return (found?.config as FastifyContextConfig | undefined) ?? request.routeOptions.config
  }
}

/** The symbol under which `request` holds the object whose `config` is `routeOptions.config`. */
export function contextSymbol(request: FastifyRequest): symbol | null {
  const config = request.routeOptions.config
  for (const symbol of Object.getOwnPropertySymbols(request)) {
    const value = (request as unknown as Record<symbol, unknown>)[symbol]
    if (typeof value === 'object' && value !== null && (value as RouteContext).config === config)
      return symbol
  }
  return null
}
