import type { Cluster } from 'ioredis'
import { decode, type Encoded } from '../codec.js'
import type { Entry } from '../entry.js'
import { LarderError } from '../errors.js'
import { escapeGlob, TAG_SPACE } from '../keys.js'
import type { ResolvedEntryOptions } from '../options.js'
import type { RedisClient } from '../types.js'
import { RedisClock } from './clock.js'
import { type Connection, keyPrefixOf } from './connection.js'
import type { RedisGuard } from './guard.js'
import {
  defineScripts,
  type GetReply,
  type ReadReply,
  runGet,
  runRead,
  type ScriptCommands,
} from './scripts.js'

/**
 * A read: the entry, its times moved to this process's clock, or a miss with the ms left on another
 * loader's lock (0: nobody holds it).
 */
export interface RemoteRead {
  entry: Entry | undefined
  lockMs: number
  /** This process's clock when the reply was read (`Date.now()`), for judging the entry. */
  at: number
}

export interface WriteParams {
  options: ResolvedEntryOptions
  ttl: number
  loadMs: number
  tagVersions: readonly string[]
  /** The fencing token from `acquire`, or '' for an unconditional write. */
  token: string
  /** The token the entry keeps afterwards. */
  nextToken: string
  busMessage: string
}

const SCAN_BATCH = 500
const NO_TAGS: string[] = []
/** '0' */
const ZERO = 0x30
/** ',' */
const COMMA = 0x2c

/** An entry as read from Redis, its times on this process's clock. */
interface Found {
  payload: Buffer
  kind: Buffer
  freshUntil: number
  staleUntil: number
  errorUntil: number
  createdAt: number
  loadMs: number
  earlyRefresh: number
  lockMs: number
  at: number
}

/** L2: entries as Redis hashes, every multi-step change one Lua call on keys of a single slot. */
export class RedisTier {
  readonly #client: RedisClient & ScriptCommands
  readonly #isCluster: boolean
  readonly #guard: RedisGuard
  readonly #prefix: string
  readonly #tagPrefix: string
  /** The tag key prefix as Redis sees it: a script builds tag keys itself, so ioredis's `keyPrefix` is added here. */
  readonly #scriptTagPrefix: string
  readonly #tagSeq: string
  readonly #tagTtl: number
  readonly #clock: RedisClock
  readonly channel: string

  constructor(connection: Connection, guard: RedisGuard, options: { prefix: string; tagTtl: number }) {
    this.#client = defineScripts(connection.client)
    this.#isCluster = connection.isCluster
    this.#guard = guard
    this.#prefix = options.prefix
    // All tag versions share one hash slot ({t}) so one script can bump several atomically on a Cluster.
    this.#tagSeq = `${options.prefix}${TAG_SPACE}`
    this.#tagPrefix = `${this.#tagSeq}:`
    this.#scriptTagPrefix = keyPrefixOf(connection.client) + this.#tagPrefix
    this.#tagTtl = options.tagTtl
    this.channel = `${options.prefix}bus`
    this.#clock = new RedisClock(() => this.#guard.run('time', () => this.#client.time()))
  }

  /**
   * `born`: L1's invalidation epoch when this read began, kept on the entry. On a single Redis a read is
   * read.lua: the fields an HMGET would return, with the entry's tags checked in the same call, judged
   * here on this process's estimate of Redis's clock. On a Cluster the tag versions live in another
   * slot, so get.lua judges the entry on its node's clock and a tagged entry's versions cost one MGET.
   */
  get(key: string, born: number): Promise<RemoteRead> {
    if (this.#isCluster) {
      return this.#guard
        .run('get', () => runGet(this.#client, this.#prefix + key))
        .then((reply) => this.#scripted(key, born, reply))
    }
    const read = this.#guard
      .run('get', () => runRead(this.#client, this.#prefix + key, this.#scriptTagPrefix))
      .then((fields) => this.#fields(key, born, fields))
    if (this.#clock.synced) {
      if (this.#clock.due) this.#clock.sync().catch(() => {})
      return read
    }
    // The first read waits for the clock, measured in the same round trip.
    return Promise.all([read, this.#clock.sync()]).then(([result]) => result)
  }

  #scripted(key: string, born: number, reply: GetReply): RemoteRead | Promise<RemoteRead> {
    const at = Date.now()
    if (reply[0] === 0) return { entry: undefined, lockMs: reply[1], at }
    const [, payload, kind, freshMs, staleMs, errorMs, ageMs, loadMs, early, tagText, lockMs] = reply
    // Mostly "0", read without making a string of it.
    const earlyRefresh = early.length === 1 && early[0] === ZERO ? 0 : Number(early.toString('latin1')) || 0
    const found: Found = {
      payload,
      kind,
      freshUntil: at + freshMs,
      staleUntil: at + staleMs,
      errorUntil: at + errorMs,
      createdAt: at - ageMs,
      loadMs,
      earlyRefresh,
      lockMs,
      at,
    }
    // On a Cluster the tag versions live in another slot, out of the script's reach.
    return this.#withTags(key, born, found, tagText, true)
  }

  /** Judges read.lua's reply, tags already checked; anything that is not a whole entry is removed, a miss. */
  #fields(key: string, born: number, fields: ReadReply): RemoteRead | Promise<RemoteRead> {
    // read.lua returns the fields v, m, t and lu in that order; the `as` only names the positions.
    const [payload, meta, tagText, lockUntil] = fields as [
      Buffer | null,
      Buffer | null,
      Buffer | null,
      Buffer | null,
    ]
    const offset = this.#clock.offset
    const at = Date.now()
    if (fields.length === 0) return this.#discard(key, at)
    const lockMs = lockUntil === null ? 0 : Math.max(0, toNumber(lockUntil) - offset - at) || 0
    if (payload === null) return { entry: undefined, lockMs, at }
    if (meta === null || !readMeta(meta)) return this.#discard(key, at)
    const found: Found = {
      payload,
      kind: meta.subarray(0, 1),
      freshUntil: META.fresh - offset,
      staleUntil: META.stale - offset,
      errorUntil: META.error - offset,
      createdAt: META.created - offset,
      loadMs: META.loadMs,
      earlyRefresh: META.early,
      lockMs,
      at,
    }
    return this.#withTags(key, born, found, tagText, false)
  }

  /** Something that is not an entry is in its place: removed (it would never read as one) and a miss. */
  #discard(key: string, at: number): RemoteRead {
    this.#guard.run('unlink', () => this.#client.unlink(this.#prefix + key)).catch(() => {})
    return { entry: undefined, lockMs: 0, at }
  }

  #withTags(
    key: string,
    born: number,
    found: Found,
    tagText: Buffer | null,
    unchecked: boolean,
  ): RemoteRead | Promise<RemoteRead> {
    if (tagText === null) return this.#entry(key, born, found, NO_TAGS)
    const tagged = parseTags(tagText.toString('utf8'))
    if (!unchecked) return this.#entry(key, born, found, tagged.tags)
    return this.#tagsCurrent(tagged).then((current) =>
      current
        ? this.#entry(key, born, found, tagged.tags)
        : { entry: undefined, lockMs: found.lockMs, at: Date.now() },
    )
  }

  #entry(key: string, born: number, found: Found, tags: string[]): RemoteRead {
    const { payload, kind } = found
    let value: unknown
    try {
      value = decode(kind, payload)
    } catch (error) {
      throw new LarderError(
        'LARDER_CORRUPT_ENTRY',
        `entry ${key}: expected a value of kind ${kind}, got unreadable bytes`,
        {
          cause: error,
        },
      )
    }
    return {
      entry: {
        value,
        bytes: payload.length || 1,
        createdAt: found.createdAt,
        freshUntil: found.freshUntil,
        staleUntil: found.staleUntil,
        errorUntil: found.errorUntil,
        loadMs: found.loadMs,
        earlyRefresh: found.earlyRefresh,
        tags,
        born,
        tagsChecked: 0,
      },
      lockMs: found.lockMs,
      at: found.at,
    }
  }

  async #tagsCurrent(tagged: { tags: string[]; versions: string[] }): Promise<boolean> {
    const current = await this.#guard.run('tags', () =>
      this.#client.mget(tagged.tags.map((tag) => this.#tagPrefix + tag)),
    )
    return current.every((version, i) => version === tagged.versions[i])
  }

  /**
   * Writes the entry and publishes the bus message; returns how many subscribers got it, or -1 when the
   * fencing token was no longer the entry's (the write is dropped).
   */
  set(key: string, encoded: Encoded, params: WriteParams): Promise<number> {
    const { options, ttl } = params
    const tags = params.tagVersions.length === 0 ? '' : formatTags(options.tags, params.tagVersions)
    return this.#guard.run('set', () =>
      this.#client.larderSet(
        this.#prefix + key,
        params.token,
        encoded.payload,
        encoded.kind,
        ttl,
        ttl === options.ttl ? options.staleWhileRevalidate : 0,
        ttl === options.ttl ? options.staleIfError : 0,
        params.loadMs,
        options.earlyRefresh,
        tags,
        params.nextToken,
        this.channel,
        params.busMessage,
      ),
    )
  }

  /** 0 when the lock is now ours, else the ms left on the holder's lease. */
  acquire(key: string, token: string, leaseMs: number): Promise<number> {
    return this.#guard.run('acquire', () => this.#client.larderAcquire(this.#prefix + key, token, leaseMs))
  }

  async release(key: string, token: string): Promise<void> {
    await this.#guard.run('release', () => this.#client.larderRelease(this.#prefix + key, token))
  }

  /** The versions of these tags now; taken before a loader runs so an invalidation during it is seen. */
  tagVersions(tags: readonly string[]): Promise<string[]> {
    const keys = tags.map((tag) => this.#tagPrefix + tag)
    return this.#guard.run('tags', () =>
      this.#client.larderTagVersions(keys.length + 1, this.#tagSeq, ...keys, this.#tagTtl),
    )
  }

  /** Returns how many subscribers got the bus message. */
  invalidateTags(tags: readonly string[], busMessage: string): Promise<number> {
    const keys = tags.map((tag) => this.#tagPrefix + tag)
    return this.#guard.run('invalidateTags', () =>
      this.#client.larderInvalidateTags(
        keys.length + 1,
        this.#tagSeq,
        ...keys,
        this.#tagTtl,
        this.channel,
        busMessage,
      ),
    )
  }

  /** Deleting a key also removes its fencing token, so a loader still running cannot write it back. */
  /** Returns how many subscribers got the bus message. */
  async delete(keys: readonly string[], busMessage: string): Promise<number> {
    const client = this.#client
    // Single-key UNLINKs: on a Cluster the keys may live in different slots.
    const replies = await this.#guard.run('delete', () =>
      Promise.all([
        client.publish(this.channel, busMessage),
        ...keys.map((key) => client.unlink(this.#prefix + key)),
      ]),
    )
    return replies[0] ?? 0
  }

  /** SCAN + UNLINK in batches on every master (never KEYS); returns how many keys were removed. */
  async deletePattern(glob: string): Promise<number> {
    const match = escapeGlob(this.#prefix) + glob
    const nodes: RedisClient[] = this.#isCluster ? (this.#client as Cluster).nodes('master') : [this.#client]
    let removed = 0
    for (const node of nodes) {
      let cursor = '0'
      do {
        const [next, keys] = await this.#guard.run('scan', () =>
          node.scan(cursor, 'MATCH', match, 'COUNT', SCAN_BATCH),
        )
        cursor = next
        const doomed = keys.filter((key) => !key.startsWith(this.#tagSeq))
        if (doomed.length > 0) {
          // One UNLINK per key: keys on one Cluster node may still sit in different slots.
          const pipeline = node.pipeline()
          for (const key of doomed) pipeline.unlink(key)
          throwFirstError(await this.#guard.run('unlink', () => pipeline.exec()))
          removed += doomed.length
        }
      } while (cursor !== '0')
    }
    return removed
  }

  /**
   * How many processes listen on the bus. On a single Redis the PUBLISH reply says it; on a Cluster
   * each node counts only its own subscribers, so they are summed over every node.
   */
  async receivers(published: number): Promise<number> {
    if (!this.#isCluster) return published
    const nodes = (this.#client as Cluster).nodes('all')
    const counts = await this.#guard.run('numsub', () =>
      Promise.all(nodes.map((node) => node.pubsub('NUMSUB', this.channel) as Promise<[string, number]>)),
    )
    return counts.reduce((sum, reply) => sum + Number(reply[1]), 0)
  }

  /** Returns how many subscribers got the message. */
  publish(channel: string, text: string): Promise<number> {
    return this.#guard.run('publish', () => this.#client.publish(channel, text))
  }
}

function formatTags(tags: readonly string[], versions: readonly string[]): string {
  let text = ''
  for (let i = 0; i < tags.length; i++) text += `${tags[i]}\n${versions[i]}\n`
  return text
}

function parseTags(text: string): { tags: string[]; versions: string[] } {
  const parts = text.split('\n')
  const tags: string[] = []
  const versions: string[] = []
  for (let i = 0; i + 1 < parts.length; i += 2) {
    tags.push(parts[i] as string)
    versions.push(parts[i + 1] as string)
  }
  return { tags, versions }
}

/** What `readMeta` read last: the times on Redis's clock, the loader's ms and the early-refresh beta. */
const META = { fresh: 0, stale: 0, error: 0, created: 0, loadMs: 0, early: 0 }
let metaAt = 0

/**
 * Reads an entry's 'm' field (`<kind>,<fresh>,<stale>,<error>,<created>,<loadMs>,<early>`, see
 * set.lua) into META without making strings of the four times; false when it is not one.
 */
function readMeta(meta: Buffer): boolean {
  if (meta.length < 2 || meta[1] !== COMMA) return false
  metaAt = 2
  META.fresh = readTime(meta)
  META.stale = readTime(meta)
  META.error = readTime(meta)
  META.created = readTime(meta)
  const comma = meta.indexOf(COMMA, metaAt)
  if (comma < 0) return false
  META.loadMs = Number(meta.toString('latin1', metaAt, comma))
  META.early =
    comma + 2 === meta.length && meta[comma + 1] === ZERO ? 0 : Number(meta.toString('latin1', comma + 1))
  return !Number.isNaN(META.fresh + META.stale + META.error + META.created + META.loadMs + META.early)
}

/** The decimal digits at `metaAt` up to a comma, which is passed; NaN when there are none or no comma. */
function readTime(meta: Buffer): number {
  let value = 0
  const start = metaAt
  let byte = meta[metaAt]
  while (byte !== undefined && byte >= ZERO && byte <= ZERO + 9) {
    value = value * 10 + (byte - ZERO)
    byte = meta[++metaAt]
  }
  if (metaAt === start || byte !== COMMA) return Number.NaN
  metaAt++
  return value
}

/** A decimal number held as bytes; NaN for null or anything else. */
function toNumber(bytes: Buffer | null): number {
  return bytes === null || bytes.length === 0 ? Number.NaN : Number(bytes.toString('latin1'))
}

function throwFirstError(results: Array<[Error | null, unknown]> | null): void {
  for (const [error] of results ?? []) if (error) throw error
}
