/**
 * The IPC protocol between an HTTP scenario (the parent, see child-server.ts) and the Fastify server it
 * forks, and the child's side of it:
 *
 * - the child builds and checks its server, listens on a free loopback port, sends `ready`;
 * - `start`: runs the child's `beforeStart` (if any), snapshots its CPU time, answers `started`;
 * - `stop`: answers `stopped` with the CPU and wall time since `start`, plus the child's own figures;
 * - `close`: closes Fastify (and Redis) and exits.
 */
import { performance } from 'node:perf_hooks'
import type { FastifyInstance } from 'fastify'

export type ToChild = { type: 'start' } | { type: 'stop' } | { type: 'close' }

/** `Stopped` is what a child adds to `stopped` (its counters since `start`). */
export type FromChild<Stopped extends object = object> =
  | { type: 'ready'; port: number }
  | { type: 'started' }
  | ({ type: 'stopped'; cpuMicros: number; wallMs: number } & Stopped)
  | { type: 'failed'; message: string }

export interface ChildHooks<Stopped extends object> {
  /** Work before the CPU snapshot of each `start` (not measured). */
  beforeStart?(): Promise<void>
  /** Called at each `start`, right after the CPU snapshot: take the counters' baseline. */
  started?(): void
  /** The child's own figures for `stopped`. */
  stopped(): Stopped
  /** Closes what the server holds besides Fastify (e.g. Redis). */
  close?(): Promise<unknown>
}

/** Listens on a free loopback port and answers the parent until it sends `close` (or goes away). */
export async function serveParent<Stopped extends object>(
  fastify: FastifyInstance,
  hooks: ChildHooks<Stopped>,
): Promise<void> {
  const send = (message: FromChild<Stopped>): void => {
    process.send?.(message)
  }
  await fastify.listen({ host: '127.0.0.1', port: 0 })
  const address = fastify.server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  let cpu = process.cpuUsage()
  let wall = performance.now()
  process.on('message', (message: ToChild) => {
    if (message.type === 'start') {
      ;(hooks.beforeStart?.() ?? Promise.resolve()).then(
        () => {
          cpu = process.cpuUsage()
          wall = performance.now()
          hooks.started?.()
          send({ type: 'started' })
        },
        (error: unknown) => send({ type: 'failed', message: String(error) }),
      )
    } else if (message.type === 'stop') {
      const used = process.cpuUsage(cpu)
      const wallMs = performance.now() - wall
      send({ type: 'stopped', cpuMicros: used.user + used.system, wallMs, ...hooks.stopped() })
    } else if (message.type === 'close') {
      fastify
        .close()
        .then(() => hooks.close?.())
        .finally(() => process.exit(0))
    }
  })
  // The parent is gone (it failed, or was stopped): do not outlive it.
  process.on('disconnect', () => process.exit(0))
  send({ type: 'ready', port: address.port })
}

/** Runs the child's `main`, reporting a failure to the parent before exiting. */
export function runChild(main: () => Promise<void>): void {
  main().catch((error: unknown) => {
    process.send?.({ type: 'failed', message: error instanceof Error ? error.stack : String(error) })
    process.exit(1)
  })
}
