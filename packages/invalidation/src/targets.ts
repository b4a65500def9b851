import { compileTemplate, LarderError, validateTags } from '@larder/core'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { RouteInvalidateConfig, TargetList } from './types.js'

const ROOTS = ['params', 'query', 'body', 'response'] as const
const GLOB = /[*?[\]\\]/
const PLACEHOLDER = /\{[^{}]*\}/
/** @larder/core reserves keys starting with this for tag versions (its `TAG_SPACE`). */
const TAG_SPACE = '{t}'
const KINDS = ['tags', 'keys', 'patterns'] as const
type Kind = (typeof KINDS)[number]

export type Resolved = Record<Kind, string[]>

/** One compiled list; `needsResponse` tells whether it can only be filled once the reply exists. */
interface CompiledList {
  needsResponse: boolean
  fill(request: FastifyRequest, reply: FastifyReply | undefined, payload: unknown): string[]
}

export interface CompiledTargets {
  /** Fills what depends only on the request, before the handler runs (so bad input stops the write). */
  beforeHandler(request: FastifyRequest): Partial<Resolved>
  /** Fills the rest once the handler succeeded. */
  afterHandler(request: FastifyRequest, reply: FastifyReply, payload: unknown): Partial<Resolved>
}

function preview(value: string): string {
  return `${JSON.stringify(value.slice(0, 40))}${value.length > 40 ? '…' : ''}`
}

/** Values filled into a template come from requests: short, and never glob characters. */
function checkValue(value: string, kind: Kind, template: string): string {
  if (value.length === 0 || value.length > 256 || /\s/.test(value) || GLOB.test(value)) {
    throw new LarderError(
      'LARDER_INVALID_TARGET',
      `config.invalidate.${kind} ${JSON.stringify(template)}: expected 1-256 characters without whitespace or glob characters, got ${preview(value)}`,
    )
  }
  return value
}

/**
 * The whole target, checked as the engine will check it, so that it is refused before the handler
 * (a 400) rather than after the write (a 500): a tag of 1-256 characters without whitespace or globs, a
 * key outside the engine's reserved tag space, a pattern of 1-1024 characters.
 */
function checkTarget(value: string, kind: Kind, source: string): string {
  let expected: string | undefined
  if (kind === 'tags') {
    try {
      validateTags([value])
    } catch {
      expected = 'a tag of 1-256 characters without whitespace or * ? [ ]'
    }
  } else if (kind === 'keys' && (value.length === 0 || value.startsWith(TAG_SPACE))) {
    expected = `a non-empty key not starting with the reserved '${TAG_SPACE}'`
  } else if (kind === 'patterns' && (value.length === 0 || value.length > 1024)) {
    expected = 'a glob of 1-1024 characters'
  }
  if (expected === undefined) return value
  throw new LarderError(
    'LARDER_INVALID_TARGET',
    `config.invalidate.${kind} ${source}: expected ${expected}, got ${preview(value)}`,
  )
}

function compileList(list: TargetList | undefined, kind: Kind, route: string): CompiledList | undefined {
  if (list === undefined) return undefined
  if (typeof list === 'function') {
    return {
      needsResponse: true,
      fill: (request, reply, payload) => {
        const values = list(request, reply as FastifyReply, payload)
        if (!Array.isArray(values))
          throw new LarderError(
            'LARDER_INVALID_TARGET',
            `config.invalidate.${kind} of ${route}: the function must return an array of strings`,
          )
        // The function is the application's code: its patterns may hold globs.
        return values.map((value) => checkTarget(String(value), kind, `function of ${route}`))
      },
    }
  }
  if (!Array.isArray(list) || !list.every((item) => typeof item === 'string' && item.length > 0)) {
    throw new LarderError(
      'LARDER_INVALID_OPTION',
      `config.invalidate.${kind} of ${route}: expected templates (non-empty strings) or a function`,
    )
  }
  // The template's literal text may hold `*` (patterns); what is filled in from the request may not.
  const templates = list.map((text) => {
    const source = JSON.stringify(text)
    const filled = compileTemplate(text, ROOTS, `config.invalidate.${kind} of ${route}`, (value) =>
      checkValue(value, kind, text),
    )
    // A template without placeholders is the same on every request: check it once, at registration.
    if (!PLACEHOLDER.test(text)) checkTarget(text, kind, `of ${route} ${source}`)
    return {
      fill: (context: Readonly<Record<string, unknown>>) => checkTarget(filled(context), kind, source),
      needsResponse: text.includes('{response.'),
    }
  })
  return {
    needsResponse: templates.some((template) => template.needsResponse),
    fill: (request, _reply, payload) => {
      const context = { params: request.params, query: request.query, body: request.body, response: payload }
      return templates.map(({ fill }) => fill(context))
    },
  }
}

export function compileTargets(config: RouteInvalidateConfig, route: string): CompiledTargets {
  if (typeof config !== 'object' || config === null) {
    throw new LarderError('LARDER_INVALID_OPTION', `config.invalidate of ${route}: expected an object`)
  }
  for (const name of Object.keys(config)) {
    if (!(KINDS as readonly string[]).includes(name)) {
      throw new LarderError(
        'LARDER_UNKNOWN_OPTION',
        `config.invalidate of ${route}: unknown option '${name}'`,
      )
    }
  }
  const lists = KINDS.map((kind) => [kind, compileList(config[kind], kind, route)] as const)
  const fillWhere = (
    late: boolean,
    request: FastifyRequest,
    reply: FastifyReply | undefined,
    payload: unknown,
  ) => {
    const out: Partial<Resolved> = {}
    for (const [kind, list] of lists)
      if (list !== undefined && list.needsResponse === late) out[kind] = list.fill(request, reply, payload)
    return out
  }
  return {
    beforeHandler: (request) => fillWhere(false, request, undefined, undefined),
    afterHandler: (request, reply, payload) => fillWhere(true, request, reply, payload),
  }
}
