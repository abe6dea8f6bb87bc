import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { z } from 'zod';
import { ConfigError, parseWith } from '../app.js';

/**
 * The DNS forwarder's configuration (docs/apps/dns.md lists every field). `options` is what the
 * gateway's `apps.dns` section may set; a standalone config adds where to listen and forward to.
 */

/** `10.0.0.1`, `10.0.0.1:5353`, `fd00::1`, `[fd00::1]:5353` → address and port (default 53). */
export function parseServer(s: string): { address: string; port: number } | undefined {
  const v6 = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(s);
  const v4 = /^([^:]+)(?::(\d{1,5}))?$/.exec(s);
  let address: string;
  let port = 53;
  if (v6) {
    address = v6[1]!;
    if (v6[2] !== undefined) port = Number(v6[2]);
    if (isIP(address) !== 6) return undefined;
  } else if (v4) {
    address = v4[1]!;
    if (v4[2] !== undefined) port = Number(v4[2]);
    if (isIP(address) !== 4) return undefined;
  } else {
    address = s;
    if (isIP(address) !== 6) return undefined;
  }
  if (port < 1 || port > 65535) return undefined;
  return { address, port };
}

const ip = z.string().refine((s) => isIP(s) !== 0, 'not an IP address');
const server = z
  .string()
  .refine(
    (s) => parseServer(s) !== undefined,
    'not an address with an optional port (10.0.0.1, 10.0.0.1:5353, [fd00::1]:53)',
  );

/** The forwarder's own options: all a gateway section may hold. */
export const dnsOptions = {
  /** UDP and TCP port on every `listen` address (0: any free port, same for both; tests). */
  port: z.number().int().min(0).max(65535).default(53),
  /** Cache entries (LRU); 0 turns the cache off. */
  cacheSize: z.number().int().min(0).max(1_000_000).default(10_000),
  /** Total time for one upstream resolution, every server and the TCP retry included (ms). */
  timeoutMs: z.number().int().min(50).max(60_000).default(2000),
  /** How long the /dns/query chain (hooks) may take before the client gets SERVFAIL (ms). */
  hookTimeoutMs: z.number().int().min(10).max(60_000).default(1500),
  /** Cap on a cached positive answer's TTL (seconds). */
  maxTtl: z.number().int().min(0).max(604_800).default(86_400),
  /** Cap on a cached negative answer's TTL (RFC 2308 §5; seconds). */
  maxNegativeTtl: z.number().int().min(0).max(86_400).default(3600),
  /** A TCP client connection with no query in flight is closed after this long (ms; RFC 7766 §6.2.3). */
  tcpIdleMs: z.number().int().min(100).max(600_000).default(10_000),
  /** TCP client connections at once; more are refused by the kernel backlog/closed at once. */
  maxTcpClients: z.number().int().min(1).max(100_000).default(256),
  /** Client queries being resolved at once; beyond it, new ones are dropped (counted). */
  maxInflight: z.number().int().min(1).max(1_000_000).default(2000),
};

/** The gateway section `apps.dns`: only the forwarder's own options (listen and upstream come from the gateway). */
export const dnsSection = z.strictObject(dnsOptions);

export const DnsConfigSchema = z.strictObject({
  /** The router's addresses the forwarder answers on (LAN and guest networks). */
  listen: z.array(ip).min(1),
  /** Upstream servers, tried in order; default: the `nameserver` lines of /etc/resolv.conf. */
  upstream: z.array(server).min(1).optional(),
  ...dnsOptions,
});

export type DnsConfigInput = z.input<typeof DnsConfigSchema>;
export type DnsConfig = z.output<typeof DnsConfigSchema>;

/** Validate a whole standalone config; a ConfigError names every bad field by its path. */
export function parseDnsConfig(raw: unknown): DnsConfig {
  return parseWith(DnsConfigSchema, raw);
}

/** The `nameserver` lines of a resolv.conf text (IPv4 and IPv6; a `%scope` suffix dropped). */
export function nameservers(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    const a = m?.[1]?.replace(/%.*$/, '');
    if (a && isIP(a) !== 0) out.push(isIP(a) === 6 ? `[${a}]` : a);
  }
  return out;
}

/**
 * The servers to forward to: the configured ones, else /etc/resolv.conf's, never one of our own
 * listening sockets (that would be a forwarding loop). ECONFIG when none is left.
 */
export function upstreamServers(
  config: Pick<DnsConfig, 'upstream' | 'listen' | 'port'>,
  resolvConf = '/etc/resolv.conf',
): { address: string; port: number }[] {
  let list = config.upstream;
  let from = 'upstream';
  if (!list) {
    from = resolvConf;
    try {
      list = nameservers(readFileSync(resolvConf, 'utf8'));
    } catch {
      list = [];
    }
  }
  const own = new Set(config.listen);
  const servers = list
    .map((s) => parseServer(s))
    .filter((s): s is { address: string; port: number } => s !== undefined)
    .filter((s) => !(s.port === config.port && own.has(s.address)));
  if (servers.length === 0)
    throw new ConfigError([
      {
        path: 'upstream',
        message: `no upstream DNS server (from ${from}) other than the forwarder's own addresses`,
      },
    ]);
  return servers;
}
