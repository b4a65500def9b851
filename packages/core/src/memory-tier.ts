import { LRUCache } from 'lru-cache'
import { type Entry, lifetimeEnd } from './entry.js'

/** Bounds the per-key and per-tag invalidation records; past it they are folded into one floor. */
const MAX_RECORDS = 10_000

/**
 * L1: an in-process LRU bounded by entries and bytes. Invalidations are epoch-stamped so that a value
 * read or loaded while an invalidation arrived is never stored afterwards (`born` is the epoch at which
 * that read began).
 */
export class MemoryTier {
  readonly #lru: LRUCache<string, Entry>
  #epoch = 0
  /** Entries born before this epoch are refused (set by pattern deletes, clears and overflow). */
  #floor = 0
  /** The epoch of the latest tag invalidation: no tag record is newer. */
  #tagEpoch = 0
  readonly #tagEpochs = new Map<string, number>()
  readonly #keyEpochs = new Map<string, number>()
  evictions = 0

  constructor(options: { maxBytes: number; maxEntries: number }) {
    this.#lru = new LRUCache<string, Entry>({
      max: options.maxEntries,
      maxSize: options.maxBytes,
      sizeCalculation: (entry) => entry.bytes,
      dispose: (_entry, _key, reason) => {
        if (reason === 'evict') this.evictions++
      },
    })
  }

  get epoch(): number {
    return this.#epoch
  }

  /** The entry if it is still within its lifetime and none of its tags was invalidated since it was born. */
  get(key: string, now: number): Entry | undefined {
    const entry = this.#lru.get(key)
    if (entry === undefined) return undefined
    if (now >= lifetimeEnd(entry) || !this.#tagsValid(entry)) {
      this.#lru.delete(key)
      return undefined
    }
    return entry
  }

  #tagsValid(entry: Entry): boolean {
    const tags = entry.tags
    // No tag was invalidated since the entry was born, or since its tags were last found valid: the
    // answer cannot have changed, so the hot path skips one Map lookup per tag.
    const latest = this.#tagEpoch
    if (tags.length === 0 || entry.born >= latest || entry.tagsChecked === latest) return true
    for (let i = 0; i < tags.length; i++) {
      const epoch = this.#tagEpochs.get(tags[i] as string)
      if (epoch !== undefined && epoch > entry.born) return false
    }
    entry.tagsChecked = latest
    return true
  }

  /** Stores unless an invalidation touching this key or its tags happened after the entry was born. */
  set(key: string, entry: Entry): boolean {
    const keyEpoch = this.#keyEpochs.get(key)
    if (
      entry.born < this.#floor ||
      (keyEpoch !== undefined && keyEpoch > entry.born) ||
      !this.#tagsValid(entry)
    ) {
      return false
    }
    this.#lru.set(key, entry)
    return true
  }

  deleteKeys(keys: readonly string[]): void {
    const epoch = ++this.#epoch
    for (const key of keys) {
      this.#lru.delete(key)
      this.#record(this.#keyEpochs, key, epoch)
    }
  }

  invalidateTags(tags: readonly string[]): void {
    const epoch = ++this.#epoch
    this.#tagEpoch = epoch
    for (const tag of tags) this.#record(this.#tagEpochs, tag, epoch)
  }

  deleteMatching(pattern: RegExp): void {
    this.#floor = ++this.#epoch
    for (const key of this.#lru.keys()) if (pattern.test(key)) this.#lru.delete(key)
  }

  clear(): void {
    this.#floor = ++this.#epoch
    this.#lru.clear()
    this.#tagEpochs.clear()
    this.#keyEpochs.clear()
  }

  #record(records: Map<string, number>, name: string, epoch: number): void {
    records.delete(name)
    records.set(name, epoch)
    if (records.size > MAX_RECORDS) this.#prune(records)
  }

  /** Forgets the oldest half of the records, and with them every entry they were still guarding. */
  #prune(records: Map<string, number>): void {
    let cutoff = 0
    for (const [name, epoch] of records) {
      if (records.size <= MAX_RECORDS / 2) break
      records.delete(name)
      cutoff = epoch
    }
    this.#floor = Math.max(this.#floor, cutoff)
    const unguarded: string[] = []
    for (const [key, entry] of this.#lru.entries()) if (entry.born < cutoff) unguarded.push(key)
    for (const key of unguarded) this.#lru.delete(key)
  }

  get size(): number {
    return this.#lru.size
  }

  get bytes(): number {
    return this.#lru.calculatedSize
  }
}
