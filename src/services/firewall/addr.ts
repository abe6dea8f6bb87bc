import { isIPv4, isIPv6 } from 'node:net';
import { MetanetError } from '../../core/errors.js';

/**
 * Checks for every value that goes into an nft command line: only these shapes can reach nft,
 * so a tuple can never smuggle a second command or a brace into the firewall.
 */
export type Family = 'ipv4' | 'ipv6';

export function familyOf(ip: string, what: string): Family {
  if (isIPv4(ip)) return 'ipv4';
  if (isIPv6(ip) && !ip.includes('%')) return 'ipv6';
  throw new MetanetError('EBADTUPLE', `${what}: ${JSON.stringify(ip)} is not an IPv4 or IPv6 address`);
}

/** The address in one spelling (IPv6 compressed, lowercase, as nft prints it), so state entries compare equal. */
export function canonicalIp(ip: string, what: string): string {
  return familyOf(ip, what) === 'ipv4' ? ip : new URL(`http://[${ip}]/`).hostname.slice(1, -1);
}

export function ipv4(ip: string, what: string): string {
  if (!isIPv4(ip))
    throw new MetanetError('EBADTUPLE', `${what}: ${JSON.stringify(ip)} is not an IPv4 address`);
  return ip;
}

const MAC_RE = /^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$/i;

/** A MAC as `xx:xx:xx:xx:xx:xx`, lowercase (accepts `-` separators and upper case). */
export function mac(s: string, what: string): string {
  if (!MAC_RE.test(s))
    throw new MetanetError(
      'EBADTUPLE',
      `${what}: ${JSON.stringify(s)} is not a MAC address (xx:xx:xx:xx:xx:xx)`,
    );
  return s.toLowerCase().replaceAll('-', ':');
}

/** An address or a prefix (`192.0.2.0/24`, `2001:db8::/32`) for the walled garden and DNS sets. */
export function prefix(s: string, what: string): { text: string; family: Family } {
  const [addr = '', bits, extra] = s.split('/');
  if (extra !== undefined)
    throw new MetanetError('ECONFIG', `${what}: ${JSON.stringify(s)} is not an address/prefix`);
  const family = familyOf(addr, what);
  if (bits !== undefined) {
    const max = family === 'ipv4' ? 32 : 128;
    if (!/^\d{1,3}$/.test(bits) || Number(bits) > max)
      throw new MetanetError('ECONFIG', `${what}: prefix length in ${JSON.stringify(s)} must be 0..${max}`);
  }
  return { text: s, family };
}

export function port(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 1 || n > 65535)
    throw new MetanetError('EBADTUPLE', `${what}: port must be 1..65535, got ${n}`);
  return n;
}

/** nft accepts timeouts up to about 49 days (32-bit milliseconds); refuse what it would refuse. */
export const MAX_TIMEOUT_S = 49 * 86400;

export function timeout(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 1 || n > MAX_TIMEOUT_S)
    throw new MetanetError(
      'EBADTUPLE',
      `${what}: timeout must be whole seconds 1..${MAX_TIMEOUT_S}, got ${n}`,
    );
  return n;
}

const NAME_RE = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;
const IFNAME_RE = /^[A-Za-z0-9_.:@+-]{1,15}$/;

export function tableName(s: string): string {
  if (!NAME_RE.test(s))
    throw new MetanetError(
      'ECONFIG',
      `firewall: table name ${JSON.stringify(s)}: a letter, then letters, digits, _ (max 32)`,
    );
  return s;
}

export function ifname(s: string): string {
  if (!IFNAME_RE.test(s))
    throw new MetanetError(
      'ECONFIG',
      `firewall: interface name ${JSON.stringify(s)} is not valid (1-15 of A-Z a-z 0-9 _ . : @ + -)`,
    );
  return s;
}
