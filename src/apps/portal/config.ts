import { z } from 'zod';
import { parseWith } from '../app.js';

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
  title: z.string().min(1).default('Welcome to the community network'),
  /** Usage policy, plain text (escaped); blank lines separate paragraphs. */
  policy: z
    .string()
    .min(1)
    .default(
      'Be kind to others on the network: no spam, no attacks, no illegal content.\n\n' +
        'Traffic may be shaped so that everyone gets a fair share.',
    ),
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
  /** Delay (ms) between the 303 after login and cutting the client's redirected connections. */
  cutDelayMs: z.number().int().min(0).max(10000).default(300),
});

export type PortalConfigInput = z.input<typeof PortalConfigSchema>;
export type PortalConfig = z.output<typeof PortalConfigSchema>;

/** Validate a config object; a ConfigError names every bad field. */
export function parseConfig(raw: unknown): PortalConfig {
  return parseWith(PortalConfigSchema, raw);
}
