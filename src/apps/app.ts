import type { z } from 'zod';
import type { Bus } from '../core/bus.js';
import { MetanetError } from '../core/errors.js';
import type { Logger } from '../core/log.js';

/**
 * The one contract every MetaNet app fulfils (CoreDHCP's plugin, done with mailboxes): a name,
 * how its config is validated, how the gateway's shared facts plus its own section become that
 * config, and `start`, which returns a handle to stop it. `metanet up` hosts any number of apps
 * in one process (each its own bus and daemon socket, named `name`); `runApp` runs one alone.
 * docs/gateway.md.
 */
export interface App<C = unknown> {
  /** Daemon name and config section key: `dhcpd`, `dns`, `portal`, `mailproxy`, `dhcp-ldap`. */
  readonly name: string;
  /** One line: what it does. */
  readonly summary: string;
  /**
   * The app's section of the gateway config: only what is its own (a strict zod object; unknown
   * keys are errors). `enabled` and `process` are added by the gateway.
   */
  readonly section: z.ZodObject;
  /**
   * The app's whole config from the gateway's facts and its (validated) section: a plain value
   * that `parse` then checks like a standalone config file.
   */
  fromGateway(gw: GatewayFacts, section: Record<string, unknown>): unknown;
  /** Validate a standalone config (a parsed file); a ConfigError lists every problem by path. */
  parse(raw: unknown): C;
  /** Start serving on `bus` (already named `name`; its daemon socket is served by the caller). */
  start(bus: Bus, config: C, ctx: AppContext): Promise<AppHandle>;
}

/** What the host gives an app besides its config. */
export interface AppContext {
  /** The daemons' socket directory (undefined: METANET_DIR, else /run/metanet). */
  readonly dir: string | undefined;
  readonly log: Logger;
}

export interface AppHandle {
  /** A few figures for `metanet up` status (`/gateway/status`). */
  status(): Record<string, string | number | boolean>;
  /** Stop serving and put state on disk; resolves when done. */
  close(): Promise<void>;
  /** An extra word for the ready line (`mailproxy ready 10143`). */
  readonly readyNote?: string;
  /**
   * The app's Prometheus metric families (docs/metrics.md). `metanet up` calls it once, after
   * start, only when the gateway config has `metrics`; each family's `collect` then runs at every
   * scrape, reading counters the app keeps anyway, so metrics cost its hot paths nothing.
   */
  metrics?(): readonly MetricFamily[];
}

/** One labelled value of a metric family. */
export interface MetricSample {
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** What a family's `collect` gives: one number (no labels) or one sample per label set. */
export type MetricValue = number | readonly MetricSample[];

/**
 * One labelled histogram of a histogram family: `counts[i]` observations in bucket `i` (above
 * bound `i - 1`, at most bound `i`), `counts[buckets.length]` those above the highest bound — not
 * cumulative; the exposition cumulates them. `sum`: the observations summed.
 */
export interface HistogramSample {
  readonly labels: Readonly<Record<string, string>>;
  readonly counts: readonly number[];
  readonly sum: number;
}

/** One Prometheus metric family of an app, read at scrape time. */
export type MetricFamily = ScalarFamily | HistogramFamily;

interface FamilyBase {
  /** `metanet_<app>_…`, in base units (`_seconds`, `_bytes`); a counter's ends in `_total`. */
  readonly name: string;
  readonly help: string;
  /** The label names of every sample (none: one sample). Never per guest. */
  readonly labels?: readonly string[];
}

/** A counter or a gauge: `collect` gives one number (no labels) or one sample per label set. */
export interface ScalarFamily extends FamilyBase {
  readonly type: 'counter' | 'gauge';
  collect(): MetricValue | Promise<MetricValue>;
}

/** A histogram with fixed buckets, kept by the app as plain counters (`_bucket`, `_sum`, `_count`). */
export interface HistogramFamily extends FamilyBase {
  readonly type: 'histogram';
  /** Upper bounds, ascending, without +Inf. */
  readonly buckets: readonly number[];
  collect(): readonly HistogramSample[] | Promise<readonly HistogramSample[]>;
}

/** One network of the gateway, as declared once in the config. */
export interface Network {
  /** Its key in `networks` (`wan`, `lan`, `guest`, …). */
  readonly name: string;
  readonly role: 'wan' | 'lan' | 'guest';
  /** The Linux interface (`eth0`, `br-guest`). */
  readonly device: string;
  /** The router's address on it (absent for a WAN configured by DHCP). */
  readonly address: string | undefined;
  /** Prefix length of `address`. */
  readonly prefix: number | undefined;
  /** The subnet in CIDR form, e.g. `10.20.0.0/24`. */
  readonly subnet: string | undefined;
  /** Whether guests here must pass the portal (default: true for `guest`, false otherwise). */
  readonly captive: boolean;
}

/** The facts every app's section builds on, resolved from the gateway config. */
export interface GatewayFacts {
  readonly networks: readonly Network[];
  /** LAN and guest networks with an address: what dhcpd, the DNS forwarder and the portal serve. */
  readonly served: readonly Network[];
  readonly captive: readonly Network[];
  /** Upstream DNS servers (config, else /etc/resolv.conf). */
  readonly upstreamDns: readonly string[];
  /** Where apps keep state (leases, sessions): default /var/lib/metanet. */
  readonly stateDir: string;
  /** Prefix for router-side commands (nft, conntrack, reading ARP): [] on a real router. */
  readonly commandPrefix: readonly string[];
  /** Names of the apps this config runs. */
  readonly enabled: ReadonlySet<string>;
  /**
   * The portal's address and port when the portal runs (for DHCP option 114, the firewall);
   * `api`: its RFC 8908 API URI (https when the portal has `https`), what option 114 carries.
   */
  readonly portal: { readonly address: string; readonly port: number; readonly api?: string } | undefined;
}

/** One bad field of a config. */
export interface ConfigProblem {
  /** Where, as a path: `apps.dhcpd.leaseTime`, `networks.guest.address`. */
  readonly path: string;
  readonly message: string;
}

/** A config with one or more bad fields: every one of them, by path (`metanet up --check`). */
export class ConfigError extends MetanetError {
  readonly problems: readonly ConfigProblem[];
  constructor(problems: readonly ConfigProblem[], where?: string) {
    super(
      'ECONFIG',
      `${where ? `${where}: ` : ''}invalid configuration:\n  ${problems
        .map((p) => `${p.path || '(root)'}: ${p.message}`)
        .join('\n  ')}`,
    );
    this.problems = problems;
  }
}

/** zod issues → problems, each path prefixed with `at`. */
export function zodProblems(issues: readonly z.core.$ZodIssue[], at = ''): ConfigProblem[] {
  return issues.map((i) => ({ path: joinPath(at, i.path), message: i.message }));
}

export function joinPath(at: string, path: readonly PropertyKey[]): string {
  let s = at;
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : s ? `.${String(p)}` : String(p);
  return s;
}

/** Validate with a zod schema; a ConfigError names every bad field. */
export function parseWith<T extends z.ZodType>(schema: T, raw: unknown, at = ''): z.output<T> {
  const r = schema.safeParse(raw);
  if (!r.success) throw new ConfigError(zodProblems(r.error.issues, at));
  return r.data;
}
