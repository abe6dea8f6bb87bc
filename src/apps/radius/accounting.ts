import { join } from 'node:path';
import type { Bus } from '../../core/bus.js';
import type { Logger } from '../../core/log.js';
import type { Message } from '../../core/message.js';
import { follow } from '../follow.js';
import { A, AcctStatus, Code, TerminateCause } from './attributes.js';
import { type Grants, newSessionId } from './auth.js';
import type { RadiusClient } from './client.js';
import { formatMac, type RadiusConfig } from './config.js';
import { type Attr, attr } from './packet.js';
import { AcctQueue, fromQueued, toQueued } from './queue.js';
import { type AcctSession, SessionStore } from './store.js';

const GIGA = 2 ** 32;
/** Without a local `acctInterval` nor Acct-Interim-Interval in the answer. */
const DEFAULT_INTERVAL = 300;
/** Sessions are compared with the portal's list at least this often (ms). */
const RECONCILE_MS = 60_000;

/**
 * The portal's logout reasons → Acct-Terminate-Cause (RFC 2866 §5.10). `quota` has no cause of
 * its own: Session-Timeout, as CoovaChilli reports a reached volume limit. Anything else (a reason
 * an operator's `/portal/logout` gave, a session found gone) is NAS-Request.
 */
export const TERMINATE_CAUSES: Readonly<Record<string, number>> = {
  idle: TerminateCause.IdleTimeout,
  session: TerminateCause.SessionTimeout,
  quota: TerminateCause.SessionTimeout,
  operator: TerminateCause.AdminReset,
  guest: TerminateCause.UserRequest,
  lease: TerminateCause.LostCarrier,
  blocked: TerminateCause.AdminReset,
};

export const terminateCause = (reason: string): number =>
  TERMINATE_CAUSES[reason] ?? TerminateCause.NasRequest;

/** One live guest as the portal's `/portal/clients` lists it. */
export interface PortalClient {
  readonly ip: string;
  readonly mac: string;
  /** Login time, epoch seconds. */
  readonly since: number;
  readonly bytesUp: number;
  readonly bytesDown: number;
  readonly packetsUp: number | undefined;
  readonly packetsDown: number | undefined;
}

const intTag = (m: Message, tag: string): number | undefined => {
  const t = m.get(tag);
  return t?.type === 'int' ? Number(t.value) : undefined;
};
const strTag = (m: Message, tag: string): string | undefined => {
  const t = m.get(tag);
  return t?.type === 'str' ? t.value : undefined;
};

/** The portal's live guests (`<target>:<portal>/clients`); malformed entries are skipped. */
export async function readClients(bus: Bus, config: RadiusConfig, timeout = 3000): Promise<PortalClient[]> {
  const r = await bus.request(`${config.target}:${config.portal}/clients`, {}, { timeout });
  const out: PortalClient[] = [];
  for (const t of r.all('client')) {
    if (t.type !== 'list') continue;
    const c = t.value;
    const ip = strTag(c, 'ip');
    const mac = strTag(c, 'mac');
    if (!ip || !mac) continue;
    out.push({
      ip,
      mac: mac.toLowerCase(),
      since: intTag(c, 'since') ?? 0,
      bytesUp: intTag(c, 'bytes-up') ?? intTag(c, 'bytes') ?? 0,
      bytesDown: intTag(c, 'bytes-down') ?? 0,
      packetsUp: intTag(c, 'packets-up') ?? intTag(c, 'packets'),
      packetsDown: intTag(c, 'packets-down'),
    });
  }
  return out;
}

/**
 * RADIUS accounting (RFC 2866) from the portal's lifecycle: Start on `/portal/login`,
 * Interim-Update every session's interval with the counters of `/portal/clients`, Stop on
 * `/portal/logged-out` with Acct-Terminate-Cause from its reason. Sessions (their Acct-Session-Id
 * above all) are kept in `<stateDir>/radius.sessions.json`, so after a restart of this app or of
 * the portal a session goes on with the same id; every request passes through the disk queue
 * (queue.ts). The listeners only observe: they never stop the portal's chains.
 */
export class Accounting {
  readonly store: SessionStore;
  readonly queue: AcctQueue;
  private hooks: { remove(): void }[] = [];
  private tick: NodeJS.Timeout | undefined;
  private busy = false;
  private reconciledAt = 0;
  readonly stats = { starts: 0, interims: 0, stops: 0 };

  constructor(
    private readonly bus: Bus,
    private readonly config: RadiusConfig,
    private readonly client: RadiusClient,
    private readonly grants: Grants,
    private readonly log: Logger,
  ) {
    const dir = config.stateDir;
    this.store = new SessionStore(dir ? join(dir, 'radius.sessions.json') : undefined);
    this.queue = new AcctQueue(
      dir ? join(dir, 'radius.acct-queue.json') : undefined,
      config.queueMax,
      config.queueRetrySeconds * 1000,
      async (q) => {
        const attrs = [...fromQueued(q), attr.int(A.AcctDelayTime, (Date.now() - q.created) / 1000)];
        await this.client.send('acct', { code: Code.AccountingRequest, attrs });
      },
      log,
    );
  }

  /** Attach to the portal's announcements (waiting for it if needed) and start the timers. */
  start(): Promise<void> {
    const at = `${this.config.target}:${this.config.portal}`;
    const opts = { identity: { app: 'radius', follows: 'accounting' } };
    const login = follow(this.bus, `${at}/login`, (m) => this.guard('login', () => this.onLogin(m)), opts);
    const out = follow(
      this.bus,
      `${at}/logged-out`,
      (m) => this.guard('logged-out', () => this.onLoggedOut(m)),
      opts,
    );
    this.hooks = [login, out];
    this.tick = setInterval(() => void this.onTick(), 1000);
    void this.queue.kick(); // what a previous run left
    return Promise.all([login.attached, out.attached]).then(() => this.onTick());
  }

  private guard(what: string, fn: () => void): undefined {
    try {
      fn();
    } catch (e) {
      this.log.log('error', `radius: accounting on ${what} failed`, { error: (e as Error).message });
    }
    return undefined;
  }

  // ------------------------------------------------------------------------ the portal's events

  private onLogin(m: Message): void {
    const ip = m.str('ip');
    const mac = m.str('mac').toLowerCase();
    const now = Date.now();
    const expires = intTag(m, 'expires');
    const length = intTag(m, 'session-timeout');
    const since = expires !== undefined && length !== undefined ? expires - length : Math.floor(now / 1000);
    const old = this.store.get(ip);
    if (old) this.stop(old, TerminateCause.NasRequest, now); // a new login replaces it
    const g = this.grants.take(ip, mac);
    const interval =
      this.config.acctInterval ??
      (g?.interval ? Math.max(g.interval, this.config.minAcctInterval) : DEFAULT_INTERVAL);
    const s: AcctSession = {
      ip,
      mac,
      sessionId: g?.sessionId ?? newSessionId(),
      username: g?.username ?? formatMac(mac, this.config.macFormat),
      since,
      interval,
      classes: g?.classes ?? [],
      authentic: g?.authentic ?? 2,
      lastUpdate: now,
      bytesUp: 0,
      bytesDown: 0,
      packetsUp: undefined,
      packetsDown: undefined,
    };
    this.begin(s, now);
  }

  private onLoggedOut(m: Message): void {
    const ip = m.str('ip');
    const s = this.store.get(ip);
    if (!s || s.mac !== m.str('mac').toLowerCase()) return;
    const up = intTag(m, 'bytes-up');
    const down = intTag(m, 'bytes-down');
    if (up !== undefined) s.bytesUp = up;
    if (down !== undefined) s.bytesDown = down;
    this.stop(s, terminateCause(m.str('reason', '')), Date.now());
  }

  // ------------------------------------------------------------------------------ the requests

  private begin(s: AcctSession, now: number): void {
    this.store.set(s);
    this.stats.starts++;
    this.queue.submit({
      kind: 'start',
      sessionId: s.sessionId,
      created: now,
      attrs: toQueued(this.common(s, AcctStatus.Start, now)),
    });
    this.log.log('info', 'radius: accounting start', {
      ip: s.ip,
      session: s.sessionId,
      interval: s.interval,
    });
  }

  private stop(s: AcctSession, cause: number, now: number): void {
    this.store.delete(s.ip);
    this.stats.stops++;
    this.queue.submit({
      kind: 'stop',
      sessionId: s.sessionId,
      created: now,
      attrs: toQueued([
        ...this.common(s, AcctStatus.Stop, now),
        ...this.usage(s, now),
        attr.int(A.AcctTerminateCause, cause),
      ]),
    });
    this.log.log('info', 'radius: accounting stop', {
      ip: s.ip,
      session: s.sessionId,
      cause,
      up: s.bytesUp,
      down: s.bytesDown,
    });
  }

  private interim(s: AcctSession, now: number): void {
    s.lastUpdate = now;
    this.stats.interims++;
    this.queue.submit({
      kind: 'interim',
      sessionId: s.sessionId,
      created: now,
      attrs: toQueued([...this.common(s, AcctStatus.InterimUpdate, now), ...this.usage(s, now)]),
    });
  }

  /** What every accounting request of a session carries. */
  private common(s: AcctSession, status: number, now: number): Attr[] {
    const c = this.config;
    return [
      attr.int(A.AcctStatusType, status),
      attr.str(A.UserName, s.username),
      attr.str(A.AcctSessionId, s.sessionId),
      attr.ip(A.NasIpAddress, c.nasIp),
      attr.str(A.NasIdentifier, c.nasIdentifier),
      attr.int(A.NasPortType, c.nasPortType),
      attr.ip(A.FramedIpAddress, s.ip),
      attr.str(A.CallingStationId, formatMac(s.mac, c.macFormat)),
      attr.str(A.CalledStationId, c.calledStationId ?? c.nasIdentifier),
      attr.int(A.AcctAuthentic, s.authentic),
      ...s.classes.map((h) => attr.bytes(A.Class, Buffer.from(h, 'hex'))),
      attr.int(A.EventTimestamp, now / 1000),
    ];
  }

  /** Session time and counters (input = what the guest sent, unless swapped). */
  private usage(s: AcctSession, now: number): Attr[] {
    const swap = this.config.swapInputOutput;
    const [inO, outO] = swap ? [s.bytesDown, s.bytesUp] : [s.bytesUp, s.bytesDown];
    const [inP, outP] = swap ? [s.packetsDown, s.packetsUp] : [s.packetsUp, s.packetsDown];
    return [
      attr.int(A.AcctSessionTime, Math.max(0, Math.floor(now / 1000) - s.since)),
      attr.int(A.AcctInputOctets, inO % GIGA),
      attr.int(A.AcctInputGigawords, Math.floor(inO / GIGA)),
      attr.int(A.AcctOutputOctets, outO % GIGA),
      attr.int(A.AcctOutputGigawords, Math.floor(outO / GIGA)),
      ...(inP === undefined ? [] : [attr.int(A.AcctInputPackets, inP)]),
      ...(outP === undefined ? [] : [attr.int(A.AcctOutputPackets, outP)]),
    ];
  }

  // ------------------------------------------------------------------------------- the timer

  /** Every second: Interim-Updates that are due, and a comparison with the portal's list. */
  private async onTick(): Promise<void> {
    if (this.busy) return;
    const now = Date.now();
    const live = this.store.all().filter((s) => s.interval > 0);
    const late = (s: AcctSession, aheadMs: number) => now - s.lastUpdate >= s.interval * 1000 - aheadMs;
    if (!live.some((s) => late(s, 250)) && now - this.reconciledAt < RECONCILE_MS) return;
    // One read of the portal's counters serves every session due now or within a tenth of its
    // interval (30 s at most): the updates gather into few reads instead of one every second.
    const due = live.filter((s) => late(s, Math.min(30_000, s.interval * 100)));
    this.busy = true;
    try {
      let clients: PortalClient[];
      try {
        clients = await readClients(this.bus, this.config);
      } catch (e) {
        this.log.log('debug', 'radius: cannot read the portal clients', { error: (e as Error).message });
        return;
      }
      const at = Date.now();
      this.reconcile(clients, now, at);
      for (const s of due) {
        const live = this.store.get(s.ip);
        const c = clients.find((x) => x.ip === s.ip && x.mac === s.mac);
        if (live !== s || !c) continue;
        s.bytesUp = c.bytesUp;
        s.bytesDown = c.bytesDown;
        s.packetsUp = c.packetsUp;
        s.packetsDown = c.packetsDown;
        this.interim(s, at);
      }
      if (due.length > 0) this.store.save();
    } finally {
      this.busy = false;
    }
  }

  /**
   * Sessions on record that the portal no longer lists (ended while this app was away) get their
   * Stop (NAS-Request); guests the portal lists that are not on record (logged in meanwhile) get a
   * Start. A session that changed since `asked` is left to its own messages.
   */
  reconcile(clients: readonly PortalClient[], asked: number, now = Date.now()): void {
    this.reconciledAt = now;
    for (const s of this.store.all()) {
      if (s.lastUpdate >= asked) continue;
      const c = clients.find((x) => x.ip === s.ip && x.mac === s.mac);
      if (c && Math.abs(c.since - s.since) <= 2) continue;
      this.log.log('info', 'radius: session gone from the portal', { ip: s.ip, session: s.sessionId });
      this.stop(s, TerminateCause.NasRequest, now);
    }
    for (const c of clients) {
      if (this.store.get(c.ip) || c.since > asked / 1000 - 5) continue;
      this.begin(
        {
          ip: c.ip,
          mac: c.mac,
          sessionId: newSessionId(),
          username: formatMac(c.mac, this.config.macFormat),
          since: c.since,
          interval: this.config.acctInterval ?? DEFAULT_INTERVAL,
          classes: [],
          authentic: 2,
          lastUpdate: now,
          bytesUp: c.bytesUp,
          bytesDown: c.bytesDown,
          packetsUp: c.packetsUp,
          packetsDown: c.packetsDown,
        },
        now,
      );
    }
  }

  async close(): Promise<void> {
    if (this.tick) clearInterval(this.tick);
    for (const h of this.hooks) h.remove();
    await this.queue.close();
    this.store.save();
  }
}
