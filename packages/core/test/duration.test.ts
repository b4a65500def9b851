import { parseDuration } from '@larder/core'
import t from 'tap'

t.test('parses numbers and unit strings to milliseconds', async (t) => {
  t.equal(parseDuration(250), 250, 'a number is milliseconds')
  t.equal(parseDuration('250ms'), 250, 'ms')
  t.equal(parseDuration('90s'), 90_000, 'seconds')
  t.equal(parseDuration('10m'), 600_000, 'minutes')
  t.equal(parseDuration('1h'), 3_600_000, 'hours')
  t.equal(parseDuration('7d'), 604_800_000, 'days')
  t.equal(parseDuration('1.5s'), 1_500, 'fractions')
  t.equal(parseDuration('42'), 42, 'a bare numeric string is milliseconds')
})

t.test('a bad duration is a clear error naming the option', async (t) => {
  for (const bad of [
    'ten minutes',
    '10 parsecs',
    '-5s',
    -1,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    null,
    {},
    '',
  ]) {
    t.throws(
      () => parseDuration(bad, 'ttl'),
      { name: 'LarderError', code: 'LARDER_INVALID_DURATION', message: /^ttl: expected/ },
      `rejects ${String(bad)}`,
    )
  }
})
