import { join } from 'node:path';
import { z } from 'zod';
import { MetanetError } from '../../core/errors.js';
import { type DhcpConfig, parseConfig, type SubnetConfig } from '../../services/dhcp/config.js';
import { inCidr, intToIp, ipToInt } from '../../services/dhcp/ip.js';
import { checkConfigOption } from '../../services/dhcp/optionset.js';
import { type DhcpServer, startDhcpServer } from '../../services/dhcp/server.js';
import {
  type App,
  ConfigError,
  type GatewayFacts,
  type MetricFamily,
  type MetricSample,
  type Network,
} from '../app.js';

const range = z.strictObject({ start: z.string(), end: z.string() });
const perNetwork = z.strictObject({
  /** Replaces the default pool (the subnet minus the router). */
  pool: z.union([range, z.array(range).min(1)]).optional(),
  leaseTime: z.number().int().min(60).max(0xfffffffe).optional(),
  /** Resolvers handed out here (default: the router when the DNS forwarder runs, else upstreamDns). */
  dns: z.array(z.string()).min(1).optional(),
  domain: z.string().min(1).max(255).optional(),
  options: z.record(z.string(), z.unknown()).optional(),
});

/** The DHCP server's gateway section: only what is its own (docs/gateway.md). */
const section = z.strictObject({
  /** Seconds (default 3600: an hour, what a café wants). */
  leaseTime: z.number().int().min(60).max(0xfffffffe).default(3600),
  /** Per network (by its name in `networks`): pool, lease time, resolvers, options. */
  networks: z.record(z.string(), perNetwork).default({}),
  hosts: z.array(z.unknown()).default([]),
  options: z.record(z.string(), z.unknown()).optional(),
  lookupTimeout: z.number().int().optional(),
  offerTime: z.number().int().optional(),
  declineTime: z.number().int().optional(),
  /** New MACs per second (and burst) per interface before DISCOVERs are dropped; docs/services/dhcp.md "Storms". */
  newClients: z.unknown().optional(),
  /** Default `<stateDir>/dhcpd.leases`. */
  leaseFile: z.string().min(1).optional(),
});
type Section = z.output<typeof section>;

/** The DHCPv4 server (docs/services/dhcp.md) as an app. */
export const dhcpdApp: App<DhcpConfig> = {
  name: 'dhcpd',
  summary: 'DHCPv4 server for the LAN and guest networks (never the WAN), leases on disk',
  section,
  fromGateway(gw: GatewayFacts, raw: Record<string, unknown>): unknown {
    const s = raw as Section;
    for (const name of Object.keys(s.networks))
      if (!gw.served.some((n) => n.name === name))
        throw new ConfigError([
          { path: `networks.${name}`, message: 'no such lan or guest network in networks' },
        ]);
    return {
      listen: gw.served.map((n) => ({ interface: n.device, address: n.address })),
      subnets: gw.served.map((n) => {
        const own = s.networks[n.name] ?? {};
        return {
          subnet: n.subnet,
          pool: own.pool ?? defaultPool(n),
          router: n.address,
          dns: own.dns ?? (gw.enabled.has('dns') ? [n.address] : [...gw.upstreamDns]),
          ...(own.domain ? { domain: own.domain } : {}),
          leaseTime: own.leaseTime ?? s.leaseTime,
          // RFC 8910: the portal's API, https when the portal has https (phones ignore a plain-HTTP one).
          ...(n.captive && gw.portal
            ? { captivePortal: gw.portal.api ?? `http://${gw.portal.address}:${gw.portal.port}/api` }
            : {}),
          ...(own.options ? { options: own.options } : {}),
        };
      }),
      hosts: s.hosts,
      ...(s.options ? { options: s.options } : {}),
      leaseFile: s.leaseFile ?? join(gw.stateDir, 'dhcpd.leases'),
      ...(s.lookupTimeout !== undefined ? { lookupTimeout: s.lookupTimeout } : {}),
      ...(s.offerTime !== undefined ? { offerTime: s.offerTime } : {}),
      ...(s.declineTime !== undefined ? { declineTime: s.declineTime } : {}),
      ...(s.newClients !== undefined ? { newClients: s.newClients } : {}),
    };
  },
  parse(raw: unknown): DhcpConfig {
    try {
      return parseConfig(raw, checkConfigOption);
    } catch (e) {
      if (e instanceof MetanetError && e.code === 'ECONFIG') {
        // parseConfig's lines are "config.<path>: <message>"
        const lines = e.message.split('\n').slice(1);
        if (lines.length)
          throw new ConfigError(
            lines.map((l) => {
              const m = /^\s*config\.?([^:]*): (.*)$/.exec(l);
              return m ? { path: m[1]!, message: m[2]! } : { path: '', message: l.trim() };
            }),
          );
      }
      throw e;
    }
  },
  async start(bus, config, ctx) {
    for (const w of plainCaptivePortals(config)) ctx.log.log('warn', w);
    const server = await startDhcpServer(bus, config, { logger: ctx.log });
    return {
      status: () => ({
        leases: server.store.active().length,
        acks: server.core.counters.acks,
        subnets: config.subnets.length,
      }),
      close: () => server.close(),
      metrics: () => dhcpMetrics(server, config),
    };
  },
};

/**
 * Option 114 (RFC 8910) given as an http: URI, one warning per subnet (or the global options):
 * iOS and Android ignore a captive-portal API that is not HTTPS. The portal's `https` makes the
 * gateway hand out its https API URI.
 */
export function plainCaptivePortals(config: DhcpConfig): string[] {
  const out: string[] = [];
  const check = (where: string, v: unknown): void => {
    if (typeof v === 'string' && /^http:/i.test(v))
      out.push(
        `dhcpd: ${where}: option 114 (captive portal API) is ${v}, plain HTTP: phones ignore it (RFC 8908 wants https; give the portal "https")`,
      );
  };
  for (const s of config.subnets) {
    check(`subnet ${s.name}`, s.captivePortal);
    check(`subnet ${s.name}`, s.options['captive-portal'] ?? s.options['114']);
  }
  check('options', config.options['captive-portal'] ?? config.options['114']);
  return out;
}

/** Message types a client sends (option 53); anything else counts as `other`. */
const RECEIVED_TYPES = ['discover', 'request', 'decline', 'release', 'inform'] as const;
/** Drop counters of the core by their `reason` label (what is left of `dropped` is `other`). */
const DROP_REASONS = {
  bad_option_length: 'badOptionLength',
  not_request: 'notRequest',
  no_message_type: 'noMessageType',
  no_client_mac: 'noClientMac',
  no_subnet: 'noSubnet',
  rate_limited: 'rateLimited',
  no_address: 'noAddress',
  shed: 'shed',
} as const;
/** Pools up to this size are counted address by address at scrape time (~2 µs each: a /20 in ~10 ms). */
const SCAN_LIMIT = 4096;

/**
 * The DHCP server's metric families (docs/metrics.md): the core's counters and the lease store,
 * read at scrape time (nothing on the packet path but the core's own increments).
 */
export function dhcpMetrics(server: DhcpServer, config: DhcpConfig): MetricFamily[] {
  const c = server.core.counters;
  const sample = (labels: Record<string, string>, value: number): MetricSample => ({ labels, value });
  const perSubnet = (read: (s: SubnetConfig) => number) => (): MetricSample[] =>
    config.subnets.map((s) => sample({ subnet: s.name }, read(s)));
  const poolSize = (s: SubnetConfig): number => s.ranges.reduce((a, r) => a + (r.end - r.start + 1), 0);
  return [
    {
      name: 'metanet_dhcp_packets_received_total',
      help: 'DHCP packets received with a message type (option 53), by type; malformed and dropped ones are counted apart.',
      type: 'counter',
      labels: ['type'],
      collect: () => {
        const known = new Set<string>(RECEIVED_TYPES);
        const other = Object.entries(server.core.receivedByType).reduce(
          (a, [t, n]) => (known.has(t) ? a : a + n),
          0,
        );
        return [
          ...RECEIVED_TYPES.map((type) => sample({ type }, server.core.receivedByType[type] ?? 0)),
          sample({ type: 'other' }, other),
        ];
      },
    },
    {
      name: 'metanet_dhcp_packets_malformed_total',
      help: 'Datagrams on the DHCP sockets that did not decode as DHCP.',
      type: 'counter',
      collect: () => c.malformed,
    },
    {
      name: 'metanet_dhcp_packets_dropped_total',
      help: 'DHCP packets dropped without an answer, by reason (docs/services/dhcp.md).',
      type: 'counter',
      labels: ['reason'],
      collect: () => {
        const kinds = Object.entries(DROP_REASONS).map(([reason, k]) => sample({ reason }, c[k]));
        const other = c.dropped - kinds.reduce((a, k) => a + k.value, 0);
        return [...kinds, sample({ reason: 'other' }, Math.max(0, other))];
      },
    },
    {
      name: 'metanet_dhcp_replies_total',
      help: 'DHCPOFFERs, DHCPACKs (leases bound or renewed) and DHCPNAKs sent.',
      type: 'counter',
      labels: ['type'],
      collect: () => [
        sample({ type: 'offer' }, c.offers),
        sample({ type: 'ack' }, c.acks),
        sample({ type: 'nak' }, c.naks),
      ],
    },
    {
      name: 'metanet_dhcp_informs_total',
      help: 'DHCPINFORMs answered (with a DHCPACK without a lease).',
      type: 'counter',
      collect: () => c.informs,
    },
    {
      name: 'metanet_dhcp_releases_total',
      help: 'Leases released by their client (DHCPRELEASE).',
      type: 'counter',
      collect: () => c.releases,
    },
    {
      name: 'metanet_dhcp_declines_total',
      help: 'Addresses declined by a client (DHCPDECLINE: in use by an unknown host, quarantined).',
      type: 'counter',
      collect: () => c.declines,
    },
    {
      name: 'metanet_dhcp_offers_reclaimed_total',
      help: 'Held offers given to another client because the pool was dry.',
      type: 'counter',
      collect: () => c.offersReclaimed,
    },
    {
      name: 'metanet_dhcp_lookups_total',
      help:
        'Address decisions of the /dhcpd/lookup hook: answered = an address was taken from the chain (the pool ' +
        'included); rejected = no usable answer (a timeout, an error, a bad reply) or an address the client ' +
        'cannot have, so the pool decided.',
      type: 'counter',
      labels: ['result'],
      collect: () => [
        sample({ result: 'answered' }, c.lookupsAnswered),
        sample({ result: 'rejected' }, c.lookupsRejected),
      ],
    },
    {
      name: 'metanet_dhcp_leases_active',
      help: 'Leases bound and not expired, per subnet.',
      type: 'gauge',
      labels: ['subnet'],
      collect: () => {
        const active = server.store.active();
        return config.subnets.map((s) =>
          sample({ subnet: s.name }, active.filter((l) => inCidr(s.cidr, ipToInt(l.ip))).length),
        );
      },
    },
    {
      name: 'metanet_dhcp_pool_addresses',
      help: 'Addresses in the pool ranges of a subnet.',
      type: 'gauge',
      labels: ['subnet'],
      collect: perSubnet(poolSize),
    },
    {
      name: 'metanet_dhcp_pool_free_addresses',
      help: 'Pool addresses a new client could get now: not leased, offered, declined, reserved for a static host nor the router.',
      type: 'gauge',
      labels: ['subnet'],
      collect: perSubnet((s) => freeAddresses(server, s, poolSize(s))),
    },
  ];
}

/**
 * Free pool addresses of a subnet. Up to SCAN_LIMIT addresses, each is asked of the pool (exact:
 * held offers and declined addresses included); a larger pool subtracts only leases, static hosts
 * and the router's addresses (held offers and declined addresses are not enumerable).
 */
function freeAddresses(server: DhcpServer, s: SubnetConfig, size: number): number {
  const pool = server.core.pool;
  const now = Date.now();
  const inRange = (n: number): boolean => s.ranges.some((r) => n >= r.start && n <= r.end);
  if (size > SCAN_LIMIT) {
    const used = new Set<number>();
    for (const l of server.store.active()) if (inRange(ipToInt(l.ip))) used.add(ipToInt(l.ip));
    for (const h of server.core.config.hosts) if (inRange(ipToInt(h.ip))) used.add(ipToInt(h.ip));
    for (const a of [...s.router, ...server.core.config.listen.map((l) => l.address)])
      if (inRange(ipToInt(a))) used.add(ipToInt(a));
    return size - used.size;
  }
  let free = 0;
  for (const r of s.ranges)
    for (let n = r.start; n <= r.end; n++) if (pool.refusal(intToIp(n), '', s, now) === undefined) free++;
  return free;
}

/** The subnet minus the network, broadcast and router addresses: one or two ranges. */
export function defaultPool(n: Network): { start: string; end: string }[] {
  const router = ipToInt(n.address!);
  const mask = ~(0xffffffff >>> n.prefix!) >>> 0;
  const first = ((router & mask) >>> 0) + 1;
  const last = ((router & mask) | ~mask) >>> 0;
  const lastHost = last - 1;
  const ranges: { start: number; end: number }[] = [];
  if (router > first) ranges.push({ start: first, end: router - 1 });
  if (router < lastHost) ranges.push({ start: router + 1, end: lastHost });
  return ranges.map((r) => ({ start: intToIp(r.start), end: intToIp(r.end) }));
}
