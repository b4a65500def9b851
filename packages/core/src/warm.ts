import type { Duration } from './duration.js'
import { invalid } from './options.js'
import type { EntryOptions, Loader, Logger } from './types.js'

/** One key to warm: `load` runs unless the key is already cached (here or by another process). */
export interface WarmEntry<T = unknown> {
  key: string
  load: Loader<T>
  ttl?: Duration
  tags?: readonly string[]
}

export interface WarmOptions {
  /** Loads running at once. Default 8. */
  concurrency?: number
}

export interface WarmReport {
  /** Entries now cached (loaded, or found already cached). */
  warmed: number
  /** Entries whose loader (or whose options) failed; the others are unaffected. */
  failed: Array<{ key: string; error: unknown }>
}

type Wrap = <T>(key: string, loader: Loader<T>, options?: EntryOptions) => Promise<T>

/**
 * Loads `entries` through `wrap`, `concurrency` at a time, so several processes warming at once still
 * load each key once (the per-key lock) and a key already cached is not loaded again. Entries are
 * pulled from the (async) iterable as workers free up, so a long generator is never held in memory.
 */
export async function warm(
  wrap: Wrap,
  entries: Iterable<WarmEntry> | AsyncIterable<WarmEntry>,
  options: WarmOptions | undefined,
  logger: Logger,
): Promise<WarmReport> {
  const concurrency = options?.concurrency ?? 8
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw invalid('warm: concurrency', 'an integer > 0', concurrency)
  }
  const iterator = iterate(entries)
  const report: WarmReport = { warmed: 0, failed: [] }
  const worker = async (): Promise<void> => {
    for (;;) {
      const next = await iterator.next()
      if (next.done === true) return
      const entry = next.value
      const key = typeof entry?.key === 'string' ? entry.key : String(entry?.key)
      try {
        if (typeof entry?.load !== 'function')
          throw invalid(`warm: entry ${key}: load`, 'a function', entry?.load)
        const entryOptions: EntryOptions = {}
        if (entry.ttl !== undefined) entryOptions.ttl = entry.ttl
        if (entry.tags !== undefined) entryOptions.tags = entry.tags
        await wrap(key, entry.load, entryOptions)
        report.warmed++
      } catch (error) {
        report.failed.push({ key, error })
        logger.warn({ err: error, key }, 'larder: warming a key failed')
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return report
}

function iterate(
  entries: Iterable<WarmEntry> | AsyncIterable<WarmEntry>,
): Iterator<WarmEntry> | AsyncIterator<WarmEntry> {
  if (entries !== null && typeof entries === 'object') {
    if (Symbol.asyncIterator in entries) return entries[Symbol.asyncIterator]()
    if (Symbol.iterator in entries) return entries[Symbol.iterator]()
  }
  throw invalid('warm: entries', 'an array or an (async) iterable of { key, load }', entries)
}
