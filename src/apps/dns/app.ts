import type { Bus } from '../../core/bus.js';
import type { Logger } from '../../core/log.js';
import { type App, type GatewayFacts, parseWith } from '../app.js';
import { type DnsConfig, DnsConfigSchema, dnsSection, upstreamServers } from './config.js';
import { Forwarder } from './forwarder.js';
import { listen } from './server.js';
import { type Resolver, Upstream } from './upstream.js';

export interface DnsForwarder {
  readonly forwarder: Forwarder;
  /** Every socket, `{address, port}` (UDP and TCP share the port). */
  readonly addresses: readonly { address: string; port: number }[];
  readonly tcpClients: () => number;
  close(): Promise<void>;
}

/**
 * The forwarder in a process of your own: mailboxes on `bus`, sockets on every `listen` address.
 * `resolver` replaces the upstream client (tests); `now` is the cache's clock.
 */
export async function startDnsForwarder(
  bus: Bus,
  config: DnsConfig,
  opts: { log?: Logger; resolver?: Resolver; now?: () => number } = {},
): Promise<DnsForwarder> {
  const log = opts.log ?? bus.log;
  const resolver = opts.resolver ?? new Upstream(upstreamServers(config), config.timeoutMs);
  const forwarder = new Forwarder(bus, config, { log, resolver, now: opts.now });
  forwarder.attach();
  let sockets: Awaited<ReturnType<typeof listen>>;
  try {
    sockets = await listen(forwarder, {
      listen: config.listen,
      port: config.port,
      tcpIdleMs: config.tcpIdleMs,
      maxTcpClients: config.maxTcpClients,
      log,
    });
  } catch (e) {
    forwarder.detach();
    resolver.close();
    throw e;
  }
  return {
    forwarder,
    addresses: sockets.addresses,
    tcpClients: sockets.tcpClients,
    async close() {
      await sockets.close();
      forwarder.detach();
      resolver.close();
    },
  };
}

/** The DNS forwarder for the gateway's guests (docs/apps/dns.md), as an app. */
export const dnsApp: App<DnsConfig> = {
  name: 'dns',
  summary:
    'DNS forwarder on the LAN and guest addresses: cache, upstream failover, every query a /dns/query message',
  section: dnsSection,
  fromGateway(gw: GatewayFacts, section: Record<string, unknown>): unknown {
    return {
      listen: gw.served.map((n) => n.address).filter((a): a is string => a !== undefined),
      ...(gw.upstreamDns.length ? { upstream: [...gw.upstreamDns] } : {}),
      ...section,
    };
  },
  parse: (raw) => parseWith(DnsConfigSchema, raw),
  async start(bus, config, ctx) {
    const dns = await startDnsForwarder(bus, config, { log: ctx.log });
    const c = dns.forwarder.counters;
    return {
      status: () => ({
        queries: c.queries,
        hits: c.hits,
        upstreamFailures: c.upstreamFailures,
        cached: dns.forwarder.cache.size,
        listen: dns.addresses.map((a) => `${a.address}:${a.port}`).join(' '),
      }),
      close: () => dns.close(),
      readyNote: String(dns.addresses[0]?.port ?? config.port),
    };
  },
};
