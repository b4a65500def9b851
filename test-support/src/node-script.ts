import { type ChildProcess, spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { trackChild } from './exit-cleanup.js'

export interface RunNodeScriptOptions {
  /** Added to (not replacing) this process's environment, which carries the loader settings. */
  env?: Record<string, string>
  args?: string[]
}

export interface ChildProcessHandle {
  child: ChildProcess
  /** Every stdout line printed so far. */
  lines(): string[]
  /** Resolves with the first stdout line (past or future) matching `re`. Default timeout 5000ms. */
  waitForLine(re: RegExp, timeout?: number): Promise<string>
  /** Resolves with the exit code (null if killed by a signal) once stdout is fully read. */
  exit(): Promise<number | null>
  kill(signal?: NodeJS.Signals): void
}

/**
 * Runs `file` in a second Node process with this process's execArgv, so the loaders tap uses
 * for TypeScript (and its coverage hooks) apply to the child too. stderr is inherited so the
 * child's errors show up in the test output.
 */
export function runNodeScript(file: string, options: RunNodeScriptOptions = {}): ChildProcessHandle {
  const child = spawn(process.execPath, [...process.execArgv, file, ...(options.args ?? [])], {
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  trackChild(child)
  const output: string[] = []
  const reader = createInterface({ input: child.stdout! })
  reader.on('line', (line) => output.push(line))

  let closed = false
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    // 'close', not 'exit': it fires after stdout has ended, so lines() is complete by then.
    child.once('close', (code) => {
      closed = true
      resolve(code)
    })
  })
  // exit() may never be called; a spawn error must not become an unhandled rejection.
  exited.catch(() => {})
  const matches = (line: string, re: RegExp): boolean => line.search(re) !== -1

  return {
    child,
    lines: () => [...output],
    waitForLine(re, timeout = 5000) {
      const seen = output.find((line) => matches(line, re))
      if (seen !== undefined) return Promise.resolve(seen)
      if (closed) return Promise.reject(new Error(`${file} exited without printing a line matching ${re}`))
      return new Promise<string>((resolve, reject) => {
        const done = (): void => {
          clearTimeout(timer)
          reader.off('line', onLine)
          child.off('close', onClose)
        }
        const onLine = (line: string): void => {
          if (!matches(line, re)) return
          done()
          resolve(line)
        }
        const fail = (why: string): void => {
          done()
          reject(
            new Error(`${why} waiting for a line matching ${re} from ${file}; stdout:\n${output.join('\n')}`),
          )
        }
        const onClose = (): void => fail('process exited')
        const timer = setTimeout(() => fail(`timed out after ${timeout}ms`), timeout)
        reader.on('line', onLine)
        child.on('close', onClose)
      })
    },
    exit: () => exited,
    kill(signal = 'SIGTERM') {
      child.kill(signal)
    },
  }
}
