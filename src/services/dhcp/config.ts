import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { MetanetError } from '../../core/errors.js';
import { type Cidr, inCidr, intToIp, ipToInt, isIPv4, parseCidr, quadToInt } from './ip.js';
import type { NewClientLimit } from './ratelimit.js';

/**
 * The DHCP server's configuration: a JSON file validated with zod. Every error names the field
 * path, e.g. `config.subnets[0].pool.start: not an IPv4 address`. See docs/services/dhcp.md.
 */

/** The default limit on new clients per link: 50 a second, 200 at once (docs/services/dhcp.md). */
export const DEFAULT_NEW_CLIENTS: NewClientLimit = { perSecond: 50, burst: 200 };

const ip = z.string({ error: 'not a string (an IPv4 address was expected)' }).refine(isIPv4, {
  message: 'not an IPv4 address',
});
const ips = z.union([ip, z.array(ip).min(1)], { error: 'not an IPv4 address or a list of them' });
const mac = z
  .string()
  .refine((s) => /^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$/.test(s), {
    message: 'not a MAC address (like 02:00:00:00:00:01)',
  })
  .transform((s) => s.toLowerCase().replaceAll('-', ':'));
const seconds = z.number().int().min(1).max(0xfffffffe);
const cidr = z.string().superRefine((s, ctx) => {
  try {
    parseCidr(s);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
  }
});
/** Option values are checked against the option codec later (by code or name). */
const options = z.record(
  z.string().regex(/^([1-9]\d{0,2}|[a-z][a-z0-9-]*)$/, 'option keys are a code (1-254) or a name'),
  z.unknown(),
);
const range = z.strictObject({ start: ip, end: ip });

const subnetSchema = z.strictObject({
  subnet: cidr,
  pool: z.union([range, z.array(range).min(1)]),
  router: ips.optional(),
  dns: ips.optional(),
  domain: z.string().min(1).max(255).optional(),
  leaseTime: seconds.optional(),
  renewalTime: seconds.optional(),
  rebindingTime: seconds.optional(),
  captivePortal: z.url({ message: 'not a URI (like https://portal.example/api)' }).optional(),
  options: options.optional(),
});

const hostSchema = z.strictObject({
  mac,
  ip,
  hostname: z.string().min(1).max(255).optional(),
  options: options.optional(),
});

const schema = z.strictObject({
  listen: z.array(z.strictObject({ interface: z.string().min(1).optional(), address: ip })).min(1),
  subnets: z.array(subnetSchema).min(1),
  hosts: z.array(hostSchema).default([]),
  options: options.optional(),
  /** Required. Relative: from the working directory at start (resolved once, when parsed). */
  leaseFile: z
    .string({
      error: (i) =>
        i.input === undefined ? 'required: the path of the lease journal' : 'not a string (a path)',
    })
    .min(1, 'empty: the path of the lease journal'),
  /** Seconds a declined address stays out of the pool. */
  declineTime: seconds.default(600),
  /** Seconds an offered address is held for its client. */
  offerTime: seconds.default(30),
  /** Milliseconds the server waits for an answer on /dhcpd/lookup before using the pool itself. */
  lookupTimeout: z.number().int().min(10).max(60000).default(2000),
  /** Seconds between journal compactions (also done at start). */
  compactInterval: seconds.default(3600),
  /** Seconds between expiry sweeps. */
  expiryInterval: seconds.default(10),
  /** New clients (MACs with no lease, offer or static entry) let in per link (ratelimit.ts). */
  newClients: z
    .strictObject({
      /** Per second; 0: no limit. */
      perSecond: z.number().min(0).max(1_000_000).default(DEFAULT_NEW_CLIENTS.perSecond),
      burst: z.number().int().min(1).max(1_000_000).default(DEFAULT_NEW_CLIENTS.burst),
    })
    .default(DEFAULT_NEW_CLIENTS),
});

export type RawDhcpConfig = z.input<typeof schema>;

export interface PoolRange {
  readonly start: number;
  readonly end: number;
}

export interface SubnetConfig {
  /** The CIDR text, as in the file: the subnet's name in messages. */
  readonly name: string;
  readonly cidr: Cidr;
  readonly ranges: readonly PoolRange[];
  readonly router: readonly string[];
  readonly dns: readonly string[];
  readonly domain: string | undefined;
  readonly leaseTime: number;
  readonly renewalTime: number;
  readonly rebindingTime: number;
  readonly captivePortal: string | undefined;
  readonly options: Readonly<Record<string, unknown>>;
  /** The address of ours in this subnet (a `listen` address), if it is directly attached. */
  readonly localAddress: string | undefined;
}

export interface StaticHost {
  readonly mac: string;
  readonly ip: string;
  readonly hostname: string | undefined;
  readonly options: Readonly<Record<string, unknown>>;
}

export interface DhcpConfig {
  readonly listen: readonly { readonly interface: string | undefined; readonly address: string }[];
  readonly subnets: readonly SubnetConfig[];
  readonly hosts: readonly StaticHost[];
  readonly options: Readonly<Record<string, unknown>>;
  readonly leaseFile: string;
  readonly declineTime: number;
  readonly offerTime: number;
  readonly lookupTimeout: number;
  readonly compactInterval: number;
  readonly expiryInterval: number;
  readonly newClients: NewClientLimit;
}

type Path = readonly PropertyKey[];

function where(path: Path): string {
  let s = 'config';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : `.${String(p)}`;
  return s;
}

function fail(problems: readonly string[]): never {
  throw new MetanetError('ECONFIG', `invalid DHCP configuration:\n  ${problems.join('\n  ')}`);
}

const list = (v: string | readonly string[] | undefined): string[] =>
  v === undefined ? [] : typeof v === 'string' ? [v] : [...v];

/**
 * Validate a parsed JSON value. `checkOption(key, value)` (from the option codec) throws for a
 * bad option; its message is reported with the field path.
 */
export function parseConfig(raw: unknown, checkOption?: (key: string, value: unknown) => void): DhcpConfig {
  const r = schema.safeParse(raw);
  if (!r.success) fail(r.error.issues.map((i) => `${where(i.path)}: ${i.message}`));
  const c = r.data;
  const problems: string[] = [];
  const bad = (path: Path, m: string): void => {
    problems.push(`${where(path)}: ${m}`);
  };
  const subnets: SubnetConfig[] = [];
  c.subnets.forEach((s, i) => {
    const net = parseCidr(s.subnet);
    for (const [j, other] of subnets.entries())
      if (inCidr(other.cidr, net.network) || inCidr(net, other.cidr.network))
        bad(['subnets', i, 'subnet'], `overlaps config.subnets[${j}].subnet (${other.name})`);
    const rs = Array.isArray(s.pool) ? s.pool : [s.pool];
    const ranges: PoolRange[] = [];
    rs.forEach((x, k) => {
      const at: Path = Array.isArray(s.pool) ? ['subnets', i, 'pool', k] : ['subnets', i, 'pool'];
      const start = ipToInt(x.start);
      const end = ipToInt(x.end);
      for (const [f, v] of [
        ['start', start],
        ['end', end],
      ] as const) {
        if (!inCidr(net, v)) bad([...at, f], `${intToIp(v)} is outside the subnet ${s.subnet}`);
        else if (net.prefix < 31 && (v === net.network || v === net.broadcast))
          bad([...at, f], `${intToIp(v)} is the subnet's network or broadcast address`);
      }
      if (start > end) bad(at, `start ${x.start} is after end ${x.end}`);
      ranges.push({ start, end });
    });
    for (const a of list(s.router))
      if (!inCidr(net, ipToInt(a)))
        bad(['subnets', i, 'router'], `router ${a} is outside the subnet ${s.subnet}`);
    const leaseTime = s.leaseTime ?? 3600;
    const renewalTime = s.renewalTime ?? Math.floor(leaseTime / 2);
    const rebindingTime = s.rebindingTime ?? Math.floor((leaseTime * 7) / 8);
    if (renewalTime >= rebindingTime)
      bad(
        ['subnets', i, 'renewalTime'],
        `renewal (T1 ${renewalTime}) must be less than rebinding (T2 ${rebindingTime})`,
      );
    if (rebindingTime >= leaseTime)
      bad(
        ['subnets', i, 'rebindingTime'],
        `rebinding (T2 ${rebindingTime}) must be less than the lease time (${leaseTime})`,
      );
    const local = c.listen.find((l) => inCidr(net, ipToInt(l.address)));
    if (local)
      for (const r2 of ranges)
        if (ipToInt(local.address) >= r2.start && ipToInt(local.address) <= r2.end)
          bad(['subnets', i, 'pool'], `the pool contains the server's own address ${local.address}`);
    subnets.push({
      name: s.subnet,
      cidr: net,
      ranges,
      router: list(s.router),
      dns: list(s.dns),
      domain: s.domain,
      leaseTime,
      renewalTime,
      rebindingTime,
      captivePortal: s.captivePortal,
      options: s.options ?? {},
      localAddress: local?.address,
    });
  });
  // A device-bound socket per named interface, or the 0.0.0.0 socket for all: not both (the
  // 0.0.0.0 socket would also receive the named devices' broadcasts and answer them twice).
  const named = c.listen.filter((l) => l.interface !== undefined).length;
  if (named > 0 && named < c.listen.length)
    c.listen.forEach((l, i) => {
      if (l.interface === undefined)
        bad(
          ['listen', i, 'interface'],
          'missing: name the interface of every listen entry, or of none (then one socket receives on all interfaces)',
        );
    });
  const macs = new Map<string, number>();
  const hostIps = new Map<string, number>();
  c.hosts.forEach((h, i) => {
    const n = ipToInt(h.ip);
    if (!subnets.some((s) => inCidr(s.cidr, n)))
      bad(['hosts', i, 'ip'], `${h.ip} is in no configured subnet`);
    const m = macs.get(h.mac);
    if (m !== undefined) bad(['hosts', i, 'mac'], `${h.mac} is already config.hosts[${m}].mac`);
    macs.set(h.mac, i);
    const o = hostIps.get(h.ip);
    if (o !== undefined) bad(['hosts', i, 'ip'], `${h.ip} is already config.hosts[${o}].ip`);
    hostIps.set(h.ip, i);
  });
  if (checkOption) {
    const check = (opts: Record<string, unknown> | undefined, at: Path): void => {
      for (const [k, v] of Object.entries(opts ?? {}))
        try {
          checkOption(k, v);
        } catch (e) {
          bad([...at, k], e instanceof Error ? e.message : String(e));
        }
    };
    check(c.options, ['options']);
    for (const [i, s] of c.subnets.entries()) check(s.options, ['subnets', i, 'options']);
    for (const [i, h] of c.hosts.entries()) check(h.options, ['hosts', i, 'options']);
  }
  if (problems.length) fail(problems);
  return {
    listen: c.listen.map((l) => ({ interface: l.interface, address: l.address })),
    subnets,
    hosts: c.hosts.map((h) => ({ mac: h.mac, ip: h.ip, hostname: h.hostname, options: h.options ?? {} })),
    options: c.options ?? {},
    leaseFile: resolve(c.leaseFile),
    declineTime: c.declineTime,
    offerTime: c.offerTime,
    lookupTimeout: c.lookupTimeout,
    compactInterval: c.compactInterval,
    expiryInterval: c.expiryInterval,
    newClients: { perSecond: c.newClients.perSecond, burst: c.newClients.burst },
  };
}

/** Read and validate a JSON config file; ECONFIG names the file and each bad field. */
export function loadConfig(file: string, checkOption?: (key: string, value: unknown) => void): DhcpConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new MetanetError('ECONFIG', `cannot read DHCP config ${file}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new MetanetError('ECONFIG', `DHCP config ${file} is not JSON: ${(e as Error).message}`);
  }
  try {
    return parseConfig(raw, checkOption);
  } catch (e) {
    if (e instanceof MetanetError) throw new MetanetError('ECONFIG', `${file}: ${e.message}`);
    throw e;
  }
}

/** The subnet that contains `ip`, if any. */
export function subnetOf(config: DhcpConfig, ip: string): SubnetConfig | undefined {
  const n = quadToInt(ip);
  if (n < 0) return undefined;
  for (const s of config.subnets) if (inCidr(s.cidr, n)) return s;
  return undefined;
}
