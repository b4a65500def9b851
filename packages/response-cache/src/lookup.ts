import type { Cache, CacheEntryInfo, EntryOptions, LoaderContext } from '@larder/core'

/** This request runs the handler; its response settles every request waiting on the key. */
export interface Lead {
  /** Stores the response (with another TTL, e.g. for a 404). */
  commit(value: Buffer, ttlMs?: number): void
  /** Stores nothing; waiters run their own handler (or get the stale value for an upstream error). */
  abort(reason: Error): void
  /** What the engine made of it: the stored entry, or a stale stand-in when the lead failed. */
  readonly result: Promise<CacheEntryInfo<Buffer>>
}

export type Lookup = { kind: 'entry'; info: CacheEntryInfo<Buffer> } | { kind: 'lead'; lead: Lead }

/** A response the handler produced that is not to be stored; waiters handle the request themselves. */
export class NotCacheable extends Error {
  constructor(readonly reason: string) {
    super(`response not cacheable: ${reason}`)
    this.name = 'NotCacheable'
  }
}

/**
 * Read-through for a request: resolves with the cached entry (fresh, stale, or another request's
 * result), or makes this request the lead when the engine calls its loader. `refresh` produces the
 * value for background refreshes, where no request is waiting.
 */
export function lookup(
  cache: Cache,
  key: string,
  options: EntryOptions,
  refresh: (context: LoaderContext) => Promise<Buffer>,
): Promise<Lookup> {
  return new Promise<Lookup>((resolve, reject) => {
    let settled = false
    const holder: { result?: Promise<CacheEntryInfo<Buffer>> } = {}
    const loader = (context: LoaderContext): Promise<Buffer> => {
      if (settled || context.background) return refresh(context)
      settled = true
      return new Promise<Buffer>((commit, abort) => {
        resolve({
          kind: 'lead',
          lead: {
            commit(value, ttlMs) {
              if (ttlMs !== undefined) context.setTtl(ttlMs)
              commit(value)
            },
            abort,
            get result() {
              return holder.result as Promise<CacheEntryInfo<Buffer>>
            },
          },
        })
      })
    }
    const result = cache.wrapEntry<Buffer>(key, loader, options)
    holder.result = result
    result.then(
      (info) => {
        if (!settled) {
          settled = true
          resolve({ kind: 'entry', info })
        }
      },
      (error: unknown) => {
        if (!settled) {
          settled = true
          reject(error)
        }
      },
    )
  })
}
