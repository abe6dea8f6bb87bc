import { z } from 'zod';
import { parseWith } from '../app.js';
import { parsePrefix } from './detectors.js';

/**
 * The extrusion detector's config (docs/apps/extrusion.md lists every field). The gateway section
 * holds the rules, thresholds, actions and limits; the gateway's facts add the watched (captive)
 * networks, the router's own addresses, the command prefix and the portal.
 */

/** What a detection of a rule makes the app do (through `/extrusion/action`, which a hook may veto). */
export const ACTIONS = ['log', 'rate-limit', 'block', 'deauth'] as const;
export type Action = (typeof ACTIONS)[number];

const action = z.enum(ACTIONS);
const count = (def: number) => z.number().int().min(0).max(1_000_000).default(def);
const port = z.number().int().min(1).max(65535);
const prefix = z.string().refine((s) => {
  try {
    parsePrefix(s);
    return true;
  } catch {
    return false;
  }
}, 'not an IPv4 address or prefix with no host bits (like 198.51.100.0/24)');

/** The gateway section (`apps.extrusion`): only what is the app's own. */
export const sectionShape = {
  /** The sliding window, seconds: every rule counts over it; a guest is re-reported at most once per window. */
  window: z.number().int().min(5).max(3600).default(60),
  portScan: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** Distinct destination ports (protocol + port, any host) in the window; 0: not counted. */
      ports: count(100),
      /** Distinct destination hosts in the window; 0: not counted. */
      hosts: count(250),
      /**
       * Destination ports whose hosts are not counted as distinct hosts: browsing reaches dozens of
       * hosts a minute on the web ports; a sweep goes to many hosts on one other port (445, 22, 23…).
       */
      hostsExcept: z.array(port).max(64).default([80, 443]),
      action: action.default('log'),
    })
    .prefault({}),
  smtpBurst: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** tcp connections to `ports` in the window. */
      count: count(20),
      ports: z.array(port).min(1).max(16).default([25, 465, 587]),
      action: action.default('log'),
    })
    .prefault({}),
  flood: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** New connections of any kind in the window. */
      count: count(1000),
      action: action.default('log'),
    })
    .prefault({}),
  blocklist: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** IPv4 addresses or prefixes; connections there count. */
      prefixes: z.array(prefix).max(1_000_000).default([]),
      /** Connections to the blocklist in the window before it fires (1: the first). */
      count: z.number().int().min(1).max(1_000_000).default(1),
      action: action.default('log'),
    })
    .prefault({}),
  /** The caps `rate-limit` sets through the portal's shaper, bits/s each way. */
  rateLimit: z
    .strictObject({
      up: z.number().int().min(8000).default(256_000),
      down: z.number().int().min(8000).default(1_000_000),
    })
    .prefault({}),
  /** Memory bounds: events kept per guest and in total, guests tracked, destinations per sample. */
  limits: z
    .strictObject({
      perGuest: z.number().int().min(16).max(1_000_000).default(4096),
      guests: z.number().int().min(1).max(1_000_000).default(4096),
      events: z.number().int().min(16).max(100_000_000).default(131_072),
      sample: z.number().int().min(1).max(100).default(10),
    })
    .prefault({}),
  /** Netlink receive buffer of each conntrack reader, bytes (what absorbs a burst of new flows). */
  bufferBytes: z
    .number()
    .int()
    .min(65536)
    .max(256 << 20)
    .default(2 << 20),
};

const network = z.strictObject({
  name: z.string().min(1),
  device: z.string().min(1),
  /** CIDR, e.g. 10.20.0.0/24. */
  subnet: prefix,
});

/** The whole config: the section plus what the gateway's facts give. */
export const ExtrusionConfigSchema = z
  .strictObject({
    /** Mailbox prefix: `/extrusion/detected`, `/extrusion/action`, … */
    name: z
      .string()
      .regex(/^\/[A-Za-z0-9_./-]*$/, 'a mailbox path like /extrusion')
      .default('/extrusion'),
    /** The watched networks: guests are the hosts of these subnets (the gateway's captive networks). Not `networks`: a file with `networks` is a gateway config. */
    captive: z.array(network).min(1, 'no captive network to watch (a guest network, or captive: true)'),
    /** Sources never watched: the router's own addresses. */
    exclude: z.array(z.ipv4()).default([]),
    /** Prefix for conntrack and reading /proc/net/arp, e.g. ["ip","netns","exec","router"]. */
    commandPrefix: z.array(z.string().min(1)).default([]),
    /** The portal daemon the actions go to (`deauth`, `block`, `rate-limit`), or false: none runs. */
    portal: z
      .union([z.string().regex(/^[A-Za-z0-9_.-]+$/, 'a daemon name'), z.literal(false)])
      .default(false),
    /** The portal's shaper prefix (docs/services/shaper.md): `rate-limit` sends `<portal>:<shaper>/set`. */
    shaper: z.string().startsWith('/').default('/system/shaper'),
    /** Where events come from: conntrack (the kernel), or only `/extrusion/event` messages. */
    events: z.enum(['conntrack', 'mailbox']).default('conntrack'),
    /** How long an action's request to the portal may take, ms. */
    actionTimeoutMs: z.number().int().min(100).max(60_000).default(5000),
    ...sectionShape,
  })
  .superRefine((c, ctx) => {
    const cap = c.limits.perGuest;
    const rules: [string[], number][] = [
      [['portScan', 'ports'], c.portScan.ports],
      [['portScan', 'hosts'], c.portScan.hosts],
      [['smtpBurst', 'count'], c.smtpBurst.count],
      [['flood', 'count'], c.flood.count],
      [['blocklist', 'count'], c.blocklist.count],
    ];
    for (const [path, v] of rules)
      if (v > cap)
        ctx.addIssue({
          code: 'custom',
          path,
          message: `${v} is above limits.perGuest (${cap}): a guest's window never holds that many events`,
        });
    if (c.portal === false)
      for (const r of ['portScan', 'smtpBurst', 'flood', 'blocklist'] as const)
        if (c[r].action !== 'log')
          ctx.addIssue({
            code: 'custom',
            path: [r, 'action'],
            message: `${c[r].action} needs the portal (it acts through the portal's mailboxes); none runs`,
          });
  });

export type ExtrusionConfig = z.output<typeof ExtrusionConfigSchema>;

export function parseExtrusionConfig(raw: unknown): ExtrusionConfig {
  return parseWith(ExtrusionConfigSchema, raw);
}
