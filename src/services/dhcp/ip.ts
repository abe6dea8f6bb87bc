/** IPv4 addresses as dotted strings and as unsigned 32-bit integers, and CIDR subnets. */

const QUAD = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function isIPv4(s: string): boolean {
  return QUAD.test(s);
}

export function ipToInt(s: string): number {
  if (!isIPv4(s)) throw new Error(`not an IPv4 address: ${JSON.stringify(s)}`);
  const p = s.split('.');
  return ((Number(p[0]) << 24) | (Number(p[1]) << 16) | (Number(p[2]) << 8) | Number(p[3])) >>> 0;
}

export function intToIp(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export interface Cidr {
  /** The network address as an integer. */
  readonly network: number;
  readonly prefix: number;
  readonly mask: number;
  /** The directed broadcast address as an integer. */
  readonly broadcast: number;
}

/** Parse `10.77.0.0/24`; the address must be the network address (no host bits). */
export function parseCidr(s: string): Cidr {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(s);
  if (!m || !isIPv4(m[1]!) || Number(m[2]) > 32 || Number(m[2]) < 1)
    throw new Error(`not an IPv4 subnet in CIDR form (like 10.77.0.0/24): ${JSON.stringify(s)}`);
  const prefix = Number(m[2]);
  const mask = prefix === 32 ? 0xffffffff : ~(0xffffffff >>> prefix) >>> 0;
  const addr = ipToInt(m[1]!);
  if ((addr & mask) >>> 0 !== addr)
    throw new Error(
      `subnet ${s} has host bits set: the network is ${intToIp((addr & mask) >>> 0)}/${prefix}`,
    );
  return { network: addr, prefix, mask, broadcast: (addr | ~mask) >>> 0 };
}

export function inCidr(c: Cidr, ip: number): boolean {
  return (ip & c.mask) >>> 0 === c.network;
}
