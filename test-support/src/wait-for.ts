export interface WaitForOptions {
  /** Milliseconds before giving up. Default 5000. */
  timeout?: number
  /** Milliseconds between checks. Default 20. */
  interval?: number
  /** Message of the Error thrown on timeout. */
  message?: string
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Polls `check` until it returns a truthy value and resolves with that value.
 * A check that throws counts as "not yet" (the thing polled is often still starting up);
 * the last error is attached as `cause` of the timeout error so it is not lost.
 */
export async function waitFor<T>(check: () => T | Promise<T>, options: WaitForOptions = {}): Promise<T> {
  const { timeout = 5000, interval = 20 } = options
  const deadline = Date.now() + timeout
  let lastError: unknown
  for (;;) {
    try {
      const value = await check()
      if (value) return value
    } catch (error) {
      lastError = error
    }
    if (Date.now() >= deadline) {
      const message = options.message ?? `waitFor: condition not met within ${timeout}ms`
      throw lastError === undefined ? new Error(message) : new Error(message, { cause: lastError })
    }
    await sleep(interval)
  }
}
