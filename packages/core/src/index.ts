export { LarderError } from './errors.js'
export { type Duration, parseDuration } from './duration.js'
