import type { Logger, RedisClient } from '../types.js'

/** What one process tells the others: drop these keys, these tags, keys matching this glob, or all. */
export type BusMessage =
  | { type: 'keys'; keys: string[] }
  | { type: 'tags'; tags: string[] }
  | { type: 'pattern'; pattern: string }
  | { type: 'clear' }

interface WireMessage {
  /** The sending process. */
  o: string
  m: BusMessage
  /** Set when the sender waits for every receiver to confirm it has acted. */
  a?: number
}

interface AckWait {
  received: number
  expected: number
  resolve: () => void
}

export interface BusOptions {
  client: RedisClient
  channel: string
  origin: string
  logger: Logger
  /** How long to wait for acknowledgements before going on without them. */
  ackTimeout: number
  onMessage: (message: BusMessage) => void
  onReconnect: () => void
  /** Publishes on the command connection (a subscribed connection cannot). */
  publish: (channel: string, text: string) => Promise<unknown>
}

/**
 * Redis pub/sub on its own connection. Invalidations ask for acknowledgements, so `invalidateTags()`
 * resolves only once every other subscribed process has dropped its L1 copies (or the wait times out).
 * After a reconnect `onReconnect` runs, since messages sent meanwhile are lost.
 */
export class Bus {
  readonly #subscriber: RedisClient
  readonly #options: BusOptions
  readonly #subscribed: Promise<void>
  readonly #acks = new Map<number, AckWait>()
  #nextAck = 1
  #closed = false
  /** How every message this process sends begins (see `encode` and `send`). */
  readonly #ownPrefix: string

  constructor(options: BusOptions) {
    this.#options = options
    this.#ownPrefix = `{"o":${JSON.stringify(options.origin)},`
    const subscriber = options.client.duplicate()
    this.#subscriber = subscriber
    let connected = false
    subscriber.on('error', () => {})
    subscriber.on('ready', () => {
      if (connected) {
        options.logger.warn(
          { larder: 'bus' },
          'larder: bus reconnected, dropping L1 (invalidations may have been missed)',
        )
        options.onReconnect()
      }
      connected = true
    })
    subscriber.on('message', (channel: string, text: string) => this.#receive(channel, text))
    this.#subscribed = subscriber.subscribe(options.channel, this.#ackChannel(options.origin)).then(
      () => {},
      (error: unknown) => {
        if (!this.#closed)
          options.logger.error({ err: error, larder: 'bus' }, 'larder: bus subscription failed')
      },
    )
  }

  #ackChannel(origin: string): string {
    return `${this.#options.channel}:ack:${origin}`
  }

  #receive(channel: string, text: string): void {
    if (channel !== this.#options.channel) {
      const wait = this.#acks.get(Number(text))
      if (wait !== undefined && ++wait.received >= wait.expected) wait.resolve()
      return
    }
    // This process's own messages come back too; they are known by their first bytes, unparsed.
    if (text.startsWith(this.#ownPrefix)) return
    let wire: WireMessage
    try {
      wire = JSON.parse(text) as WireMessage
    } catch {
      this.#options.logger.warn({ larder: 'bus' }, 'larder: ignored a malformed bus message')
      return
    }
    if (wire.o === this.#options.origin || wire.m === null || typeof wire.m !== 'object') return
    this.#options.onMessage(wire.m)
    if (typeof wire.a === 'number') {
      this.#options.publish(this.#ackChannel(String(wire.o)), String(wire.a)).catch(() => {})
    }
  }

  /**
   * Sends a message through `send`, whose result tells how many subscribers got it (this process
   * included), and resolves once all the others have acknowledged it, or after `ackTimeout`.
   */
  async send<T>(
    message: BusMessage,
    send: (text: string) => Promise<T>,
    receivers: (result: T) => number | Promise<number>,
  ): Promise<T> {
    const ack = this.#nextAck++
    const wire: WireMessage = { o: this.#options.origin, m: message, a: ack }
    const wait: AckWait = { received: 0, expected: Number.POSITIVE_INFINITY, resolve: () => {} }
    const done = new Promise<void>((resolve) => (wait.resolve = resolve))
    this.#acks.set(ack, wait)
    try {
      const result = await send(JSON.stringify(wire))
      wait.expected = (await receivers(result)) - 1
      if (wait.received < wait.expected) await this.#within(done, wait)
      return result
    } finally {
      this.#acks.delete(ack)
    }
  }

  /** Encodes a message nobody acknowledges (a loader's write: no one can hold a newer copy). */
  encode(message: BusMessage): string {
    return JSON.stringify({ o: this.#options.origin, m: message } satisfies WireMessage)
  }

  async #within(done: Promise<void>, wait: AckWait): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const timedOut = await Promise.race([
      done.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), this.#options.ackTimeout))),
    ])
    clearTimeout(timer)
    if (timedOut) {
      this.#options.logger.warn(
        { larder: 'bus', expected: wait.expected, received: wait.received },
        'larder: not every process acknowledged an invalidation in time',
      )
    }
  }

  /** Resolves once subscribed, so invalidations from other processes reach this one. */
  ready(): Promise<void> {
    return this.#subscribed
  }

  async close(): Promise<void> {
    this.#closed = true
    for (const wait of this.#acks.values()) wait.resolve()
    this.#subscriber.disconnect()
  }
}
