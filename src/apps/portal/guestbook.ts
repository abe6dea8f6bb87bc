import type { Bus } from '../../core/bus.js';
import { isMetanetError, MetanetError } from '../../core/errors.js';
import type { PortalConfig } from './config.js';
import type { Session, Sessions } from './sessions.js';

export const FIREWALL = '/system/firewall';

/**
 * Who is logged in, and the two things that change it: a login (firewall allow, session saved,
 * `/login` posted) and a logout with its reason (firewall deny, session dropped, `/logged-out`
 * posted). Every path that logs a guest in or out goes through here, so the firewall, the state
 * file and the announcements never disagree.
 */
export class Guestbook {
  constructor(
    private readonly bus: Bus,
    private readonly config: PortalConfig,
    readonly sessions: Sessions,
  ) {}

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

  /** Log a guest in for `seconds`: the firewall first, then the session, then the announcement. */
  async login(ip: string, mac: string, seconds: number): Promise<Session> {
    await this.allow(ip, mac, seconds);
    const s = this.sessions.add(ip, mac, seconds);
    this.bus.post(`${this.config.name}/login`, { ip, mac, expires: Math.floor(s.expires / 1000) });
    return s;
  }

  /** End a session with its reason; false when there was none. */
  async end(ip: string, reason: string): Promise<boolean> {
    const s = this.sessions.get(ip);
    if (!s) return false;
    this.sessions.remove(ip);
    const r = await this.bus.request(`${FIREWALL}/deny`, { ip: s.ip, mac: s.mac });
    if (r.has('error')) this.report(`${FIREWALL}/deny`, new Error(r.str('error')));
    this.bus.log.log('info', 'portal: logged out', { ip, mac: s.mac, reason });
    this.bus.post(`${this.config.name}/logged-out`, {
      ip,
      mac: s.mac,
      reason,
      since: Math.floor(s.since / 1000),
    });
    return true;
  }
}
