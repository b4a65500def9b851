import { LarderError } from '@larder/core'
import type { FastifyInstance } from 'fastify'

/** URLs to request once after startup, or a function returning them (e.g. the top products). */
export type WarmUrls = readonly string[] | (() => readonly string[] | Promise<readonly string[]>)

/** Requests at once while warming: enough to be quick, few enough not to load the database at startup. */
const CONCURRENCY = 4

export function checkWarm(warm: unknown): WarmUrls {
  if (typeof warm === 'function') return warm as WarmUrls
  if (Array.isArray(warm) && warm.every((url) => typeof url === 'string' && url.startsWith('/'))) return warm
  throw new LarderError(
    'LARDER_INVALID_OPTION',
    "@larder/response-cache warm: expected an array of URLs starting with '/' or a function returning one",
  )
}

/**
 * Once the server is ready, requests each URL through `fastify.inject` (in the background: `inject`
 * cannot run inside `onReady`, and startup should not wait on the database), so the responses are
 * cached before the first visitors ask. Failures are logged; `close()` waits for the warming to stop.
 */
export function scheduleWarm(fastify: FastifyInstance, warm: WarmUrls): void {
  let closing = false
  let running: Promise<void> | undefined
  fastify.addHook('onReady', async () => {
    setImmediate(() => {
      running = run().catch((error: unknown) =>
        fastify.log.warn({ err: error }, 'larder: response cache warming failed'),
      )
    })
  })
  fastify.addHook('onClose', async () => {
    closing = true
    await running
  })

  async function run(): Promise<void> {
    const urls = typeof warm === 'function' ? checkList(await warm()) : warm
    let next = 0
    const failed: Array<{ url: string; status?: number; error?: unknown }> = []
    const worker = async (): Promise<void> => {
      while (!closing && next < urls.length) {
        const url = urls[next++] as string
        try {
          const response = await fastify.inject({ method: 'GET', url })
          if (response.statusCode >= 400) failed.push({ url, status: response.statusCode })
        } catch (error) {
          failed.push({ url, error })
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, urls.length) }, worker))
    if (failed.length > 0) fastify.log.warn({ failed }, 'larder: some URLs could not be warmed')
    else fastify.log.debug({ urls: urls.length }, 'larder: response cache warmed')
  }
}

/** What the function returned must be a list itself. */
function checkList(urls: unknown): readonly string[] {
  return checkWarm(typeof urls === 'function' ? undefined : urls) as readonly string[]
}
