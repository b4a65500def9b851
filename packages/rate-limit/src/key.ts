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
  if (!ip.includes(':')) return ip
  const address = ip.split('%')[0] as string
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address)
  if (mapped) return mapped[1] as string
  const [head = '', tail] = address.split('::')
  const first = head === '' ? [] : head.split(':')
  const last = tail === undefined || tail === '' ? [] : tail.split(':')
  // A dotted IPv4 tail stands for two groups.
  const lastCount = last.length + (last.at(-1)?.includes('.') ? 1 : 0)
  const zeros = tail === undefined ? [] : Array<string>(Math.max(0, 8 - first.length - lastCount)).fill('0')
  const groups = [...first, ...zeros, ...last].slice(0, 4)
  while (groups.length < 4) groups.push('0')
  return `${groups.map((group) => Number.parseInt(group, 16).toString(16)).join(':')}::/64`
}
