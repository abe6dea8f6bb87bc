import { join } from 'node:path';
import { z } from 'zod';
import { MetanetError } from '../../core/errors.js';
import { type DhcpConfig, parseConfig } from '../../services/dhcp/config.js';
import { intToIp, ipToInt } from '../../services/dhcp/ip.js';
import { checkConfigOption } from '../../services/dhcp/optionset.js';
import { startDhcpServer } from '../../services/dhcp/server.js';
import { type App, ConfigError, type GatewayFacts, type Network } from '../app.js';

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
          ...(n.captive && gw.portal
            ? { captivePortal: `http://${gw.portal.address}:${gw.portal.port}/api` }
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
    const server = await startDhcpServer(bus, config, { logger: ctx.log });
    return {
      status: () => ({
        leases: server.store.active().length,
        acks: server.core.counters.acks,
        subnets: config.subnets.length,
      }),
      close: () => server.close(),
    };
  },
};

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
