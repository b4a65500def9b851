import { randomBytes } from 'node:crypto'
import diagnostics from 'node:diagnostics_channel'
import { readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { performance } from 'node:perf_hooks'
import type { Cluster, Redis } from 'ioredis'
import type { Cache } from './cache.js'
import { decode, type Encoded, encode } from './codec.js'
import { type Duration, optionalDuration } from './duration.js'
import { entryTtl } from './entry.js'
import { LarderError } from './errors.js'
import { cacheKey } from './keys.js'
import { invalid, type ResolvedEntryOptions, rejectUnknown, resolveEntryOptions } from './options.js'
import { keyPrefixOf } from './redis/connection.js'
import { newToken } from './tokens.js'
import type { CacheValue, EntryOptions, Logger, RedisClient } from './types.js'
import { WriteBatch } from './write-behind-batch.js'
import { type CacheWriter, cacheWriter, type RedisWrite, type StoreItem } from './write-through.js'

/** One write handed to `flush`: the last value of `key` in the batch; `id` is unique per write. */
export interface WriteBehindItem<T = CacheValue> {
  /** The stream entry id (`<ms>-<seq>`): a flush may run twice for it, so use it to stay idempotent. */
  id: string
  /**
   * The id as fixed-width text that sorts in the order the writes were made. Several processes flush
   * in parallel, and a batch can be retried or claimed late, so an older write of a key can reach the
   * database after a newer one: keep `order` in the row and update only when it is greater.
   */
  order: string
  key: string
  value: T
}

/** `<ms>-<seq>` as text that sorts like the ids: both parts zero-padded. */
export function writeOrder(id: string): string {
  const dash = id.indexOf('-')
  return `${id.slice(0, dash).padStart(16, '0')}-${id.slice(dash + 1).padStart(10, '0')}`
}

export interface WriteBehindOptions<T = CacheValue> {
  cache: Cache
  /** Names the stream (`<prefix>{wb:<name>}`) and the consumer group. */
  name: string
  /** The database write; must throw when the batch was not stored. */
  flush: (batch: Array<WriteBehindItem<T>>) => unknown
  /** Most writes read per flush. Default 100. */
  batchSize?: number
  /** How long a consumer waits for writes before it looks again (and, in-process, between flushes). Default 1 s. */
  interval?: Duration
  /** Retries of a failing flush before its batch goes to the dead-letter stream. Default 5. */
  maxRetries?: number
  /** First retry delay, doubled each retry up to 5 s. Default 100 ms. */
  retryDelay?: Duration
  /** Writes delivered to a consumer that has not acknowledged them for this long are claimed by another. Default 30 s. */
  claimIdle?: Duration
  /** This process's consumer name in the group. Default host, pid and a random part. */
  consumer?: string
}

export interface WriteBehindStats {
  /** False on the in-process queue (no Redis): a crash loses what was not flushed. */
  durable: boolean
  written: number
  /** Writes acknowledged after a successful flush (collapsed writes included). */
  flushed: number
  flushes: number
  failedFlushes: number
  deadLettered: number
  /** Writes recorded and not yet flushed, by any process. */
  lag: number
  lastFlushMs: number
  maxFlushMs: number
}

export interface WriteBehind<T = CacheValue> {
  /** Readable from the cache at once, recorded durably (Redis) for the consumers, then resolves. */
  write(key: string, value: T, options?: EntryOptions): Promise<void>
  stats(): Promise<WriteBehindStats>
  /** Stops consuming after flushing what is waiting; resolves when done. */
  close(): Promise<void>
}

/** `{ name, size, durationMs, error? }` per flush attempt; `{ name, size, error }` per dead-lettered batch. */
export const writeBehindChannels = {
  flush: diagnostics.channel('larder:write-behind:flush'),
  deadLetter: diagnostics.channel('larder:write-behind:dead-letter'),
} as const

const OPTION_NAMES = new Set([
  'cache',
  'name',
  'flush',
  'batchSize',
  'interval',
  'maxRetries',
  'retryDelay',
  'claimIdle',
  'consumer',
])
const NAME_RE = /^[\w.:-]{1,100}$/
const MAX_RETRY_DELAY = 5_000
/**
 * Most writes sent in one Redis call: the script runs them all before Redis serves anything else, and
 * 128 take it about 1 ms (~7 µs each).
 */
const MAX_WRITE_BATCH = 128

interface Resolved<T> {
  name: string
  flush: (batch: Array<WriteBehindItem<T>>) => unknown
  batchSize: number
  interval: number
  maxRetries: number
  retryDelay: number
  claimIdle: number
  consumer: string
}

function resolve<T>(options: WriteBehindOptions<T>): Resolved<T> {
  if (typeof options !== 'object' || options === null)
    throw invalid('createWriteBehind options', 'an object', options)
  rejectUnknown(options, OPTION_NAMES, 'createWriteBehind')
  if (typeof options.cache !== 'object' || options.cache === null || !(cacheWriter in options.cache)) {
    throw invalid('cache', 'a Cache from createCache', options.cache)
  }
  if (typeof options.name !== 'string' || !NAME_RE.test(options.name)) {
    throw invalid('name', '1-100 letters, digits, _ . : -', options.name)
  }
  if (typeof options.flush !== 'function') throw invalid('flush', 'a function', options.flush)
  const integer = (value: unknown, name: string, fallback: number, min: number): number => {
    if (value === undefined) return fallback
    if (typeof value === 'number' && Number.isInteger(value) && value >= min) return value
    throw invalid(name, `an integer >= ${min}`, value)
  }
  if (options.consumer !== undefined && (typeof options.consumer !== 'string' || options.consumer === '')) {
    throw invalid('consumer', 'a non-empty string', options.consumer)
  }
  return {
    name: options.name,
    flush: options.flush,
    batchSize: integer(options.batchSize, 'batchSize', 100, 1),
    interval: Math.max(1, optionalDuration(options.interval, 'interval', 1_000)),
    maxRetries: integer(options.maxRetries, 'maxRetries', 5, 0),
    retryDelay: Math.max(1, optionalDuration(options.retryDelay, 'retryDelay', 100)),
    claimIdle: Math.max(1, optionalDuration(options.claimIdle, 'claimIdle', 30_000)),
    consumer: options.consumer ?? `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`,
  }
}

/**
 * Write-behind: `write()` makes the value readable from the cache at once and records it; consumers
 * in every process flush batches to the database and acknowledge them only after `flush` succeeded.
 * With Redis the record is a Redis Stream read by a consumer group (durable: nothing is lost when a
 * process dies); without Redis an in-process queue (a crash loses what was not flushed).
 */
export function createWriteBehind<T = CacheValue>(options: WriteBehindOptions<T>): WriteBehind<T> {
  const resolved = resolve(options)
  const cache = options.cache
  const writer = cache[cacheWriter]
  const logger = cache.options.logger
  if (writer.connection === undefined || writer.l2 === undefined) {
    logger.warn(
      { writeBehind: resolved.name },
      `larder: write-behind "${resolved.name}" runs on an in-process queue (the cache has no Redis): writes not yet flushed are lost if the process crashes`,
    )
    return new LocalWriteBehind(cache, writer, resolved, logger)
  }
  return new StreamWriteBehind(
    cache,
    writer,
    resolved,
    logger,
    writer.connection.client,
    writer.connection.isCluster,
  )
}

type Batch<T> = Array<WriteBehindItem<T>>

const NO_TAGS: readonly string[] = []

/** Shared by both queues: collapse, flush with retries, dead-letter, counters. */
abstract class Flusher<T> {
  readonly cache: Cache
  readonly writer: CacheWriter
  readonly options: Resolved<T>
  readonly logger: Logger
  readonly counts = {
    written: 0,
    flushed: 0,
    flushes: 0,
    failedFlushes: 0,
    deadLettered: 0,
    lastFlushMs: 0,
    maxFlushMs: 0,
  }
  closing = false
  /** Wakes a retry sleep or an idle wait early (on close). */
  #wake: (() => void) | undefined

  constructor(cache: Cache, writer: CacheWriter, options: Resolved<T>, logger: Logger) {
    this.cache = cache
    this.writer = writer
    this.options = options
    this.logger = logger
  }

  /**
   * Validates and applies the cache write; `record` is the queue's write (inside the cache write for
   * Redis), and counts it once done. Not async: an invalid write still rejects rather than throws.
   */
  write(key: string, value: T, options?: EntryOptions): Promise<void> {
    try {
      if (this.closing)
        throw new LarderError('LARDER_CLOSED', `write-behind ${this.options.name}: write after close()`)
      const cacheOptions = this.cache.options
      const entryOptions = resolveEntryOptions(options, cacheOptions.defaults)
      const encoded = encode(value)
      const k = cacheKey(key, cacheOptions.maxKeyLength)
      // Writes of one key are recorded in call order: one that waits for its tags' versions, or takes
      // another path, must not be overtaken by a later write of the same key.
      const before = this.inFlight.get(k)
      const write =
        before === undefined
          ? this.record(k, key, value, entryOptions, encoded)
          : before.then(() => this.record(k, key, value, entryOptions, encoded))
      const inFlight = this.inFlight
      // Settled either way, and then no longer the key's latest unless a later write took its place.
      const settled: Promise<void> = write.then(release, release)
      function release(): void {
        if (inFlight.get(k) === settled) inFlight.delete(k)
      }
      inFlight.set(k, settled)
      return write
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /** Each key's latest write still under way (settled either way), so the next one waits for it. */
  readonly inFlight = new Map<string, Promise<void>>()

  /** Resolves once every write made so far has been recorded (or has failed). */
  async recorded(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all(this.inFlight.values())
  }

  abstract record(
    k: string,
    key: string,
    value: T,
    options: ResolvedEntryOptions,
    encoded: Encoded,
  ): Promise<void>

  /**
   * Flushes one batch (several writes of a key collapsed to the last), retrying with backoff; after
   * `maxRetries` failures the batch is dead-lettered. Resolves true when flushed, false when dead-lettered.
   */
  async process(items: Batch<T>): Promise<boolean> {
    const last = new Map<string, WriteBehindItem<T>>()
    // Oldest first already: XREADGROUP and XAUTOCLAIM return writes in id order, the local queue too.
    for (const item of items) {
      last.delete(item.key)
      last.set(item.key, item)
    }
    const batch = [...last.values()]
    for (let attempt = 0; ; attempt++) {
      const started = performance.now()
      try {
        await this.options.flush(batch)
        const ms = performance.now() - started
        this.counts.flushes++
        this.counts.flushed += items.length
        this.counts.lastFlushMs = ms
        this.counts.maxFlushMs = Math.max(this.counts.maxFlushMs, ms)
        if (writeBehindChannels.flush.hasSubscribers) {
          writeBehindChannels.flush.publish({ name: this.options.name, size: batch.length, durationMs: ms })
        }
        return true
      } catch (error) {
        this.counts.failedFlushes++
        if (writeBehindChannels.flush.hasSubscribers) {
          writeBehindChannels.flush.publish({
            name: this.options.name,
            size: batch.length,
            durationMs: performance.now() - started,
            error,
          })
        }
        if (attempt >= this.options.maxRetries) {
          await this.deadLetter(items, error)
          this.counts.deadLettered += items.length
          this.logger.error(
            { err: error, writeBehind: this.options.name, size: items.length },
            'larder: write-behind flush kept failing; batch moved to the dead-letter stream',
          )
          if (writeBehindChannels.deadLetter.hasSubscribers) {
            writeBehindChannels.deadLetter.publish({ name: this.options.name, size: items.length, error })
          }
          return false
        }
        this.logger.warn(
          { err: error, writeBehind: this.options.name, attempt: attempt + 1 },
          'larder: write-behind flush failed, retrying',
        )
        await this.sleep(Math.min(this.options.retryDelay * 2 ** attempt, MAX_RETRY_DELAY))
      }
    }
  }

  abstract deadLetter(items: Batch<T>, error: unknown): Promise<void>

  /** A sleep that `close()` does not cut short for retries (their batch must still be flushed). */
  sleep(ms: number, wakeable = false): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      function done(): void {
        clearTimeout(timer)
        resolve()
      }
      if (wakeable) this.#wake = done
    })
  }

  wakeUp(): void {
    this.#wake?.()
    this.#wake = undefined
  }
}

/** The in-process queue: the same API when the cache has no Redis, without durability. */
class LocalWriteBehind<T> extends Flusher<T> implements WriteBehind<T> {
  readonly #queue: Batch<T> = []
  readonly #dead: Array<{ items: Batch<T>; error: unknown }> = []
  readonly #timer: NodeJS.Timeout
  #seq = 0
  #lastMs = 0
  #running: Promise<void> | undefined

  constructor(cache: Cache, writer: CacheWriter, options: Resolved<T>, logger: Logger) {
    super(cache, writer, options, logger)
    this.#timer = setInterval(() => void this.#drain(), options.interval)
    this.#timer.unref()
  }

  async record(
    k: string,
    key: string,
    value: T,
    options: ResolvedEntryOptions,
    encoded: Encoded,
  ): Promise<void> {
    await this.writer.writeThrough.store(k, key, value, options, encoded)
    // Never behind an earlier id, even if the clock steps back: order-aware upserts compare them.
    this.#lastMs = Math.max(this.#lastMs, Date.now())
    const id = `${this.#lastMs}-${this.#seq++}`
    this.#queue.push({ id, order: writeOrder(id), key, value })
    this.counts.written++
    if (this.#queue.length >= this.options.batchSize) void this.#drain()
  }

  #drain(): Promise<void> {
    this.#running ??= (async () => {
      while (this.#queue.length > 0) await this.process(this.#queue.splice(0, this.options.batchSize))
    })().finally(() => (this.#running = undefined))
    return this.#running
  }

  async deadLetter(items: Batch<T>, error: unknown): Promise<void> {
    this.#dead.push({ items, error })
  }

  async stats(): Promise<WriteBehindStats> {
    return { durable: false, ...this.counts, lag: this.#queue.length }
  }

  async close(): Promise<void> {
    this.closing = true
    clearInterval(this.#timer)
    await this.recorded()
    await this.#running
    await this.#drain()
  }
}

type StreamEntry = [id: Buffer, fields: Buffer[]]

const EMPTY: Buffer = Buffer.alloc(0)
/** 'k', 'c', 'v': the fields of a stream entry (the key, the value's kind, the value). */
const FIELD_K = 0x6b
const FIELD_C = 0x63
const FIELD_V = 0x76

/** Creates the group and the stream unless the group exists (BUSYGROUP). */
const CREATE_GROUP = "return redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')"

const luaSource = (file: string): string => readFileSync(new URL(file, import.meta.url), 'utf8')

interface StreamCommands {
  larderWriteBehindBatch(
    keyCount: number,
    ...keysThenArgs: Array<string | number | Buffer>
  ): Promise<number[]>
  larderWriteBehindAck(stream: string, group: string, ...ids: string[]): Promise<number>
}

/** A write waiting in a batch: the cache write, and the key as the application named it (for the stream). */
interface BatchItem extends StoreItem {
  rawKey: string
}

/** The durable queue: a Redis Stream, a consumer group, a dead-letter stream. */
class StreamWriteBehind<T> extends Flusher<T> implements WriteBehind<T> {
  readonly #client: RedisClient & StreamCommands
  /** ioredis's `keyPrefix`, which the batch script sees on the entry keys it cuts names from. */
  readonly #keyPrefix: string
  readonly #isCluster: boolean
  /** Blocking reads get their own connection so they never hold up cache traffic. */
  readonly #reader: RedisClient & StreamCommands
  readonly #stream: string
  readonly #dead: string
  readonly #ready: Promise<void>
  readonly #loop: Promise<void>
  #claimCursor = '0-0'
  /** When the pending writes were last scanned to the end for ones to claim (performance.now()). */
  #claimedAt = Number.NEGATIVE_INFINITY
  /** Entries whose value could not be decoded, by id, with the decoding error and their bytes as read. */
  readonly #unreadable = new Map<string, { error: unknown; kind: Buffer; payload: Buffer }>()
  /** Single Redis: the writes made close together, sent as one script call. */
  readonly #batch: WriteBatch<BatchItem>

  constructor(
    cache: Cache,
    writer: CacheWriter,
    options: Resolved<T>,
    logger: Logger,
    client: RedisClient,
    isCluster: boolean,
  ) {
    super(cache, writer, options, logger)
    if (typeof (client as unknown as Record<string, unknown>).larderWriteBehindBatch !== 'function') {
      client.defineCommand('larderWriteBehindBatch', {
        lua: luaSource('./write-behind.lua'),
      })
    }
    this.#client = client as RedisClient & StreamCommands
    this.#keyPrefix = keyPrefixOf(client)
    this.#isCluster = isCluster
    this.#reader = blockingDuplicate(client, options.interval + 5_000) as RedisClient & StreamCommands
    this.#reader.defineCommand('larderWriteBehindAck', {
      lua: luaSource('./write-behind-ack.lua'),
      numberOfKeys: 1,
    })
    this.#reader.on('error', () => {})
    // One hash slot for both streams.
    this.#stream = `${cache.options.prefix}{wb:${options.name}}`
    this.#dead = `${this.#stream}:dead`
    this.#ready = this.#createGroup()
    this.#ready.catch(() => {})
    this.#batch = new WriteBatch((items) => this.#storeBatch(items), MAX_WRITE_BATCH)
    this.#loop = this.#run()
  }

  /**
   * Creates the consumer group (and the stream) unless it exists. Through a script so the stream key
   * gets ioredis's `keyPrefix` like every other command's (XGROUP's does not).
   */
  #createGroup(): Promise<void> {
    return this.#reader.eval(CREATE_GROUP, 1, this.#stream, this.options.name).then(
      () => {},
      (error: unknown) => {
        if (!(error instanceof Error) || !error.message.includes('BUSYGROUP')) throw error
      },
    )
  }

  record(k: string, key: string, value: T, options: ResolvedEntryOptions, encoded: Encoded): Promise<void> {
    const ttl = entryTtl(value, options)
    if (ttl === 0) return this.#recordUncached(key, encoded)
    if (this.#isCluster) return this.#recordOne(k, key, value, options, encoded)
    const writeThrough = this.writer.writeThrough
    const item: BatchItem = {
      key: k,
      rawKey: key,
      value,
      options,
      encoded,
      ttl,
      born: writeThrough.epoch,
      tagVersions: NO_TAGS,
    }
    if (options.tags.length === 0) return this.#batch.add(item)
    // The tags' versions now, so an invalidation of a tag while the write is on its way drops it.
    return (this.writer.l2 as NonNullable<CacheWriter['l2']>).tagVersions(options.tags).then((versions) => {
      item.tagVersions = versions
      return this.#batch.add(item)
    })
  }

  /** Not cached (a ttl of 0): recorded for the database, and the old cached value removed. */
  async #recordUncached(key: string, encoded: Encoded): Promise<void> {
    await this.#guarded('xadd', () =>
      this.#client.xadd(this.#stream, '*', 'k', key, 'c', encoded.kind, 'v', encoded.payload),
    )
    await this.cache.delete(key)
    this.counts.written++
  }

  /** Cluster: the entry and the stream are in different slots, so one write at a time, recorded first (nothing is lost). */
  async #recordOne(
    k: string,
    key: string,
    value: T,
    options: ResolvedEntryOptions,
    encoded: Encoded,
  ): Promise<void> {
    const via: RedisWrite = async (entry, enc, params) => {
      await this.#guarded('xadd', () =>
        this.#client.xadd(this.#stream, '*', 'k', key, 'c', enc.kind, 'v', enc.payload),
      )
      return (this.writer.l2 as NonNullable<CacheWriter['l2']>).set(entry, enc, params)
    }
    await this.writer.writeThrough.store(k, key, value, options, encoded, via)
    this.counts.written++
  }

  /** One batch: one script call writing and recording every write, one bus message, then L1. */
  async #storeBatch(items: BatchItem[]): Promise<void> {
    await this.writer.writeThrough.storeMany(items, this.#writeMany)
    this.counts.written += items.length
  }

  /** Sends a batch as write-behind.lua's arguments (see the script). */
  readonly #writeMany = (items: readonly BatchItem[], busMessage: string): Promise<number[]> => {
    const prefix = this.cache.options.prefix
    const args: Array<string | number | Buffer> = [items.length + 1, this.#stream]
    for (const item of items) args.push(prefix + item.key)
    // One token for the batch: it is never any loader's, which is all the fence needs.
    args.push(
      this.writer.l2?.channel ?? '',
      busMessage,
      newToken(),
      this.#keyPrefix.length + prefix.length,
      0,
    )
    const countAt = args.length - 1
    const profiles: Profile[] = []
    const profileOf: number[] = []
    for (const item of items) profileOf.push(profileNumber(profiles, item, args))
    args[countAt] = profiles.length
    for (let i = 0; i < items.length; i++) {
      const item = items[i] as BatchItem
      args.push(profileOf[i] as number, item.encoded.payload, item.rawKey === item.key ? '' : item.rawKey)
    }
    return this.#guarded('writeBehind', () => this.#client.larderWriteBehindBatch(...(args as [number])))
  }

  /** Through the cache's guard, so a Redis that is away fails the call in time instead of holding it. */
  #guarded<R>(operation: string, call: () => Promise<R>): Promise<R> {
    const guard = this.writer.guard
    return guard === undefined ? call() : guard.run(operation, call)
  }

  async #run(): Promise<void> {
    try {
      await this.#ready
    } catch (error) {
      this.logger.error(
        { err: error, writeBehind: this.options.name },
        'larder: write-behind could not create its consumer group',
      )
    }
    while (!this.closing) {
      try {
        const claimed = this.#claimDue() ? await this.#claim() : []
        const items = claimed.length > 0 ? claimed : await this.#read(true)
        if (items.length > 0) await this.#handle(items)
      } catch (error) {
        if (this.closing) break
        if (error instanceof Error && error.message.includes('NOGROUP')) {
          // The stream or its group is gone (deleted, evicted, an empty replica took over): writes
          // recorded since then are in a new stream, which the group, made again from its start, reads.
          this.logger.warn(
            { err: error, writeBehind: this.options.name },
            'larder: write-behind consumer group was missing; created again',
          )
          await this.#createGroup().catch(() => {})
          continue
        }
        this.logger.warn(
          { err: error, writeBehind: this.options.name },
          'larder: write-behind could not read its stream; retrying',
        )
        await this.sleep(Math.min(this.options.interval, 1_000), true)
      }
    }
  }

  /**
   * A scan in progress goes on; a finished one is started again after `interval` (or half of
   * `claimIdle` if shorter), not before every read: a busy consumer reads many times a second.
   */
  #claimDue(): boolean {
    if (this.#claimCursor !== '0-0') return true
    const every = Math.min(this.options.interval, this.options.claimIdle / 2)
    return performance.now() - this.#claimedAt >= every
  }

  /** Writes delivered to a consumer (perhaps a dead process) and unacknowledged for `claimIdle`. */
  async #claim(): Promise<Batch<T>> {
    const reply = (await this.#reader.callBuffer(
      'XAUTOCLAIM',
      this.#stream,
      this.options.name,
      this.options.consumer,
      this.options.claimIdle,
      this.#claimCursor,
      'COUNT',
      this.options.batchSize,
    )) as [Buffer, Array<StreamEntry | null>]
    this.#claimCursor = reply[0].toString()
    if (this.#claimCursor === '0-0') this.#claimedAt = performance.now()
    return this.#items(reply[1])
  }

  async #read(block: boolean): Promise<Batch<T>> {
    const args: Array<string | number> = [
      'GROUP',
      this.options.name,
      this.options.consumer,
      'COUNT',
      this.options.batchSize,
    ]
    if (block) args.push('BLOCK', this.options.interval)
    const reply = (await this.#reader.callBuffer(
      'XREADGROUP',
      ...args,
      'STREAMS',
      this.#stream,
      '>',
    )) as Array<[Buffer, StreamEntry[]]> | null
    return this.#items(reply?.[0]?.[1] ?? [])
  }

  #items(entries: Array<StreamEntry | null>): Batch<T> {
    const items: Batch<T> = []
    for (const entry of entries) {
      if (entry === null) continue
      // The fields 'k', 'c' and 'v' (the last of each wins), read without a Map or a string per name.
      let key = EMPTY
      let kind = EMPTY
      let payload = EMPTY
      const fields = entry[1]
      for (let i = 0; i + 1 < fields.length; i += 2) {
        const name = fields[i] as Buffer
        if (name.length !== 1) continue
        const value = fields[i + 1] as Buffer
        if (name[0] === FIELD_K) key = value
        else if (name[0] === FIELD_C) kind = value
        else if (name[0] === FIELD_V) payload = value
      }
      const id = entry[0].toString()
      try {
        items.push({ id, order: writeOrder(id), key: key.toString(), value: decode(kind, payload) as T })
      } catch (error) {
        // Unreadable: dead-lettered at once rather than handed to flush or retried forever.
        items.push({ id, order: writeOrder(id), key: key.toString(), value: undefined as T })
        this.#unreadable.set(id, { error, kind, payload })
        this.logger.error(
          { err: error, writeBehind: this.options.name, id },
          'larder: unreadable write-behind entry',
        )
      }
    }
    return items
  }

  async #handle(all: Batch<T>): Promise<void> {
    let items = all
    if (this.#unreadable.size > 0) {
      items = all.filter((item) => !this.#unreadable.has(item.id))
      for (const item of all) {
        const unreadable = this.#unreadable.get(item.id)
        if (unreadable === undefined) continue
        await this.deadLetter([item], unreadable.error, unreadable)
        this.counts.deadLettered++
        this.#unreadable.delete(item.id)
      }
    }
    if (items.length > 0) await this.process(items)
    // Flushed or dead-lettered: either way done with. Acknowledged and taken off the stream
    // (write-behind-ack.lua), so the stream's length stays the lag.
    const ids = all.map((item) => item.id)
    await this.#reader.larderWriteBehindAck(this.#stream, this.options.name, ...ids)
  }

  /**
   * `raw`: the bytes of an entry that could not be decoded, kept as they were. Rejects unless every
   * write landed, so the batch is not acknowledged and stays pending (claimed and tried again later).
   */
  async deadLetter(items: Batch<T>, error: unknown, raw?: { kind: Buffer; payload: Buffer }): Promise<void> {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
    const pipeline = this.#reader.pipeline()
    for (const item of items) {
      const encoded = raw ?? encode(item.value)
      pipeline.xadd(
        this.#dead,
        '*',
        'id',
        item.id,
        'k',
        item.key,
        'c',
        encoded.kind,
        'v',
        encoded.payload,
        'error',
        message,
      )
    }
    for (const [failed] of (await pipeline.exec()) ?? []) if (failed) throw failed
  }

  async stats(): Promise<WriteBehindStats> {
    const lag = await this.#guarded('xlen', () => this.#client.xlen(this.#stream))
    return { durable: true, ...this.counts, lag }
  }

  async close(): Promise<void> {
    if (this.closing) return this.#loop
    this.closing = true
    this.wakeUp()
    // Writes already made and not yet sent are recorded before the last reads (recorded() also waits
    // for the writes that reach the batch late, after their tags' versions; drain() sends it at once).
    await Promise.all([this.recorded(), this.#batch.drain()])
    await this.#loop
    // What is still waiting (written by this process or others) is flushed before close resolves.
    try {
      for (let items = await this.#read(false); items.length > 0; items = await this.#read(false)) {
        await this.#handle(items)
      }
    } finally {
      await this.#reader.quit().catch(() => this.#reader.disconnect())
    }
  }
}

/**
 * A second connection for the consumer's blocking reads: a `commandTimeout` shorter than `BLOCK`
 * (Larder's own clients have `4 × timeout`) would fail every idle read.
 */
function blockingDuplicate(client: RedisClient, commandTimeout: number): RedisClient {
  // ioredis's auto-pipelining mangles XREADGROUP ("unknown command 'GROUP'"): off for the reader.
  if (client.isCluster) {
    const cluster = client as Cluster
    return cluster.duplicate([], {
      enableAutoPipelining: false,
      redisOptions: { ...cluster.options.redisOptions, commandTimeout },
    })
  }
  return (client as Redis).duplicate({ commandTimeout, enableAutoPipelining: false })
}

/** What writes of a batch share in write-behind.lua: their options, kind and tags, sent once. */
interface Profile {
  options: ResolvedEntryOptions
  kind: string
  ttl: number
  tags: string
}

/** Most profiles compared before a write gets a new one (a batch of writes that all differ stays linear). */
const PROFILE_SEARCH = 8

/** The 1-based number of the item's profile, its arguments pushed to `args` when it is new. */
function profileNumber(profiles: Profile[], item: BatchItem, args: Array<string | number | Buffer>): number {
  const o = item.options
  const tags = item.tagVersions.length === 0 ? '' : formatTags(o.tags, item.tagVersions)
  const kind = item.encoded.kind
  const searched = Math.min(profiles.length, PROFILE_SEARCH)
  for (let i = 0; i < searched; i++) {
    const p = profiles[i] as Profile
    if (p.kind !== kind || p.ttl !== item.ttl || p.tags !== tags) continue
    const q = p.options
    if (
      q === o ||
      (q.ttl === o.ttl &&
        q.staleWhileRevalidate === o.staleWhileRevalidate &&
        q.staleIfError === o.staleIfError &&
        q.earlyRefresh === o.earlyRefresh)
    ) {
      return i + 1
    }
  }
  profiles.push({ options: o, kind, ttl: item.ttl, tags })
  // The stale windows apply to values, not to cached misses (negativeTtl), as in RedisTier.set.
  const whole = item.ttl === o.ttl
  args.push(
    '',
    kind,
    item.ttl,
    whole ? o.staleWhileRevalidate : 0,
    whole ? o.staleIfError : 0,
    0,
    o.earlyRefresh,
    tags,
  )
  return profiles.length
}

function formatTags(tags: readonly string[], versions: readonly string[]): string {
  let text = ''
  for (let i = 0; i < tags.length; i++) text += `${tags[i]}\n${versions[i]}\n`
  return text
}
