import net from 'node:net';

/** The PTR query name of an address: `10.9.9.10` → `10.9.9.10.in-addr.arpa`, IPv6 by nibbles in ip6.arpa. */
export function arpaName(address: string): string {
  if (net.isIPv4(address)) return `${address.split('.').reverse().join('.')}.in-addr.arpa`;
  if (!net.isIPv6(address)) throw new Error(`not an IP address: ${address}`);
  return `${[...expand(address)].reverse().join('.')}.ip6.arpa`;
}

/** 32 hex digits of an IPv6 address (`::`, embedded IPv4 and zone ids handled). */
function expand(a: string): string {
  let s = a.replace(/%.*$/, '').toLowerCase();
  const v4 = s.match(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/);
  if (v4) {
    const [b1, b2, b3, b4] = v4.slice(1).map(Number) as [number, number, number, number];
    s = `${s.slice(0, v4.index)}${((b1 << 8) | b2).toString(16)}:${((b3 << 8) | b4).toString(16)}`;
  }
  const [head = '', tail] = s.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return groups.map((g) => g.padStart(4, '0')).join('');
}
