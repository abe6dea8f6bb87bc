import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { MetanetError } from '../../core/errors.js';

/**
 * What one guest may use, fixed at login: the config's defaults, each overridable by the
 * `/portal/auth` answer (lifecycle.ts). Seconds and bytes; 0 = no limit, except `sessionTimeout`.
 */
export interface Limits {
  /** Seconds the session lasts (the firewall element's timeout). */
  readonly sessionTimeout: number;
  /** Seconds without a byte either way before the guest is logged out (reason `idle`); 0 = never. */
  readonly idleTimeout: number;
  /** Bytes the guest may send, receive, or both together over the session; 0 = no quota. */
  readonly quotaUp: number;
  readonly quotaDown: number;
  readonly quotaTotal: number;
  /** Rate caps in bits/s from the auth answer, kept for the shaper; absent when none was given. */
  readonly rateUp?: number;
  readonly rateDown?: number;
}

/** What a guest has used, as of the last sample of the firewall's counters. */
export interface Usage {
  /** Bytes sent (up) and received (down) over the session: sums of counter deltas, so they survive table rebuilds. */
  readonly up: number;
  readonly down: number;
  /** The element counters at the last sample, the base of the next delta. */
  readonly counterUp: number;
  readonly counterDown: number;
  /** The firewall table load those counters count from (epoch ms; 0 = none seen yet). */
  readonly loaded: number;
  /** Epoch ms of the sample that last saw traffic (the login time until one does). */
  readonly active: number;
}

/** One logged-in client. Times are epoch milliseconds. */
export interface Session {
  readonly ip: string;
  readonly mac: string;
  readonly since: number;
  readonly expires: number;
  readonly limits: Limits;
  readonly usage: Usage;
}

/** Usage of a session that has not been sampled yet. */
export function freshUsage(at: number): Usage {
  return { up: 0, down: 0, counterUp: 0, counterDown: 0, loaded: 0, active: at };
}

/** The limits a version-1 state file did not have: the config's defaults, without the session length. */
export type DefaultLimits = Omit<Limits, 'sessionTimeout'>;

export const NO_LIMITS: DefaultLimits = { idleTimeout: 0, quotaUp: 0, quotaDown: 0, quotaTotal: 0 };

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const VERSION = 2;

/**
 * The portal's sessions, one per client address, kept in a JSON file written atomically
 * (`<file>.tmp`, then rename; mode 0600) on every change, so they survive a restart with their
 * limits and usage. A session past its end is no longer live (`get`, `list`) but stays on record
 * (`record`, `all`, and in the file) until the lifecycle ends it through the guestbook, so its end
 * is announced (reason `session`) even when it ran out while the portal was down.
 */
export class Sessions {
  private readonly map = new Map<string, Session>();

  constructor(
    private readonly file?: string,
    private readonly now: () => number = Date.now,
    defaults: DefaultLimits = NO_LIMITS,
  ) {
    if (file) for (const s of loadSessions(file, defaults, this.now())) this.map.set(s.ip, s);
  }

  /** The live session of `ip` (not past its end). */
  get(ip: string): Session | undefined {
    const s = this.map.get(ip);
    return s && s.expires > this.now() ? s : undefined;
  }

  /** The session on record for `ip`, live or past its end but not ended yet. */
  record(ip: string): Session | undefined {
    return this.map.get(ip);
  }

  /** Start a session (replacing any of the same address) with these limits; `usage` carries a counter base. */
  add(ip: string, mac: string, limits: Limits, usage?: Usage): Session {
    const since = this.now();
    const s: Session = {
      ip,
      mac,
      since,
      expires: since + limits.sessionTimeout * 1000,
      limits,
      usage: usage ?? freshUsage(since),
    };
    this.map.set(ip, s);
    this.save();
    return s;
  }

  /**
   * Record a new sample for the session `s` (if it is still the one on record: not ended or
   * replaced meanwhile). Not saved: call `save()` once after a round of updates.
   */
  update(s: Session, usage: Usage): boolean {
    const cur = this.map.get(s.ip);
    if (!cur || !sameSession(cur, s)) return false;
    this.map.set(s.ip, { ...cur, usage });
    return true;
  }

  /** New limits for a live session (its end follows the session timeout, from the login); saved. */
  setLimits(ip: string, limits: Limits): Session | undefined {
    const cur = this.map.get(ip);
    if (!cur) return undefined;
    const s: Session = { ...cur, limits, expires: cur.since + limits.sessionTimeout * 1000 };
    this.map.set(ip, s);
    this.save();
    return s;
  }

  remove(ip: string): boolean {
    const had = this.map.delete(ip);
    if (had) this.save();
    return had;
  }

  /** Every live session. */
  list(): Session[] {
    const now = this.now();
    return [...this.map.values()].filter((s) => s.expires > now);
  }

  /** Every session on record, those past their end included. */
  all(): Session[] {
    return [...this.map.values()];
  }

  /** Write the file (atomically); a no-op without one. */
  save(): void {
    if (!this.file) return;
    const tmp = `${this.file}.tmp`;
    const sessions = [...this.map.values()];
    writeFileSync(tmp, `${JSON.stringify({ version: VERSION, sessions })}\n`, { mode: 0o600 });
    renameSync(tmp, this.file);
  }
}

/** The same session: same address, device and start (a new login is a new session). */
export function sameSession(a: Session, b: Session): boolean {
  return a.ip === b.ip && a.mac === b.mac && a.since === b.since;
}

/** Read a state file: missing is empty; anything malformed is an ECONFIG error naming the entry. */
export function loadSessions(file: string, defaults: DefaultLimits = NO_LIMITS, now = Date.now()): Session[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new MetanetError('ECONFIG', `portal state ${file}: ${(e as Error).message}`);
  }
  return parseSessions(text, file, defaults, now);
}

/**
 * Parse a state file. Version 2: `{version: 2, sessions: [{ip, mac, since, expires, limits, usage}]}`.
 * Version 1 (no limits, no usage) is read too: its sessions get the `defaults` and a session
 * length of `expires - since`, and count their usage from `now` (idle time from the restart).
 */
export function parseSessions(
  text: string,
  where = 'portal state',
  defaults: DefaultLimits = NO_LIMITS,
  now = Date.now(),
): Session[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new MetanetError('ECONFIG', `${where}: not JSON: ${(e as Error).message}`);
  }
  const d = doc as { version?: unknown; sessions?: unknown };
  if (
    typeof doc !== 'object' ||
    doc === null ||
    (d.version !== 1 && d.version !== VERSION) ||
    !Array.isArray(d.sessions)
  )
    throw new MetanetError(
      'ECONFIG',
      `${where}: expected {"version":${VERSION},"sessions":[…]} (or version 1)`,
    );
  const v1 = d.version === 1;
  return d.sessions.map((s: unknown, i): Session => {
    const bad = (what: string): never => {
      throw new MetanetError('ECONFIG', `${where}: sessions[${i}]: ${what}`);
    };
    if (typeof s !== 'object' || s === null || Array.isArray(s)) return bad('not an object');
    const x = s as Record<string, unknown>;
    if (typeof x.ip !== 'string' || !isIPv4(x.ip)) return bad('ip is not an IPv4 address');
    if (typeof x.mac !== 'string' || !MAC_RE.test(x.mac)) return bad('mac is not xx:xx:xx:xx:xx:xx');
    const since = count(x.since, 'since', bad);
    const expires = count(x.expires, 'expires', bad);
    if (v1)
      return {
        ip: x.ip,
        mac: x.mac,
        since,
        expires,
        limits: { ...defaults, sessionTimeout: Math.max(1, Math.round((expires - since) / 1000)) },
        usage: freshUsage(now),
      };
    const l = object(x.limits, 'limits', bad);
    const u = object(x.usage, 'usage', bad);
    const limits: Limits = {
      sessionTimeout: count(l.sessionTimeout, 'limits.sessionTimeout', bad),
      idleTimeout: count(l.idleTimeout, 'limits.idleTimeout', bad),
      quotaUp: count(l.quotaUp, 'limits.quotaUp', bad),
      quotaDown: count(l.quotaDown, 'limits.quotaDown', bad),
      quotaTotal: count(l.quotaTotal, 'limits.quotaTotal', bad),
      ...(l.rateUp === undefined ? {} : { rateUp: count(l.rateUp, 'limits.rateUp', bad) }),
      ...(l.rateDown === undefined ? {} : { rateDown: count(l.rateDown, 'limits.rateDown', bad) }),
    };
    if (limits.sessionTimeout < 1) bad('limits.sessionTimeout must be at least 1');
    const usage: Usage = {
      up: count(u.up, 'usage.up', bad),
      down: count(u.down, 'usage.down', bad),
      counterUp: count(u.counterUp, 'usage.counterUp', bad),
      counterDown: count(u.counterDown, 'usage.counterDown', bad),
      loaded: count(u.loaded, 'usage.loaded', bad),
      active: count(u.active, 'usage.active', bad),
    };
    return { ip: x.ip, mac: x.mac, since, expires, limits, usage };
  });
}

function count(v: unknown, what: string, bad: (what: string) => never): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    return bad(`${what} is not a whole number >= 0`);
  return v;
}

function object(v: unknown, what: string, bad: (what: string) => never): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return bad(`${what} is not an object`);
  return v as Record<string, unknown>;
}
