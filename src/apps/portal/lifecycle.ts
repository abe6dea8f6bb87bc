import { performance } from 'node:perf_hooks';
import type { Bus } from '../../core/bus.js';
import { MetanetError } from '../../core/errors.js';
import type { Message } from '../../core/message.js';
import type { PortalConfig } from './config.js';
import type { DefaultLimits, Limits, Session, Sessions, Usage } from './sessions.js';

/**
 * The guest lifecycle after login (paper §9): every `idleCheckSeconds` the firewall's per-guest
 * counters are sampled (one `/system/firewall/clients` request: `nft -j list set` of the auth and
 * download sets) and each session is judged:
 *
 * - past its end → logged out, reason `session` (nft has already cut it off: the element's
 *   timeout is the session length; this announces it);
 * - a quota reached (bytes up, down, or both together) → reason `quota`, which quota in `quota`;
 * - no byte either way for `idleTimeout` seconds → reason `idle`.
 *
 * Every end goes through `Guestbook.end`, so the firewall, the state file and `/portal/logged-out`
 * agree. The pure parts (`advance`, `verdict`, `remaining`, `overridesFrom`) are exported for tests
 * and for the pages. docs/apps/portal.md, "Session limits".
 */

/** Why a session ends. */
export type Reason = 'idle' | 'session' | 'quota' | 'operator' | 'guest' | 'lease' | 'blocked';
export const REASONS: readonly Reason[] = [
  'idle',
  'session',
  'quota',
  'operator',
  'guest',
  'lease',
  'blocked',
];

export type Quota = 'up' | 'down' | 'total';

export type Verdict =
  | { readonly reason: 'session' | 'idle' }
  | { readonly reason: 'quota'; readonly quota: Quota };

/** One guest's element counters as the firewall reads them: packets and bytes each way. */
export interface Sample {
  readonly packetsUp: number;
  readonly up: number;
  readonly packetsDown: number;
  readonly down: number;
}

/** One read of every guest's counters; `loaded` is the table load they count from. */
export interface Counters {
  readonly loaded: number;
  /** By `counterKey(ip, mac)`. */
  readonly clients: ReadonlyMap<string, Sample>;
}

export const counterKey = (ip: string, mac: string): string => `${ip} ${mac}`;

/** Read every authorised client's counters from the firewall service (`<firewall>/clients`). */
export async function readCounters(bus: Bus, firewall = '/system/firewall'): Promise<Counters> {
  const r = await bus.request(`${firewall}/clients`, {});
  if (r.has('error')) throw new MetanetError('EFAIL', `${firewall}/clients: ${r.str('error')}`);
  const clients = new Map<string, Sample>();
  for (const t of r.all('client')) {
    const c = t.value as Message;
    clients.set(counterKey(c.str('ip'), c.str('mac')), {
      packetsUp: c.int('packets-up'),
      up: c.int('bytes-up'),
      packetsDown: c.int('packets-down'),
      down: c.int('bytes-down'),
    });
  }
  return { loaded: r.int('loaded'), clients };
}

/**
 * Usage after a new sample taken at `now`. A counter that went down, or a table loaded since the
 * last sample (`loaded` differs), counted again from 0: its whole value is new. Any new byte either
 * way makes `now` the last active time. No sample (the element is gone) changes nothing.
 */
export function advance(u: Usage, sample: Sample | undefined, loaded: number, now: number): Usage {
  if (!sample) return u;
  const restarted = loaded !== u.loaded;
  if (!restarted && sample.up === u.counterUp && sample.down === u.counterDown) return u; // nothing new
  const dUp = restarted || sample.up < u.counterUp ? sample.up : sample.up - u.counterUp;
  const dDown = restarted || sample.down < u.counterDown ? sample.down : sample.down - u.counterDown;
  return {
    up: u.up + dUp,
    down: u.down + dDown,
    counterUp: sample.up,
    counterDown: sample.down,
    loaded,
    active: dUp > 0 || dDown > 0 ? now : u.active,
  };
}

/**
 * Whether a session ends now, and why: its end (`session`) first, then a quota, then idleness.
 * `slackMs` forgives timer jitter: a check that fires a little early still counts a full idle period.
 */
export function verdict(s: Session, now: number, slackMs = 0): Verdict | undefined {
  if (s.expires <= now) return { reason: 'session' };
  const { limits: l, usage: u } = s;
  if (l.quotaUp > 0 && u.up >= l.quotaUp) return { reason: 'quota', quota: 'up' };
  if (l.quotaDown > 0 && u.down >= l.quotaDown) return { reason: 'quota', quota: 'down' };
  if (l.quotaTotal > 0 && u.up + u.down >= l.quotaTotal) return { reason: 'quota', quota: 'total' };
  if (l.idleTimeout > 0 && now - u.active >= l.idleTimeout * 1000 - slackMs) return { reason: 'idle' };
  return undefined;
}

/**
 * What a guest has left at `now`, from the session as last sampled: whole seconds until its end,
 * and the bytes left under its tightest quota (undefined when it has none). Never negative.
 */
export function remaining(s: Session, now: number): { seconds: number; bytes: number | undefined } {
  const { limits: l, usage: u } = s;
  const left: number[] = [];
  if (l.quotaUp > 0) left.push(l.quotaUp - u.up);
  if (l.quotaDown > 0) left.push(l.quotaDown - u.down);
  if (l.quotaTotal > 0) left.push(l.quotaTotal - u.up - u.down);
  return {
    seconds: Math.max(0, Math.floor((s.expires - now) / 1000)),
    bytes: left.length === 0 ? undefined : Math.max(0, Math.min(...left)),
  };
}

/** Seconds since the guest's last traffic was seen. */
export function idleSeconds(s: Session, now: number): number {
  return Math.max(0, Math.floor((now - s.usage.active) / 1000));
}

/** The config's defaults for every limit but the session length (which the caller gives). */
export function defaultLimits(config: PortalConfig): DefaultLimits {
  return {
    idleTimeout: config.idleTimeout,
    quotaUp: config.quotaUp,
    quotaDown: config.quotaDown,
    quotaTotal: config.quotaTotal,
  };
}

/** Per-guest limits an auth answer may set; anything absent keeps the config's default. */
export type LimitOverrides = Partial<Limits>;

/** The auth answer's tags, each with its limit and its range. */
const OVERRIDES: readonly { tag: string; key: keyof Limits; min: number; max: number }[] = [
  { tag: 'session-timeout', key: 'sessionTimeout', min: 1, max: 4233600 },
  { tag: 'idle-timeout', key: 'idleTimeout', min: 0, max: 4233600 },
  { tag: 'quota-up', key: 'quotaUp', min: 0, max: Number.MAX_SAFE_INTEGER },
  { tag: 'quota-down', key: 'quotaDown', min: 0, max: Number.MAX_SAFE_INTEGER },
  { tag: 'quota-total', key: 'quotaTotal', min: 0, max: Number.MAX_SAFE_INTEGER },
  { tag: 'rate-up', key: 'rateUp', min: 0, max: Number.MAX_SAFE_INTEGER },
  { tag: 'rate-down', key: 'rateDown', min: 0, max: Number.MAX_SAFE_INTEGER },
];

/**
 * The limits an `/portal/auth` answer sets (`session-timeout`, `idle-timeout`, `quota-up`,
 * `quota-down`, `quota-total`, `rate-up`, `rate-down`; ints). A tuple of the wrong type or out of
 * range is left out and named in `problems` (the guest still gets in, with the default).
 */
export function overridesFrom(m: Message): { overrides: LimitOverrides; problems: string[] } {
  const overrides: { -readonly [K in keyof Limits]?: number } = {};
  const problems: string[] = [];
  for (const o of OVERRIDES) {
    const t = m.get(o.tag);
    if (t === undefined) continue;
    if (t.type !== 'int' || typeof t.value !== 'number' || t.value < o.min || t.value > o.max) {
      problems.push(`"${o.tag}" must be an int ${o.min}..${o.max}, got ${t.type} ${String(t.value)}`);
      continue;
    }
    overrides[o.key] = t.value;
  }
  return { overrides, problems };
}

/** The session's limits as message tuples (`/portal/login`, `/portal/clients`); rates only when set. */
export function limitTuples(l: Limits): Record<string, number> {
  return {
    'session-timeout': l.sessionTimeout,
    'idle-timeout': l.idleTimeout,
    'quota-up': l.quotaUp,
    'quota-down': l.quotaDown,
    'quota-total': l.quotaTotal,
    ...(l.rateUp === undefined ? {} : { 'rate-up': l.rateUp }),
    ...(l.rateDown === undefined ? {} : { 'rate-down': l.rateDown }),
  };
}

/** What the lifecycle needs of the guestbook (an interface, so tests can stand in for it). */
export interface LifecycleBook {
  readonly sessions: Sessions;
  end(ip: string, reason: string, opts?: { session?: Session; quota?: Quota }): Promise<boolean>;
  report(mailbox: string, e: unknown): void;
}

export interface LifecycleOptions {
  /** Seconds between checks (config `idleCheckSeconds`): only used for the jitter allowance. */
  readonly checkSeconds: number;
  /** Reads every guest's counters (the firewall's, or a stand-in). */
  readonly counters: () => Promise<Counters>;
  readonly now?: () => number;
  /** Where a failed check is reported (default `/portal/error`'s mailbox tag). */
  readonly mailbox?: string;
}

export interface CheckResult {
  /** Sessions judged (on record at the start). */
  readonly sessions: number;
  readonly ended: readonly { readonly ip: string; readonly reason: Reason; readonly quota?: Quota }[];
  /** Wall time of the check, counter read included. */
  readonly ms: number;
  /** Wall time of the counter read alone. */
  readonly readMs: number;
}

/**
 * The periodic check. `check()` samples once and ends what must end; the caller runs it on a
 * timer (`bus.every`). Checks never overlap: one asked for while one runs returns that one's result.
 */
export class Lifecycle {
  private readonly now: () => number;
  private running?: Promise<CheckResult>;

  constructor(
    private readonly book: LifecycleBook,
    private readonly opts: LifecycleOptions,
  ) {
    this.now = opts.now ?? Date.now;
  }

  /** Sample and judge every session; `end: false` only records the sample (the final one at close). */
  check(opts: { end?: boolean } = {}): Promise<CheckResult> {
    if (!this.running)
      this.running = this.run(opts.end ?? true).finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  private async run(end: boolean): Promise<CheckResult> {
    const t0 = performance.now();
    const sessions = this.book.sessions;
    const records = sessions.all();
    const ended: { ip: string; reason: Reason; quota?: Quota }[] = [];
    if (records.length === 0) return { sessions: 0, ended, ms: performance.now() - t0, readMs: 0 };
    let readMs = 0;
    let counters: Counters | undefined;
    // A session past its end needs no counters (nft dropped its element with it).
    if (records.some((s) => s.expires > this.now())) {
      const r0 = performance.now();
      try {
        counters = await this.opts.counters();
      } catch (e) {
        this.book.report(this.opts.mailbox ?? '/portal/lifecycle', e);
      }
      readMs = performance.now() - r0;
    }
    const now = this.now();
    const slack = (this.opts.checkSeconds * 1000) / 10;
    const due: { s: Session; v: Verdict }[] = [];
    let changed = false;
    for (const s of sessions.all()) {
      let cur = s;
      if (counters && s.expires > now) {
        const usage = advance(s.usage, counters.clients.get(counterKey(s.ip, s.mac)), counters.loaded, now);
        if (usage !== s.usage && sessions.update(s, usage)) {
          changed = true;
          cur = { ...s, usage };
        }
      }
      // Without a fresh sample only the session's end is judged: idleness needs counters.
      const v = verdict(cur, now, slack);
      if (v && (v.reason === 'session' || counters)) due.push({ s: cur, v });
    }
    if (changed) sessions.save();
    if (end)
      for (const { s, v } of due) {
        const quota = v.reason === 'quota' ? v.quota : undefined;
        try {
          if (await this.book.end(s.ip, v.reason, { session: s, ...(quota ? { quota } : {}) }))
            ended.push({ ip: s.ip, reason: v.reason, ...(quota ? { quota } : {}) });
        } catch (e) {
          this.book.report(this.opts.mailbox ?? '/portal/lifecycle', e);
        }
      }
    return { sessions: records.length, ended, ms: performance.now() - t0, readMs };
  }
}
