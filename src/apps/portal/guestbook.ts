import type { Bus } from '../../core/bus.js';
import { isMetanetError, MetanetError } from '../../core/errors.js';
import type { Message } from '../../core/message.js';
import type { PortalConfig } from './config.js';
import { defaultLimits, type LimitOverrides, limitTuples, overridesFrom, type Quota } from './lifecycle.js';
import { PortalCounts } from './metrics.js';
import { type Limits, type Session, type Sessions, sameSession } from './sessions.js';

export const FIREWALL = '/system/firewall';
/** The shaper's per-guest caps (docs/services/shaper.md), when the portal shapes. */
const SHAPER_SET = '/system/shaper/set';

/**
 * Who is logged in, and the two things that change it: a login (firewall allow, session saved
 * with its limits, `/login` posted) and a logout with its reason (firewall deny, session dropped,
 * `/logged-out` posted with what the guest used). Every path that logs a guest in or out goes
 * through here, so the firewall, the state file and the announcements never disagree.
 */
export class Guestbook {
  /** The portal's counters (metrics.ts), for its `metrics()`; the web part counts there too. */
  readonly counts: PortalCounts;

  constructor(
    private readonly bus: Bus,
    private readonly config: PortalConfig,
    readonly sessions: Sessions,
    private readonly now: () => number = Date.now,
  ) {
    this.counts = new PortalCounts(sessions);
  }

  /** Post what no reply can carry on `<name>/error`. */
  report(mailbox: string, e: unknown): void {
    this.bus.post(`${this.config.name}/error`, {
      mailbox,
      error: e instanceof Error ? e.message : String(e),
      code: isMetanetError(e) ? e.code : 'EFAIL',
    });
  }

  /** Let `ip` bound to `mac` through the firewall for `seconds` (EFAIL when it cannot). */
  async allow(ip: string, mac: string, seconds: number): Promise<void> {
    const r = await this.bus.request(`${FIREWALL}/allow`, { ip, mac, timeout: seconds });
    if (r.has('error')) throw new MetanetError('EFAIL', `firewall allow ${ip}: ${r.str('error')}`);
  }

  /**
   * The per-guest limits an `/portal/auth` answer carries (`session-timeout`, `idle-timeout`,
   * `quota-*`, `rate-*`), for `login`. A bad one is reported on `/portal/error` and left out.
   */
  overrides(answer: Message): LimitOverrides {
    const { overrides, problems } = overridesFrom(answer);
    for (const p of problems)
      this.report(`${this.config.name}/auth`, new MetanetError('EBADTUPLE', `auth answer: ${p}`));
    return overrides;
  }

  /** The config's per-MAC limits for a device (`macLimits`), as overrides. */
  macLimits(mac: string): LimitOverrides {
    const m = this.config.macLimits[mac];
    if (!m) return {};
    return definedOnly({
      sessionTimeout: m.sessionSeconds,
      idleTimeout: m.idleTimeout,
      quotaUp: m.quotaUp,
      quotaDown: m.quotaDown,
      quotaTotal: m.quotaTotal,
      rateUp: m.rateUp,
      rateDown: m.rateDown,
    });
  }

  /**
   * Change a live session's limits (RADIUS CoA, an operator): the overrides replace the session's;
   * a new session timeout moves the firewall element's end too, and new rates reach the shaper
   * (when the portal shapes). Undefined when there is no live session for `ip`.
   */
  async change(ip: string, overrides: LimitOverrides): Promise<Session | undefined> {
    const cur = this.sessions.get(ip);
    if (!cur) return undefined;
    const limits: Limits = { ...cur.limits, ...definedOnly(overrides) };
    const expires = cur.since + limits.sessionTimeout * 1000;
    if (expires <= this.now()) {
      await this.end(ip, 'session');
      return undefined;
    }
    if (limits.sessionTimeout !== cur.limits.sessionTimeout)
      await this.allow(ip, cur.mac, Math.max(1, Math.ceil((expires - this.now()) / 1000)));
    const s = this.sessions.setLimits(ip, limits);
    if ((overrides.rateUp !== undefined || overrides.rateDown !== undefined) && this.bus.has(SHAPER_SET))
      await this.bus.request(SHAPER_SET, {
        ip,
        'rate-up': limits.rateUp ?? 0,
        'rate-down': limits.rateDown ?? 0,
      });
    this.bus.log.log('info', 'portal: limits changed', { ip, mac: cur.mac, ...definedOnly(overrides) });
    return s;
  }

  /** The limits of a new session: the config's defaults, `seconds` as its length, then the overrides. */
  limits(seconds: number, overrides: LimitOverrides = {}): Limits {
    const l: Limits = { ...defaultLimits(this.config), sessionTimeout: seconds };
    return { ...l, ...definedOnly(overrides) };
  }

  /**
   * Log a guest in: the firewall first, then the session, then the announcement. `seconds` is the
   * default session length; `overrides` (from the auth answer: `overrides(answer)`) win over the
   * config's defaults. A session still on record for the address ends first when it was another
   * device's (reason `lease`: the address changed hands) or past its end (`session`); the same
   * device logging in again starts a new session on the same firewall element.
   */
  async login(ip: string, mac: string, seconds: number, overrides: LimitOverrides = {}): Promise<Session> {
    const limits = this.limits(seconds, { ...this.macLimits(mac), ...definedOnly(overrides) });
    const old = this.sessions.record(ip);
    const live = old !== undefined && old.expires > this.now();
    if (old && (!live || old.mac !== mac)) await this.end(ip, live ? 'lease' : 'session', { session: old });
    await this.allow(ip, mac, limits.sessionTimeout);
    // Same device, element kept (allow refreshes it, keeping its counters): the new session's
    // counts start from the old one's last sample, not from the element's totals.
    const carried =
      live && old.mac === mac ? { ...old.usage, up: 0, down: 0, active: this.now() } : undefined;
    const replaced = this.sessions.record(ip);
    if (replaced) {
      this.counts.endedUp += replaced.usage.up;
      this.counts.endedDown += replaced.usage.down;
    }
    const s = this.sessions.add(ip, mac, limits, carried);
    this.counts.logins++;
    this.bus.post(`${this.config.name}/login`, {
      ip,
      mac,
      expires: Math.floor(s.expires / 1000),
      ...limitTuples(limits),
    });
    return s;
  }

  /**
   * End a session with its reason (`Reason` in lifecycle.ts lists the portal's own; an operator's
   * `/portal/logout` may give any); false when there was none (or, with `session`, when the one on
   * record is not that one any more). A session already past its end is announced with reason
   * `session` whatever the caller said, and counts as none (false).
   */
  async end(ip: string, reason: string, opts: { session?: Session; quota?: Quota } = {}): Promise<boolean> {
    const s = this.sessions.record(ip);
    if (!s || (opts.session && !sameSession(s, opts.session))) return false;
    const over = s.expires <= this.now();
    const why = over ? 'session' : reason;
    this.sessions.remove(ip);
    this.counts.logout(why);
    this.counts.endedUp += s.usage.up;
    this.counts.endedDown += s.usage.down;
    const r = await this.bus.request(`${FIREWALL}/deny`, { ip: s.ip, mac: s.mac });
    if (r.has('error')) this.report(`${FIREWALL}/deny`, new Error(r.str('error')));
    const quota = why === 'quota' ? opts.quota : undefined;
    const used = { 'bytes-up': s.usage.up, 'bytes-down': s.usage.down };
    this.bus.log.log('info', 'portal: logged out', {
      ip,
      mac: s.mac,
      reason: why,
      ...used,
      ...(quota ? { quota } : {}),
    });
    this.bus.post(`${this.config.name}/logged-out`, {
      ip,
      mac: s.mac,
      reason: why,
      since: Math.floor(s.since / 1000),
      ...used,
      ...(quota ? { quota } : {}),
    });
    return !over || reason === 'session';
  }
}

function definedOnly(o: LimitOverrides): LimitOverrides {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as LimitOverrides;
}
