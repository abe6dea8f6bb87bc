import { isIPv4 } from 'node:net';
import { MetanetError } from '../../core/errors.js';
import { checkPath } from '../../core/path.js';
import type { LeafKind } from './tc.js';

export interface ShaperOptions {
  /** Mailbox prefix (default `/system/shaper`). */
  readonly name?: string;
  /** The guest-side device(s), e.g. `br-guest`: download is shaped on their egress, upload on their ingress. */
  readonly devices: string | readonly string[];
  /** Bits/s guests share downstream: set ~90-95% of the real line, so the queue forms here. */
  readonly uplinkDown: number;
  /** Bits/s guests share upstream (same advice). */
  readonly uplinkUp: number;
  /** The ifb device the devices' ingress is redirected to (default `ifb-<first device>`, cut to 15). */
  readonly ifb?: string;
  /** The tc command, maybe behind a prefix (default `['tc']`; namespaces: `['ip','netns','exec',NS,'tc']`). */
  readonly tc?: readonly string[];
  /** The ip command (default: the tc command with `ip` for its last word). */
  readonly ip?: readonly string[];
  /** Leaf queue of each class: `pfifo` (frames, default) or `bfifo` (bytes, exact with GRO/GSO packets). */
  readonly leaf?: LeafKind;
  /** Leaf queue size, as milliseconds at the class's ceil (default 50; 16 frames at least). */
  readonly queueMs?: number;
  /** Per tc batch (default 5000 ms). */
  readonly commandTimeoutMs?: number;
}

export interface CheckedOptions {
  readonly name: string;
  readonly devices: readonly string[];
  readonly ifb: string;
  readonly uplinkDown: number;
  readonly uplinkUp: number;
  readonly tc: readonly string[];
  readonly ip: readonly string[];
  readonly leaf: LeafKind;
  readonly queueMs: number;
  readonly commandTimeoutMs: number;
}

/** The lowest uplink and cap accepted, bits/s. */
export const MIN_UPLINK = 64_000;
export const MIN_CAP = 8_000;
/** tc takes 64-bit rates; 400 Gbit/s is beyond any guest network. */
export const MAX_RATE = 400_000_000_000;

const IFNAME_RE = /^[A-Za-z0-9_.+-]{1,15}$/;

function ifname(s: unknown, what: string): string {
  if (typeof s !== 'string' || !IFNAME_RE.test(s))
    throw new MetanetError(
      'ECONFIG',
      `shaper: ${what} ${JSON.stringify(s)} is not an interface name (1-15 of A-Z a-z 0-9 _ . + -)`,
    );
  return s;
}

function rate(n: unknown, what: string): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < MIN_UPLINK || n > MAX_RATE)
    throw new MetanetError(
      'ECONFIG',
      `shaper: ${what} must be whole bits/s, ${MIN_UPLINK}..${MAX_RATE}, got ${String(n)}`,
    );
  return n;
}

function command(c: readonly string[], what: string): readonly string[] {
  if (c.length === 0 || c.some((w) => typeof w !== 'string' || w === ''))
    throw new MetanetError('ECONFIG', `shaper: ${what} command must be non-empty words`);
  return [...c];
}

/** Check every option; a bad one is an ECONFIG error naming it. */
export function checkOptions(o: ShaperOptions): CheckedOptions {
  const devs = typeof o.devices === 'string' ? [o.devices] : [...(o.devices ?? [])];
  if (devs.length === 0) throw new MetanetError('ECONFIG', 'shaper: devices: name at least one interface');
  const devices = devs.map((d) => ifname(d, 'device'));
  if (new Set(devices).size !== devices.length)
    throw new MetanetError('ECONFIG', `shaper: devices: ${devices.join(', ')} names one twice`);
  const ifb = ifname(o.ifb ?? `ifb-${devices[0]}`.slice(0, 15), 'ifb');
  if (devices.includes(ifb)) throw new MetanetError('ECONFIG', `shaper: ifb ${ifb} is also a shaped device`);
  const tc = command(o.tc ?? ['tc'], 'tc');
  let ip = o.ip;
  if (!ip) {
    const last = tc[tc.length - 1]!;
    if (last !== 'tc' && !last.endsWith('/tc'))
      throw new MetanetError(
        'ECONFIG',
        `shaper: tc command ${tc.join(' ')}: give the ip command too (option ip)`,
      );
    ip = [...tc.slice(0, -1), `${last.slice(0, -2)}ip`];
  }
  const leaf = o.leaf ?? 'pfifo';
  if (leaf !== 'pfifo' && leaf !== 'bfifo')
    throw new MetanetError('ECONFIG', `shaper: leaf must be pfifo or bfifo, got ${JSON.stringify(leaf)}`);
  const queueMs = o.queueMs ?? 50;
  if (!Number.isFinite(queueMs) || queueMs < 1 || queueMs > 1000)
    throw new MetanetError('ECONFIG', `shaper: queueMs must be 1..1000, got ${queueMs}`);
  const commandTimeoutMs = o.commandTimeoutMs ?? 5000;
  if (!Number.isInteger(commandTimeoutMs) || commandTimeoutMs < 100)
    throw new MetanetError(
      'ECONFIG',
      `shaper: commandTimeoutMs must be an integer >= 100, got ${commandTimeoutMs}`,
    );
  return {
    name: checkPath(o.name ?? '/system/shaper'),
    devices,
    ifb,
    uplinkDown: rate(o.uplinkDown, 'uplinkDown'),
    uplinkUp: rate(o.uplinkUp, 'uplinkUp'),
    tc,
    ip: command(ip, 'ip'),
    leaf,
    queueMs,
    commandTimeoutMs,
  };
}

/** A guest's address: IPv4 only (u32 matches 4 bytes at fixed offsets of the IPv4 header). */
export function guestIp(ip: string, what: string): string {
  if (!isIPv4(ip))
    throw new MetanetError(
      'EBADTUPLE',
      `${what}: ${JSON.stringify(ip)} is not an IPv4 address (the shaper is IPv4 only)`,
    );
  return ip;
}

/** A cap in bits/s: 0 (or absent) means none; otherwise at least MIN_CAP. */
export function cap(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n < 0 || (n > 0 && n < MIN_CAP) || n > MAX_RATE)
    throw new MetanetError(
      'EBADTUPLE',
      `${what}: a cap is 0 (none) or ${MIN_CAP}..${MAX_RATE} bits/s, got ${n}`,
    );
  return n;
}
