import { setTimeout as sleep } from 'node:timers/promises'
import type { Redis } from 'ioredis'

/** Redis's clock, in ms: the one the Lua scripts decide on. */
export async function redisNow(client: Redis): Promise<number> {
  const [seconds, micros] = await client.time()
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)
}

/** Sleeps until Redis's clock is `phase` ms (plus a few) into a fixed window of `window` ms. */
export async function untilPhase(client: Redis, window: number, phase: number): Promise<void> {
  const now = await redisNow(client)
  let wait = phase - (now % window)
  if (wait <= 0) wait += window
  await sleep(wait + 3)
}

/**
 * Real clocks drift on a busy host: a scenario whose steps did not land where it needs them (a batch
 * split by a window edge, a phase too late to mean anything) returns false and is run again, a few times.
 */
export async function attempt(
  fail: (message: string) => void,
  scenario: () => Promise<boolean>,
): Promise<void> {
  for (let i = 0; i < 4; i++) if (await scenario()) return
  fail('the timing the scenario needs never happened in 4 attempts')
}
