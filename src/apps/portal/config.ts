import { z } from 'zod';
import { ConfigError, parseWith } from '../app.js';

const MAC_RE = /^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$/;

/** The portal's configuration (docs/apps/portal.md lists every field). */
export const PortalConfigSchema = z.strictObject({
  /** Mailbox prefix: `/portal/auth`, `/portal/clients`, the HTTP server `/portal/http`. */
  name: z.string().min(1).default('/portal'),
  /** Address the portal listens on (the router's LAN address) and where the firewall redirects to. */
  address: z.ipv4(),
  port: z.number().int().min(1).max(65535).default(8080),
  /** Host name:port the portal's own URLs use; default `<address>:<port>`. */
  portalHost: z
    .string()
    .regex(/^[A-Za-z0-9.-]+(:\d{1,5})?$/, 'must be host or host:port')
    .optional(),
  /** LAN interface(s) clients come from. */
  lan: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
  /** Session limit in seconds (keep it shorter than the DHCP lease); `session-timeout` in an auth answer overrides it. */
  sessionSeconds: z.number().int().min(1).max(4233600).default(3600),
  /** Seconds without a byte either way before a guest is logged out (reason `idle`); 0 = never. */
  idleTimeout: z.number().int().min(0).max(4233600).default(600),
  /** Seconds between two samples of the firewall's counters (idle, quota and session-end checks). */
  idleCheckSeconds: z.number().int().min(1).max(3600).default(30),
  /** Bytes a guest may send, receive, or both together, per session; 0 = no quota. */
  quotaUp: z.number().int().min(0).default(0),
  quotaDown: z.number().int().min(0).default(0),
  quotaTotal: z.number().int().min(0).default(0),
  /** Portal sessions (JSON, written atomically); without it sessions do not survive a restart. */
  stateFile: z.string().min(1).optional(),
  /** The firewall service's own state file. */
  firewallStateFile: z.string().min(1).optional(),
  /** Prefix for the router-side commands (nft, conntrack, reading /proc/net/arp), e.g. ip netns exec NS. */
  commandPrefix: z.array(z.string().min(1)).default([]),
  garden: z.array(z.string().min(1)).default([]),
  dns: z.array(z.string().min(1)).default([]),
  /** Site title on every page, in every language; default: the theme's `site.title` of the page's language. */
  title: z.string().min(1).optional(),
  /** Usage policy, plain text (escaped); blank lines separate paragraphs. Default: the theme's `site.policy`. */
  policy: z.string().min(1).optional(),
  /**
   * The operator's theme directory, laid over the default theme (src/apps/portal/theme/default):
   * templates, style.css, logo, messages/<lang>.json. docs/apps/portal.md, "Themes".
   */
  themeDir: z.string().min(1).optional(),
  /** The language when none of the guest's `Accept-Language` is in the theme (a messages/<lang>.json). */
  language: z
    .string()
    .regex(/^[a-z]{2,3}(-[a-z0-9]{2,8})*$/, 'a lower-case language tag like en, fr, pt-br')
    .default('en'),
  /**
   * How guests log in: `click` (accept the policy) or `credentials` (username and password, sent to
   * `/portal/auth` in `form` as `username` and `password`: a RADIUS or LDAP hook checks them).
   */
  login: z.enum(['click', 'credentials']).default('click'),
  /**
   * The pages and the RFC 8908 API also over HTTPS (cert and key: PEM files, read at start); the
   * API's `user-portal-url` and the gateway's DHCP option 114 then use https.
   */
  https: z
    .strictObject({
      port: z.number().int().min(1).max(65535),
      cert: z.string().min(1),
      key: z.string().min(1),
    })
    .optional(),
  /** Append the stock `/portal/auth` listener that accepts everyone; false: only hooks decide (none → 503). */
  stockAuth: z.boolean().default(true),
  /** How long `/portal/auth` may take (ms) before the client is told to try again. */
  authTimeoutMs: z.number().int().min(10).max(60000).default(5000),
  /**
   * The DHCP daemon whose leases the portal follows (`dhcpd`): it then knows guests' MACs and
   * hostnames before their first request, and a released or expired lease ends the session.
   */
  dhcpd: z
    .string()
    .regex(/^[A-Za-z0-9._-]+$/, 'a daemon name')
    .optional(),
  /** Fair sharing (docs/services/shaper.md): bits/s guests share, ~90–95% of the real line; both or neither. */
  uplinkDown: z.number().int().min(64000).optional(),
  uplinkUp: z.number().int().min(64000).optional(),
  /** Per-guest caps, bits/s, when the auth answer sets none; 0 = none (else ≥ 8000). */
  rateUp: z.number().int().min(0).default(0),
  rateDown: z.number().int().min(0).default(0),
  /** Delay (ms) between the 303 after login and cutting the client's redirected connections. */
  cutDelayMs: z.number().int().min(0).max(10000).default(300),
  /**
   * Walled garden by name: these domains and their subdomains are reachable before login. Their
   * addresses come from the answers of the DNS forwarder (`forwarder`), each for its TTL clamped to
   * gardenTtlMin..gardenTtlMax. docs/apps/portal.md, "Walled garden by name".
   */
  gardenDomains: z
    .array(
      z
        .string()
        .regex(
          /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/,
          'a lower-case domain name like example.org',
        ),
    )
    .default([]),
  gardenTtlMin: z.number().int().min(1).max(4233600).default(300),
  gardenTtlMax: z.number().int().min(1).max(4233600).default(86400),
  /** The DNS forwarder daemon whose answers open the garden by name (`"dns"`; set by the gateway when it runs). */
  forwarder: z
    .string()
    .regex(/^[A-Za-z0-9._-]+$/, 'a daemon name')
    .optional(),
  /** MACs never captive (accepted like logged-in guests) and MACs with no access at all (nor a DHCP lease). */
  /**
   * Per-MAC limits: for these devices, the session length, idle timeout, quotas and rates differ
   * from the defaults above (an auth answer's own limits still win). Kept in the config file.
   */
  macLimits: z
    .record(
      z.string().regex(MAC_RE, 'a MAC like 02:11:22:33:44:55'),
      z.strictObject({
        sessionSeconds: z.number().int().min(1).max(4233600).optional(),
        idleTimeout: z.number().int().min(0).max(4233600).optional(),
        quotaUp: z.number().int().min(0).optional(),
        quotaDown: z.number().int().min(0).optional(),
        quotaTotal: z.number().int().min(0).optional(),
        rateUp: z.number().int().min(0).optional(),
        rateDown: z.number().int().min(0).optional(),
      }),
    )
    .default({}),
  trustedMacs: z.array(z.string().regex(MAC_RE, 'a MAC like 02:11:22:33:44:55')).default([]),
  blockedMacs: z.array(z.string().regex(MAC_RE, 'a MAC like 02:11:22:33:44:55')).default([]),
  /** Where the operator's MAC list changes are kept (JSON); without it they do not survive a restart. */
  macFile: z.string().min(1).optional(),
  /** Connections one client address may hold open to the portal's web server; more are reset (0 = no cap). */
  maxConnectionsPerClient: z.number().int().min(0).max(1048576).default(64),
});

export type PortalConfigInput = z.input<typeof PortalConfigSchema>;
export type PortalConfig = z.output<typeof PortalConfigSchema>;

/**
 * The portal's URLs from its config: `http` (the plain pages, where unauthorised web traffic is
 * redirected), `page` (`user-portal-url`: https when `https` is set) and `api` (RFC 8908, the URI
 * for DHCP option 114: https when `https` is set). The host is `portalHost`'s, else `address`.
 */
export function portalUrls(c: {
  readonly address: string;
  readonly port: number;
  readonly portalHost?: string | undefined;
  readonly https?: { readonly port: number } | undefined;
}): { http: string; page: string; api: string } {
  const hostPort = (c.portalHost ?? `${c.address}:${c.port}`).toLowerCase();
  const http = `http://${hostPort}/`;
  const host = hostPort.replace(/:\d+$/, '');
  const page = c.https ? `https://${host}${c.https.port === 443 ? '' : `:${c.https.port}`}/` : http;
  return { http, page, api: `${page}api` };
}

/** Validate a config object; a ConfigError names every bad field. */
export function parseConfig(raw: unknown): PortalConfig {
  const c = parseWith(PortalConfigSchema, raw);
  if (c.gardenTtlMin > c.gardenTtlMax)
    throw new ConfigError([{ path: 'gardenTtlMin', message: 'must not be above gardenTtlMax' }]);
  if ((c.uplinkDown === undefined) !== (c.uplinkUp === undefined))
    throw new ConfigError([
      {
        path: c.uplinkDown === undefined ? 'uplinkDown' : 'uplinkUp',
        message: 'fair sharing needs both uplinkDown and uplinkUp (bits/s), or neither',
      },
    ]);
  // One spelling of a MAC (lowercase, colons), as the portal compares them.
  c.macLimits = Object.fromEntries(
    Object.entries(c.macLimits).map(([mac, l]) => [mac.toLowerCase().replaceAll('-', ':'), l]),
  );
  return c;
}
