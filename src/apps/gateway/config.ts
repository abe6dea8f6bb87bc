import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { type Cidr, inCidr, intToIp, ipToInt, isIPv4 } from '../../services/dhcp/ip.js';
import {
  type App,
  ConfigError,
  type ConfigProblem,
  type GatewayFacts,
  joinPath,
  type Network,
  zodProblems,
} from '../app.js';
import { readConfigFile } from '../configfile.js';
import { portalUrls } from '../portal/config.js';
import { APP_NAMES, APPS } from '../registry.js';

/**
 * The gateway config (docs/gateway.md): the networks with their roles declared once, upstream DNS,
 * where state and sockets live, and one section per app holding only what is the app's own.
 * Validation reports every bad field by its path and starts nothing.
 */

const ipv4 = z.string().refine(isIPv4, 'not an IPv4 address');
const hostCidr = z
  .string()
  .regex(
    /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/,
    "not the router's address with its prefix length (like 10.20.0.1/24)",
  )
  .superRefine((s, ctx) => {
    const [a, p] = s.split('/') as [string, string];
    if (!isIPv4(a)) ctx.addIssue({ code: 'custom', message: `${a} is not an IPv4 address` });
    else if (Number(p) < 8 || Number(p) > 30)
      ctx.addIssue({
        code: 'custom',
        message: 'the prefix length must be 8..30 (a subnet guests can lease in)',
      });
  });

const networkSchema = z.strictObject({
  role: z.enum(['wan', 'lan', 'guest']),
  device: z.string().regex(/^[A-Za-z0-9_.:@-]{1,15}$/, 'not an interface name (1-15 characters)'),
  address: hostCidr.optional(),
  captive: z.boolean().optional(),
});

/** `metrics`: where `metanet up` serves /metrics (docs/metrics.md); the address rule is checked below. */
const metricsSchema = z.strictObject({
  listen: z
    .string()
    .regex(/^\d{1,3}(\.\d{1,3}){3}:\d{1,5}$/, 'not address:port (like 127.0.0.1:9100)')
    .superRefine((s, ctx) => {
      const [a, p] = s.split(':') as [string, string];
      if (!isIPv4(a)) ctx.addIssue({ code: 'custom', message: `${a} is not an IPv4 address` });
      if (Number(p) < 1 || Number(p) > 65535)
        ctx.addIssue({ code: 'custom', message: `port ${p} is not 1..65535` });
    }),
  /** Also accept the router's address on a guest (captive) network. */
  allowGuest: z.boolean().default(false),
});

/** What `enabled` and `process` mean for every app section. */
const common = {
  enabled: z.boolean().default(true),
  process: z.enum(['shared', 'own']).default('shared'),
};

const topSchema = z.strictObject({
  networks: z.record(
    z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'network names are lowercase words (like lan, guest)'),
    networkSchema,
  ),
  upstreamDns: z.array(ipv4).min(1).optional(),
  stateDir: z.string().min(1).default('/var/lib/metanet'),
  socketDir: z.string().min(1).optional(),
  commandPrefix: z.array(z.string().min(1)).default([]),
  apps: z.record(z.string(), z.unknown()).default({}),
  metrics: metricsSchema.optional(),
});

export interface HostedApp {
  readonly name: string;
  readonly app: App;
  readonly process: 'shared' | 'own';
  /** The app's whole config, derived and validated. */
  readonly config: unknown;
  /** Its section as written (validated), to tell what a reload changes. */
  readonly section: Record<string, unknown>;
}

export interface GatewayConfig {
  readonly file: string;
  readonly facts: GatewayFacts;
  readonly socketDir: string | undefined;
  /** Enabled apps in start order. */
  readonly apps: readonly HostedApp[];
  /** Where /metrics is served (docs/metrics.md); undefined: no metrics endpoint. */
  readonly metrics: MetricsAt | undefined;
}

/** Where /metrics is served, and whom it refuses. */
export interface MetricsAt {
  readonly address: string;
  readonly port: number;
  /**
   * Subnets whose hosts are refused a connection: the guest and captive networks (unless
   * `allowGuest`). The router answers on its LAN address from any interface, and a logged-in
   * guest may reach the router: the address alone does not keep guests out.
   */
  readonly deny: readonly string[];
}

/** Read, validate and derive a gateway config file. */
export async function loadGatewayFile(file: string): Promise<GatewayConfig> {
  return loadGateway(readConfigFile(file), file);
}

/** Validate a parsed gateway config and derive every enabled app's config (ConfigError lists all problems). */
export async function loadGateway(raw: unknown, file: string): Promise<GatewayConfig> {
  const top = topSchema.safeParse(raw);
  if (!top.success) throw new ConfigError(zodProblems(top.error.issues), file);
  const c = top.data;
  const problems: ConfigProblem[] = [];
  const bad = (path: string, message: string): void => {
    problems.push({ path, message });
  };

  const networks: Network[] = [];
  const devices = new Map<string, string>();
  for (const [name, n] of Object.entries(c.networks)) {
    const at = `networks.${name}`;
    const other = devices.get(n.device);
    if (other) bad(`${at}.device`, `${n.device} is already the device of networks.${other}`);
    devices.set(n.device, name);
    let address: string | undefined;
    let prefix: number | undefined;
    let subnet: string | undefined;
    if (n.address) {
      [address, prefix] = n.address.split('/').map((x, i) => (i ? Number(x) : x)) as [string, number];
      const net = cidrOf(address, prefix);
      if (ipToInt(address) === net.network || ipToInt(address) === net.broadcast)
        bad(`${at}.address`, `${address} is the network or broadcast address of its subnet`);
      subnet = `${intToIp(net.network)}/${prefix}`;
      for (const o of networks)
        if (o.subnet && o.address && o.prefix !== undefined) {
          const on = cidrOf(o.address, o.prefix);
          if (inCidr(on, net.network) || inCidr(net, on.network))
            bad(`${at}.address`, `${subnet} overlaps networks.${o.name} (${o.subnet})`);
        }
    } else if (n.role !== 'wan') bad(`${at}.address`, `a ${n.role} network needs the router's address on it`);
    if (n.role === 'wan' && n.captive) bad(`${at}.captive`, 'the WAN cannot be captive');
    networks.push({
      name,
      role: n.role,
      device: n.device,
      address,
      prefix,
      subnet,
      captive: n.captive ?? n.role === 'guest',
    });
  }
  const served = networks.filter((n) => n.role !== 'wan' && n.address !== undefined);
  if (Object.keys(c.networks).length > 0 && served.length === 0)
    bad('networks', 'no lan or guest network: nothing to serve');
  if (Object.keys(c.networks).length === 0) bad('networks', 'declare at least one lan or guest network');
  const metrics = c.metrics && metricsAt(c.metrics, networks, bad);

  // Sections: known app names only; each validated against the app's own schema.
  const sections = new Map<
    string,
    { app: App; process: 'shared' | 'own'; section: Record<string, unknown> }
  >();
  for (const name of APP_NAMES) {
    if (!(name in c.apps)) continue;
    const app = await APPS[name]!();
    const schema = app.section.extend(common);
    const r = schema.safeParse(c.apps[name] ?? {});
    if (!r.success) {
      problems.push(...zodProblems(r.error.issues, `apps.${name}`));
      continue;
    }
    const { enabled, process, ...section } = r.data as Record<string, unknown> & {
      enabled: boolean;
      process: 'shared' | 'own';
    };
    if (enabled) sections.set(name, { app, process, section });
  }
  for (const name of Object.keys(c.apps))
    if (!APP_NAMES.includes(name)) bad(`apps.${name}`, `no such app (known: ${APP_NAMES.join(', ')})`);
  const captive = served.filter((n) => n.captive);
  if (sections.has('portal') && captive.length === 0)
    bad('apps.portal', 'the portal needs a captive network (a guest network, or captive: true)');
  if (problems.length) throw new ConfigError(problems, file);

  const upstreamDns = c.upstreamDns ?? systemResolvers();
  const portalSection = sections.get('portal')?.section;
  const facts: GatewayFacts = {
    networks,
    served,
    captive,
    upstreamDns,
    stateDir: c.stateDir,
    commandPrefix: c.commandPrefix,
    enabled: new Set(sections.keys()),
    portal:
      portalSection && captive[0]
        ? {
            address: captive[0].address!,
            port: typeof portalSection.port === 'number' ? portalSection.port : 8080,
            // Validated by the portal's section schema above.
            api: portalUrls({
              address: captive[0].address!,
              port: typeof portalSection.port === 'number' ? portalSection.port : 8080,
              portalHost: portalSection.portalHost as string | undefined,
              https: portalSection.https as { port: number } | undefined,
            }).api,
          }
        : undefined,
  };
  if (sections.has('dns') && upstreamDns.length === 0)
    bad('upstreamDns', 'no upstream DNS server: none configured and none in /etc/resolv.conf');

  const apps: HostedApp[] = [];
  for (const [name, s] of sections) {
    try {
      const config = s.app.parse(s.app.fromGateway(facts, s.section));
      apps.push({ name, app: s.app, process: s.process, config, section: s.section });
    } catch (e) {
      if (e instanceof ConfigError)
        problems.push(
          ...e.problems.map((p) => ({ path: joinPath(`apps.${name}`, [p.path]), message: p.message })),
        );
      else bad(`apps.${name}`, e instanceof Error ? e.message : String(e));
    }
  }
  if (problems.length) throw new ConfigError(problems, file);
  return { file, facts, socketDir: c.socketDir, apps, metrics };
}

/**
 * The metrics address rule: loopback, or the router's address on a (non-captive) lan network; on
 * a guest or captive network only with `allowGuest`; never the WAN nor 0.0.0.0 (which is every
 * network, the guests' and the WAN included).
 */
function metricsAt(
  m: z.output<typeof metricsSchema>,
  networks: readonly Network[],
  bad: (path: string, message: string) => void,
): MetricsAt | undefined {
  const [address, port] = m.listen.split(':') as [string, string];
  const deny = m.allowGuest
    ? []
    : networks.flatMap((n) =>
        n.role !== 'wan' && (n.role === 'guest' || n.captive) && n.subnet ? [n.subnet] : [],
      );
  const out = { address, port: Number(port), deny };
  if (address.startsWith('127.')) return out;
  const n = networks.find((x) => x.address === address);
  const rule = "metrics are served on loopback (127.0.0.1) or the router's address on a lan network";
  if (!n) {
    bad(
      'metrics.listen',
      address === '0.0.0.0'
        ? `0.0.0.0 would serve every network, the guests' and the WAN included: ${rule}`
        : `${address} is not the router's address on any network: ${rule}`,
    );
    return undefined;
  }
  if (n.role === 'lan' && !n.captive) return out;
  if (n.role !== 'wan' && m.allowGuest) return out;
  bad(
    'metrics.listen',
    n.role === 'wan'
      ? `${address} is on networks.${n.name}, the WAN: ${rule}`
      : `${address} is the router's address on networks.${n.name}, a ${n.captive ? 'captive' : n.role} network that guests reach: ${rule} (set metrics.allowGuest: true to serve it there anyway)`,
  );
  return undefined;
}

function cidrOf(address: string, prefix: number): Cidr {
  const mask = ~(0xffffffff >>> prefix) >>> 0;
  const network = (ipToInt(address) & mask) >>> 0;
  return { network, prefix, mask, broadcast: (network | ~mask) >>> 0 };
}

/** IPv4 `nameserver` lines of /etc/resolv.conf. */
export function systemResolvers(file = '/etc/resolv.conf'): string[] {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
      .filter((a): a is string => a !== undefined && isIPv4(a));
  } catch {
    return [];
  }
}
