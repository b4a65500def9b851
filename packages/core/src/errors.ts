/** Every error Larder throws on purpose carries a stable `code` and an "expected X, got Y" message. */
export class LarderError extends Error {
  readonly code: string

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'LarderError'
    this.code = code
  }
}
