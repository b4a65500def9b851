// Starts apps/demo-api once it exists; until the demo issue lands it says so plainly.
import { existsSync } from 'node:fs'

const entry = new URL('../apps/demo-api/dist/server.js', import.meta.url)
if (existsSync(entry)) {
  await import(entry.href)
} else {
  console.log(
    'The demo API (apps/demo-api) is coming soon: the engine (@larder/core) is built; the demo lands with its own issue.',
  )
}
