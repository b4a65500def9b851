import { describe } from './duration.js'
import { LarderError } from './errors.js'

/** A compiled template: fills `{root.path}` placeholders from a context object. */
export type Template = (context: Readonly<Record<string, unknown>>) => string

const PLACEHOLDER = /\{([^{}]*)\}/g
const PATH = /^[A-Za-z_$][\w$]*(\.[\w$-]+)+$/

/**
 * Compiles `'product:{params.id}'` once, at registration. Placeholders must start with one of `roots`
 * (e.g. `params`, `query`, `body`, `response`); a placeholder that resolves to nothing, an object or an
 * over-long string throws when filled, so a template never silently becomes `'product:undefined'`.
 * `check` sees each filled-in value (not the template's literal text) and may throw.
 */
export function compileTemplate(
  template: string,
  roots: readonly string[],
  name = 'template',
  check: (value: string) => string = (value) => value,
): Template {
  if (typeof template !== 'string' || template.length === 0) {
    throw new LarderError(
      'LARDER_INVALID_TEMPLATE',
      `${name}: expected a non-empty string, got ${describe(template)}`,
    )
  }
  const parts: Array<string | string[]> = []
  let last = 0
  for (const match of template.matchAll(PLACEHOLDER)) {
    const path = (match[1] as string).trim()
    if (!PATH.test(path) || !roots.includes(path.split('.')[0] as string)) {
      throw new LarderError(
        'LARDER_INVALID_TEMPLATE',
        `${name}: expected placeholders like {${roots[0]}.id} (roots: ${roots.join(', ')}), got {${path}} in ${JSON.stringify(template)}`,
      )
    }
    parts.push(template.slice(last, match.index), path.split('.'))
    last = (match.index as number) + match[0].length
  }
  parts.push(template.slice(last))
  const literal = parts.length === 1 ? template : undefined
  if (literal !== undefined) return () => literal
  return (context) => {
    let out = ''
    for (const part of parts) {
      if (typeof part === 'string') out += part
      else out += check(fill(context, part, template))
    }
    return out
  }
}

function fill(context: Readonly<Record<string, unknown>>, path: string[], template: string): string {
  let value: unknown = context
  for (const segment of path) {
    value =
      value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[segment] : undefined
  }
  if (typeof value === 'number' && Number.isFinite(value)) return String(value)
  if (typeof value === 'boolean') return String(value)
  if (typeof value === 'string' && value.length > 0 && value.length <= 256) return value
  throw new LarderError(
    'LARDER_TEMPLATE_UNRESOLVED',
    `{${path.join('.')}} in ${JSON.stringify(template)}: expected a string (1-256 characters), number or boolean, got ${describe(value)}`,
  )
}
