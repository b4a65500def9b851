// tsc copies only what it compiles; the Lua scripts are read at run time next to the compiled store.
import { cpSync, existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'

for (const dir of ['packages', 'apps']) {
  if (!existsSync(dir)) continue
  for (const name of readdirSync(dir)) {
    const src = join(dir, name, 'src')
    if (!existsSync(src)) continue
    cpSync(src, join(dir, name, 'dist'), {
      recursive: true,
      filter: (path) => statSync(path).isDirectory() || path.endsWith('.lua'),
    })
  }
}
