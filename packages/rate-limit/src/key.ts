import type { FastifyRequest } from 'fastify'

let lastIp: string | undefined
let lastKey = ''

/**
 * The default key: the client's IP (`request.ip`, which follows Fastify's `trustProxy`). An IPv6
 * client is keyed by its /64: one subscriber usually gets a whole /64, so rotating addresses inside it
 * must not multiply the limit. IPv4-mapped IPv6 addresses count as the IPv4 address.
 */
export function defaultKey(request: FastifyRequest): string {
  const ip = request.ip
  // Keep-alive connections repeat one address: parse it once.
  if (ip !== lastIp) {
    lastKey = clientKey(ip)
    lastIp = ip
  }
  return lastKey
}

export function clientKey(ip: string): string {
  // A proxy may append the client's port: '1.2.3.4:5555', '[2001:db8::1]:5555'.
  const withPort = /^(\d{1,3}(?:\.\d{1,3}){3}):\d+$/.exec(ip) ?? /^\[([^\]]+)\](?::\d+)?$/.exec(ip)
  const bare = withPort ? (withPort[1] as string) : ip
  if (!bare.includes(':')) return bare
  const address = bare.split('%')[0] as string
  const [head = '', tail] = address.split('::')
  const first = head === '' ? [] : head.split(':')
  const last = tail === undefined || tail === '' ? [] : tail.split(':')
  // A dotted IPv4 tail stands for two groups.
  const lastGroup = [...first, ...last].at(-1)
  const dotted = lastGroup?.includes('.') ? lastGroup : undefined
  if (dotted !== undefined) (last.length > 0 ? last : first).pop()
  const count = first.length + last.length + (dotted === undefined ? 0 : 2)
  const zeros = tail === undefined ? [] : Array<string>(Math.max(0, 8 - count)).fill('0')
  const groups = [...first, ...zeros, ...last].map((group) => Number.parseInt(group, 16) || 0)
  // IPv4-mapped (::ffff:a.b.c.d, also written in hex as ::ffff:102:304) is the IPv4 client itself.
  const mapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff
  if (mapped && dotted !== undefined && groups.length === 6) return dotted
  if (mapped && dotted === undefined && groups.length === 8) {
    const [hi = 0, lo = 0] = groups.slice(6)
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`
  }
  const prefix = groups.slice(0, 4)
  while (prefix.length < 4) prefix.push(0)
  return `${prefix.map((group) => group.toString(16)).join(':')}::/64`
}
