import type { Bus } from '../../core/bus.js';
import type { Logger } from '../../core/log.js';
import { type App, type GatewayFacts, type MetricFamily, parseWith } from '../app.js';
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
      metrics: () => dnsMetrics(dns),
    };
  },
};

/** The forwarder's metric families (docs/metrics.md): its counters (`/dns/stats`), read at scrape time. */
export function dnsMetrics(dns: DnsForwarder): MetricFamily[] {
  const f = dns.forwarder;
  const counter = (name: string, help: string, read: () => number): MetricFamily => ({
    name,
    help,
    type: 'counter',
    collect: read,
  });
  const gauge = (name: string, help: string, read: () => number): MetricFamily => ({
    name,
    help,
    type: 'gauge',
    collect: read,
  });
  const c = f.counters;
  return [
    counter(
      'metanet_dns_queries_total',
      'Client queries taken in (UDP and TCP; not malformed, not dropped).',
      () => c.queries,
    ),
    counter('metanet_dns_cache_hits_total', 'Queries answered from the cache.', () => c.hits),
    counter(
      'metanet_dns_cache_misses_total',
      'Queries the cache could not answer (sent upstream or joined one in flight).',
      () => c.misses,
    ),
    counter(
      'metanet_dns_upstream_queries_total',
      'Queries sent to the upstream servers (retries over TCP included).',
      () => f.stats().upstream ?? 0,
    ),
    counter(
      'metanet_dns_upstream_failures_total',
      'Resolutions no upstream server answered in time (the client got SERVFAIL).',
      () => c.upstreamFailures,
    ),
    counter(
      'metanet_dns_servfail_responses_total',
      'Answers sent with SERVFAIL, whatever the cause.',
      () => c.servfail,
    ),
    counter(
      'metanet_dns_malformed_queries_total',
      'Datagrams and TCP frames that were not a usable query.',
      () => c.malformed,
    ),
    counter(
      'metanet_dns_dropped_queries_total',
      'Queries dropped because maxInflight queries were being resolved.',
      () => c.dropped,
    ),
    counter(
      'metanet_dns_hooked_queries_total',
      'Queries that went through a /dns/query hook (a listener besides the stock one).',
      () => c.hooked,
    ),
    counter(
      'metanet_dns_hook_answers_total',
      'Queries a hook answered, refused or rewrote itself.',
      () => c.hookAnswers,
    ),
    gauge('metanet_dns_cache_entries', 'Answers held in the cache.', () => f.cache.size),
    gauge(
      'metanet_dns_inflight_queries',
      'Client queries being resolved now.',
      () => f.stats().inflight ?? 0,
    ),
    gauge('metanet_dns_tcp_clients', 'TCP client connections open now.', () => dns.tcpClients()),
  ];
}
