import { LarderError } from '@larder/core'

export const UNAVAILABLE = 'LARDER_SESSION_STORE_UNAVAILABLE'

/**
 * The store could not answer (Redis down, slow or refusing). It carries `statusCode: 503`, which
 * Fastify's error handler sends as is: the request fails visibly instead of continuing with a fresh,
 * logged-out session. The message says nothing about hosts or ports; the cause is kept for the logs.
 */
export class SessionStoreUnavailableError extends LarderError {
  readonly statusCode = 503

  constructor(operation: string, cause: unknown) {
    super(UNAVAILABLE, `session store unavailable (${operation}), try again shortly`, { cause })
    this.name = 'SessionStoreUnavailableError'
  }
}
