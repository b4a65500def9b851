import type { ChildProcess } from 'node:child_process'
import { rmSync } from 'node:fs'
import { onExit } from 'signal-exit'

const children = new Set<ChildProcess>()
const dirs = new Set<string>()
let hooked = false

// signal-exit covers the normal 'exit' event and fatal signals such as tap's SIGALRM on
// timeout or SIGTERM, where a plain process.on('exit') handler would never run. It shares
// one handler chain with tap's own copy, so it does not stop tap from re-raising the signal.
function hook(): void {
  if (hooked) return
  hooked = true
  onExit(() => {
    // Only synchronous work is possible here: kill hard, do not wait.
    for (const child of children) {
      try {
        child.kill('SIGKILL')
      } catch {
        // Already gone.
      }
    }
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
  })
}

/** Kill `child` if this process exits while it is still running. */
export function trackChild(child: ChildProcess): void {
  hook()
  children.add(child)
  child.once('exit', () => children.delete(child))
}

/** Remove `dir` if this process exits before `untrackDir` is called. */
export function trackDir(dir: string): void {
  hook()
  dirs.add(dir)
}

export function untrackDir(dir: string): void {
  dirs.delete(dir)
}
