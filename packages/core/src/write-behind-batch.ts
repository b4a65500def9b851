/**
 * Gathers the writes made close together so they share one Redis call: those added before the event
 * loop's next check phase (`setImmediate`), or the first `max` of them, go out as one batch. Every
 * write of a batch gets the batch's promise, which settles when the batch's call does: one promise
 * per batch, not per write.
 */
export class WriteBatch<I> {
  readonly #send: (items: I[]) => Promise<void>
  readonly #max: number
  #items: I[] = []
  #done: Promise<void> | undefined
  #resolve: () => void = noop
  #reject: (error: unknown) => void = noop
  #scheduled = false
  /** Batches sent and not yet settled, for `drain`. */
  readonly #inFlight = new Set<Promise<void>>()

  constructor(send: (items: I[]) => Promise<void>, max: number) {
    this.#send = send
    this.#max = max
  }

  add(item: I): Promise<void> {
    if (this.#items.length === 0) {
      this.#done = new Promise<void>((resolve, reject) => {
        this.#resolve = resolve
        this.#reject = reject
      })
      if (!this.#scheduled) {
        this.#scheduled = true
        setImmediate(this.#onCheck)
      }
    }
    this.#items.push(item)
    const done = this.#done as Promise<void>
    if (this.#items.length >= this.#max) this.#flush()
    return done
  }

  /** Sends what is gathered now; resolves once every batch sent has settled (never rejects). */
  async drain(): Promise<void> {
    this.#flush()
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight])
  }

  readonly #onCheck = (): void => {
    this.#scheduled = false
    this.#flush()
  }

  #flush(): void {
    const items = this.#items
    if (items.length === 0) return
    const resolve = this.#resolve
    const reject = this.#reject
    this.#items = []
    this.#done = undefined
    let sending: Promise<void>
    try {
      sending = this.#send(items)
    } catch (error) {
      sending = Promise.reject(error)
    }
    const sent = sending.then(resolve, reject)
    this.#inFlight.add(sent)
    sent.then(() => this.#inFlight.delete(sent))
  }
}

function noop(): void {}
