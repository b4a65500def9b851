import { fileURLToPath } from 'node:url'
import { type Cache, type CacheStats, createCache } from '@larder/core'
import { type ChildProcessHandle, runNodeScript, sharedRedis, sharedRedisUrl } from '@larder/test-support'
import t, { type Test } from 'tap'

const workerFile = fileURLToPath(new URL('./fixtures/cache-worker.ts', import.meta.url))
const { redis, prefix } = sharedRedis(t)

/** A cache in another OS process, driven through a Redis list (the child has no stdin). */
interface Worker {
  handle: ChildProcessHandle
  /** The Redis list the worker pops its commands from. */
  control: string
  /** Where the child resolved '@larder/core' to. */
  core: string
}

type Command =
  | { op: 'wrapMany'; key: string; n: number; loaderMs: number; value: string }
  | { op: 'set'; key: string; value: string; tags?: string[] }
  | { op: 'get'; key: string }
  | { op: 'block'; ms: number }
  | { op: 'close' }

interface Reply {
  id: number
  error?: string
  loaderCalls?: number
  values?: string[]
  found?: boolean
  value?: string | null
  blockedUntil?: number
  stats?: CacheStats
}

let nextId = 1

async function startWorker(t: Test, p: string, name: string): Promise<Worker> {
  const control = `${p}control:${name}`
  const handle = runNodeScript(workerFile, {
    env: { REDIS_URL: sharedRedisUrl, PREFIX: p, CONTROL: control },
  })
  const worker: Worker = { handle, control, core: '' }
  t.teardown(async () => {
    const exited = handle.exit()
    try {
      await ask(worker, { op: 'close' }, 3_000)
    } catch {
      handle.kill('SIGKILL')
    }
    await exited
  })
  const ready = JSON.parse(await handle.waitForLine(/^\{"ready":true/, 8_000)) as { core: string }
  worker.core = ready.core
  return worker
}

function encode(id: number, command: Command): string {
  return JSON.stringify({ id, ...command })
}

async function answer(worker: Worker, id: number, timeout: number): Promise<Reply> {
  const reply = JSON.parse(await worker.handle.waitForLine(new RegExp(`^\\{"id":${id},`), timeout)) as Reply
  if (reply.error !== undefined) throw new Error(`worker failed command ${id}: ${reply.error}`)
  return reply
}

/** Sends one command and resolves with the worker's answer. */
async function ask(worker: Worker, command: Command, timeout = 8_000): Promise<Reply> {
  const id = nextId++
  await redis.rpush(worker.control, encode(id, command))
  return answer(worker, id, timeout)
}

/** A cache in this (the parent) process, on the same prefix. */
async function open(t: Test, p: string): Promise<Cache> {
  // A generous timeout: it also bounds how long invalidations wait for the child's acknowledgement.
  const cache = createCache({ redis: sharedRedisUrl, prefix: p, timeout: 3_000 })
  await cache.ready()
  t.teardown(() => cache.close())
  return cache
}

t.test('the child process runs @larder/core from source through the TypeScript loader', async (t) => {
  const worker = await startWorker(t, prefix('loader'), 'only')
  t.match(worker.core, /\/packages\/core\/src\/index\.ts$/, "the child resolved '@larder/core' to its source")
})

t.test('two processes, 100 concurrent misses each: one loader call in total', async (t) => {
  const p = prefix('mp-flight')
  const [one, two] = await Promise.all([startWorker(t, p, 'one'), startWorker(t, p, 'two')])
  // Both workers are idle on BLPOP; one MULTI hands them their command at the same moment.
  const command: Command = { op: 'wrapMany', key: 'hot', n: 100, loaderMs: 300, value: 'loaded once' }
  const ids = [nextId++, nextId++] as const
  await redis
    .multi()
    .rpush(one.control, encode(ids[0], command))
    .rpush(two.control, encode(ids[1], command))
    .exec()
  const replies = await Promise.all([answer(one, ids[0], 8_000), answer(two, ids[1], 8_000)])

  const calls = replies.map((reply) => reply.loaderCalls ?? -1)
  t.equal(
    calls[0]! + calls[1]!,
    1,
    `one loader call across both processes (per process: ${calls.join(', ')})`,
  )
  for (const [i, reply] of replies.entries()) {
    t.same(reply.values, ['loaded once'], `process ${i + 1}: all 100 callers got the value`)
    t.equal(reply.stats?.coalesced, 99, `process ${i + 1}: 99 callers joined its own first call`)
  }
  const waiter = replies.find((reply) => reply.loaderCalls === 0)
  t.ok(
    (waiter?.stats?.lockWaits ?? 0) >= 1,
    'the process that did not load waited on the lock (the misses really overlapped)',
  )
})

t.test('the bus: once an invalidation resolves, no other process serves its old L1 copy', async (t) => {
  const p = prefix('mp-bus')
  const child = await startWorker(t, p, 'child')
  const parent = await open(t, p)

  /** Has the child put `key` = 'old' in its L1 and serve it from there. */
  async function cachedInChild(key: string, tags?: string[]): Promise<void> {
    await ask(
      child,
      tags === undefined ? { op: 'set', key, value: 'old' } : { op: 'set', key, value: 'old', tags },
    )
    const before = (await ask(child, { op: 'get', key })).stats?.l1Hits ?? 0
    const read = await ask(child, { op: 'get', key })
    t.equal(read.value, 'old', `the child serves ${key}`)
    t.equal(read.stats?.l1Hits, before + 1, `the child serves ${key} from its L1`)
  }

  await cachedInChild('tagged', ['team'])
  await parent.invalidateTags(['team'])
  t.equal(
    (await ask(child, { op: 'get', key: 'tagged' })).found,
    false,
    'invalidateTags: the child no longer serves it',
  )

  await cachedInChild('deleted')
  await parent.delete('deleted')
  t.equal(
    (await ask(child, { op: 'get', key: 'deleted' })).found,
    false,
    'delete: the child no longer serves it',
  )

  await cachedInChild('replaced')
  await parent.set('replaced', 'new')
  t.equal(
    (await ask(child, { op: 'get', key: 'replaced' })).value,
    'new',
    'set: the child serves the new value',
  )
})

t.test('an invalidation waits until a busy process has dropped its copy', async (t) => {
  const p = prefix('mp-busy')
  const child = await startWorker(t, p, 'child')
  const parent = await open(t, p)
  await ask(child, { op: 'set', key: 'k', value: 'old', tags: ['team'] })
  t.equal((await ask(child, { op: 'get', key: 'k' })).value, 'old', 'the child serves k from its L1')

  // The child's event loop is stuck for 500 ms: it cannot act on the bus message until then.
  const blocked = await ask(child, { op: 'block', ms: 500 })
  await parent.invalidateTags(['team'])
  const resolvedAt = Date.now()
  t.ok(
    resolvedAt >= (blocked.blockedUntil ?? Number.POSITIVE_INFINITY),
    'invalidateTags resolved only after the busy child could act on it (it waited for the acknowledgement)',
  )
  t.equal((await ask(child, { op: 'get', key: 'k' })).found, false, 'and the child no longer serves k')
})
