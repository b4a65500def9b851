/**
 * Settles a promise into a Node-style callback. The callback runs outside the promise chain, so an
 * exception thrown by it surfaces as one, rather than as a rejection or as a second callback call.
 */
export function toCallback<T>(promise: Promise<T>, callback: (error: unknown, value?: T) => void): void {
  promise.then(
    (value) => queueMicrotask(() => callback(null, value)),
    (error: unknown) => queueMicrotask(() => callback(error)),
  )
}
