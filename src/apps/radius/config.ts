import { z } from 'zod';
import { parseWith } from '../app.js';

/** One RADIUS server; the list is tried in order (failover), sticking to the last one that answered. */
const ServerSchema = z.strictObject({
  host: z.string().min(1),
  authPort: z.number().int().min(1).max(65535).default(1812),
  acctPort: z.number().int().min(1).max(65535).default(1813),
  secret: z.string().min(1),
});

const DaeClientSchema = z.strictObject({
  /** Source address allowed to send Disconnect/CoA requests. */
  address: z.ipv4(),
  secret: z.string().min(1),
});

/** RFC 5176 Dynamic Authorization server (Disconnect-Request / CoA-Request). */
const DaeSchema = z.strictObject({
  address: z.ipv4().default('0.0.0.0'),
  port: z.number().int().min(1).max(65535).default(3799),
  clients: z.array(DaeClientSchema).min(1),
  /** Drop requests without a Message-Authenticator (radclient sends none unless asked). */
  requireMessageAuthenticator: z.boolean().default(false),
});

/** uspot's `mac_format`: the separators and the case of this template are used. */
export const MAC_FORMATS = [
  'aabbccddeeff',
  'aa-bb-cc-dd-ee-ff',
  'aa:bb:cc:dd:ee:ff',
  'AABBCCDDEEFF',
  'AA-BB-CC-DD-EE-FF',
  'AA:BB:CC:DD:EE:FF',
] as const;
export type MacFormat = (typeof MAC_FORMATS)[number];

/** The app's own fields: its gateway section (docs/apps/radius.md lists every one). */
export const own = {
  servers: z.array(ServerSchema).min(1),
  /** Wait for one answer (ms) before sending again. */
  timeoutMs: z.number().int().min(10).max(30000).default(1000),
  /** Retransmissions to one server before the next one is tried. */
  retries: z.number().int().min(0).max(10).default(2),
  /** The whole authentication (every server, every try) ends within this (ms); keep it under the portal's authTimeoutMs. */
  authBudgetMs: z.number().int().min(50).max(60000).default(4000),
  /** Drop Access-Accept/Reject/Challenge without a valid Message-Authenticator (BlastRADIUS). */
  requireMessageAuthenticator: z.boolean().default(true),
  /** How the password travels: PAP (User-Password, hidden) or CHAP. */
  auth: z.enum(['pap', 'chap']).default('pap'),
  /** Form fields of the portal's POST /accept holding the credentials. */
  usernameField: z.string().min(1).default('username'),
  passwordField: z.string().min(1).default('password'),
  /** Try the guest's MAC as User-Name first (MAC authentication); a reject then falls back to the form. */
  macAuth: z.boolean().default(false),
  /**
   * MAC login without the splash page: the DHCP daemon whose leases are followed (set by the
   * gateway when dhcpd runs). Each new lease of a guest with no session is asked for by MAC alone;
   * an accept logs it in at once. Needs `macLogin: true`.
   */
  dhcpd: z
    .string()
    .regex(/^[A-Za-z0-9._-]+$/, 'a daemon name')
    .optional(),
  macLogin: z.boolean().default(false),
  /** Password sent with MAC authentication; default the formatted MAC itself. */
  macPassword: z.string().optional(),
  /** Appended to the MAC's User-Name (e.g. `@mac.example.org`). */
  macSuffix: z.string().default(''),
  macFormat: z.enum(MAC_FORMATS).default('aa:bb:cc:dd:ee:ff'),
  nasIdentifier: z.string().min(1).default('metanet'),
  /** Called-Station-Id; default the NAS-Identifier (RFC 3580 suggests `AP-MAC:SSID`). */
  calledStationId: z.string().min(1).optional(),
  /** NAS-Port-Type: 19 Wireless-802.11 (default), 15 Ethernet. */
  nasPortType: z.number().int().min(0).max(0xffffffff).default(19),
  /** No server answers: refuse (false, default) or let the guest in with the portal's defaults. */
  failOpen: z.boolean().default(false),
  unavailableMessage: z.string().min(1).default('authentication unavailable'),
  /** Shown on an Access-Reject without a Reply-Message. */
  rejectMessage: z.string().min(1).default('wrong username or password'),
  /** Shown when the form has no username (and MAC authentication did not let the guest in). */
  missingMessage: z.string().min(1).default('please enter your username and password'),
  accounting: z.boolean().default(true),
  /**
   * Seconds between Interim-Updates, set here: it overrides the Access-Accept's Acct-Interim-Interval
   * (RFC 2869 §5.16: a local value MUST override); 0 = none. Absent: the answer's, else 300.
   */
  acctInterval: z.number().int().min(0).max(86400).optional(),
  /** Lower bound for Acct-Interim-Interval from the server (RFC 2869 §5.16: not below 60). */
  minAcctInterval: z.number().int().min(1).max(86400).default(60),
  /** Swap input and output (RFC 2866 counts from the NAS's side: input = what the guest sent). */
  swapInputOutput: z.boolean().default(false),
  /** Accounting packets kept on disk while no server answers; the oldest go first past this. */
  queueMax: z.number().int().min(1).max(1000000).default(1000),
  /** Seconds between two attempts to send the queue while servers are away. */
  queueRetrySeconds: z.number().int().min(1).max(3600).default(30),
  dae: DaeSchema.optional(),
};

export const RadiusConfigSchema = z.strictObject({
  /** The portal daemon hooked (`portal:/portal/auth`). */
  target: z
    .string()
    .regex(/^[A-Za-z0-9._-]+$/, 'a daemon name')
    .default('portal'),
  /** The portal's mailbox prefix (its `name`). */
  portal: z.string().startsWith('/').default('/portal'),
  /** NAS-IP-Address: the router's address on the captive network. */
  nasIp: z.ipv4(),
  /** Where Acct-Session-Ids and the accounting queue are kept; without it, in memory only. */
  stateDir: z.string().min(1).optional(),
  ...own,
});

export type RadiusConfigInput = z.input<typeof RadiusConfigSchema>;
export type RadiusConfig = z.output<typeof RadiusConfigSchema>;
export type ServerConfig = z.output<typeof ServerSchema>;
export type DaeConfig = z.output<typeof DaeSchema>;

export function parseConfig(raw: unknown): RadiusConfig {
  return parseWith(RadiusConfigSchema, raw);
}

/** A MAC (any case, `:` or `-`) in one of the `MAC_FORMATS`. */
export function formatMac(mac: string, format: MacFormat): string {
  const hex = mac
    .split(/[:-]/)
    .map((b) => b.padStart(2, '0'))
    .join('')
    .toLowerCase();
  const sep = format.length === 12 ? '' : format[2]!;
  const pairs = hex.match(/../g) ?? [];
  const s = pairs.join(sep);
  return format[0] === 'A' ? s.toUpperCase() : s;
}
