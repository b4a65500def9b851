/** How often the offset to Redis's clock is measured again, in ms. */
const RESYNC_MS = 5_000

/**
 * This process's estimate of Redis's clock. Entries keep their times on Redis's clock (set.lua reads
 * TIME), so hosts whose clocks disagree still agree on freshness; a read that is not a Lua script
 * judges them with this offset, measured with TIME (half the round trip taken as the reply's moment)
 * and measured again every few seconds, so a local clock that is stepped is followed soon.
 */
export class RedisClock {
  readonly #time: () => Promise<number[] | string[]>
  /** Redis's clock minus this process's, in ms. */
  #offset = 0
  /** The round trip of the measure behind #offset: the offset is known to within half of it. */
  #rtt = Number.POSITIVE_INFINITY
  #syncedAt = Number.NEGATIVE_INFINITY
  #syncing: Promise<void> | undefined

  constructor(time: () => Promise<number[] | string[]>) {
    this.#time = time
  }

  get offset(): number {
    return this.#offset
  }

  get synced(): boolean {
    return this.#syncedAt !== Number.NEGATIVE_INFINITY
  }

  /** Whether the offset should be measured again. */
  get due(): boolean {
    return Date.now() - this.#syncedAt >= RESYNC_MS
  }

  /** Measures the offset when it is due; resolves once a measure has been taken (at once if recent). */
  sync(): Promise<void> {
    if (!this.due) return Promise.resolve()
    if (this.#syncing !== undefined) return this.#syncing
    const sent = Date.now()
    this.#syncing = this.#time().then(
      (reply) => {
        const received = Date.now()
        const redisMs = Number(reply[0]) * 1_000 + Math.floor(Number(reply[1]) / 1_000)
        const measured = redisMs - (sent + received) / 2
        const rtt = received - sent
        // A slower measure (a busy event loop) is less precise: the earlier offset stays while this one
        // agrees with it to within its own error; a clock that was stepped moves it at once.
        if (rtt <= this.#rtt || Math.abs(measured - this.#offset) > rtt / 2) {
          this.#offset = measured
          this.#rtt = rtt
        }
        this.#syncedAt = received
        this.#syncing = undefined
      },
      (error: unknown) => {
        this.#syncing = undefined
        throw error
      },
    )
    return this.#syncing
  }
}
