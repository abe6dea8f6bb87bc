/** IPv4 addresses as dotted strings and as unsigned 32-bit integers, and CIDR subnets. */

/**
 * A dotted quad as an unsigned 32-bit integer, or -1 when `s` is not one: four decimal parts
 * 0..255 of 1–3 digits, without leading zeros (`01` is not a part) unless `leadingZeros` (the
 * packet encoder's lenience: `010` is 10), nothing else. One pass over the characters, no regular
 * expression or split: it runs several times per packet.
 */
export function quadToInt(s: string, leadingZeros = false): number {
  if (typeof s !== 'string') return -1;
  const n = s.length;
  if (n < 7 || n > 15) return -1;
  let out = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c === 46 /* . */) {
      if (digits === 0 || ++dots > 3) return -1;
      out = out * 256 + part;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits === 1 && part === 0 && !leadingZeros) return -1; // a leading zero
      part = part * 10 + (c - 48);
      if (++digits > 3 || part > 255) return -1;
    } else return -1;
  }
  if (dots !== 3 || digits === 0) return -1;
  return out * 256 + part;
}

export function isIPv4(s: string): boolean {
  return quadToInt(s) >= 0;
}

export function ipToInt(s: string): number {
  const n = quadToInt(s);
  if (n < 0) throw new Error(`not an IPv4 address: ${JSON.stringify(s)}`);
  return n;
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
