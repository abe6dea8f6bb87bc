import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/apps/portal/config.js';
import { Guestbook } from '../../../src/apps/portal/guestbook.js';
import {
  advance,
  type Counters,
  counterKey,
  defaultLimits,
  Lifecycle,
  overridesFrom,
  remaining,
  type Sample,
  verdict,
} from '../../../src/apps/portal/lifecycle.js';
import {
  freshUsage,
  type Limits,
  loadSessions,
  type Session,
  Sessions,
  type Usage,
} from '../../../src/apps/portal/sessions.js';
import { Bus } from '../../../src/core/bus.js';
import { STOP } from '../../../src/core/listener.js';
import { silentLogger } from '../../../src/core/log.js';
import { Message } from '../../../src/core/message.js';

/**
 * The lifecycle's algorithm with an injected clock and stand-in counters: no nft, no sleeps. The
 * guestbook is the real one on a real bus; the firewall is two listeners that record allow/deny.
 */
const dir = mkdtempSync(join(tmpdir(), 'portal-lifecycle-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const T0 = 1_800_000_000_000;
const MAC_A = '02:00:00:00:00:0a';
const MAC_B = '02:00:00:00:00:0b';
const IP_A = '10.0.0.10';
const IP_B = '10.0.0.11';

const limits = (o: Partial<Limits> = {}): Limits => ({
  sessionTimeout: 3600,
  idleTimeout: 600,
  quotaUp: 0,
  quotaDown: 0,
  quotaTotal: 0,
  ...o,
});
const sample = (up: number, down: number): Sample => ({ packetsUp: 0, up, packetsDown: 0, down });
const session = (l: Partial<Limits> = {}, u: Partial<Usage> = {}): Session => ({
  ip: IP_A,
  mac: MAC_A,
  since: T0,
  expires: T0 + (l.sessionTimeout ?? 3600) * 1000,
  limits: limits(l),
  usage: { ...freshUsage(T0), ...u },
});

describe('advance: usage from counter samples', () => {
  it('adds the deltas each way and marks the sample time active when a byte moved', () => {
    const u0 = freshUsage(T0);
    const u1 = advance(u0, sample(100, 5000), 7, T0 + 30_000);
    expect(u1).toEqual({
      up: 100,
      down: 5000,
      counterUp: 100,
      counterDown: 5000,
      loaded: 7,
      active: T0 + 30_000,
    });
    const u2 = advance(u1, sample(100, 5500), 7, T0 + 60_000);
    expect(u2).toMatchObject({ up: 100, down: 5500, active: T0 + 60_000 }); // download alone is traffic
    expect(advance(u2, sample(100, 5500), 7, T0 + 90_000)).toBe(u2); // nothing new: the same object
    expect(advance(u2, undefined, 7, T0 + 90_000)).toBe(u2); // no element: nothing known
  });

  it('counts the whole value again after a table rebuild or a counter that went down', () => {
    const u = advance(freshUsage(T0), sample(1000, 9000), 7, T0 + 30_000);
    // A new table load (portal restart): counters count from 0 again, even if they grew past the old value.
    expect(advance(u, sample(2000, 9500), 8, T0 + 60_000)).toMatchObject({
      up: 3000,
      down: 18_500,
      loaded: 8,
    });
    // Same load, counter lower (element deleted and re-added): the value is all new.
    expect(advance(u, sample(10, 20), 7, T0 + 60_000)).toMatchObject({ up: 1010, down: 9020 });
  });
});

describe('verdict', () => {
  it('session end first, then the quotas (up, down, total), then idleness', () => {
    expect(verdict(session(), T0 + 3_600_000)).toEqual({ reason: 'session' });
    expect(verdict(session({ quotaUp: 100 }, { up: 100 }), T0)).toEqual({ reason: 'quota', quota: 'up' });
    expect(verdict(session({ quotaDown: 100 }, { down: 99 }), T0)).toBeUndefined();
    expect(verdict(session({ quotaDown: 100 }, { down: 150 }), T0)).toEqual({
      reason: 'quota',
      quota: 'down',
    });
    expect(verdict(session({ quotaTotal: 100 }, { up: 50, down: 50 }), T0)).toEqual({
      reason: 'quota',
      quota: 'total',
    });
    expect(verdict(session({ quotaUp: 10 }, { up: 10, active: T0 - 1e9 }), T0)).toMatchObject({
      reason: 'quota',
    });
    expect(verdict(session({ idleTimeout: 600 }), T0 + 599_999)).toBeUndefined();
    expect(verdict(session({ idleTimeout: 600 }), T0 + 600_000)).toEqual({ reason: 'idle' });
    expect(verdict(session({ idleTimeout: 600 }), T0 + 597_000, 3000)).toEqual({ reason: 'idle' }); // jitter
    expect(verdict(session({ idleTimeout: 0 }), T0 + 3_000_000)).toBeUndefined(); // 0 = never idle
  });
});

describe('remaining (for the status page and the RFC 8908 API)', () => {
  it('whole seconds to the end and the bytes left under the tightest quota, never negative', () => {
    expect(remaining(session(), T0 + 1500)).toEqual({ seconds: 3598, bytes: undefined });
    expect(
      remaining(session({ quotaUp: 1000, quotaDown: 5000, quotaTotal: 5500 }, { up: 100, down: 4000 }), T0),
    ).toEqual({ seconds: 3600, bytes: 900 });
    expect(remaining(session({ quotaTotal: 5000 }, { up: 100, down: 4000 }), T0).bytes).toBe(900);
    expect(remaining(session({ quotaDown: 10 }, { down: 50 }), T0 + 9e9)).toEqual({ seconds: 0, bytes: 0 });
  });
});

describe('per-guest limits from the auth answer', () => {
  it('takes the ints it knows, names the bad ones and leaves them out', () => {
    const good = overridesFrom(
      Message.from({
        ok: true,
        'session-timeout': 60,
        'idle-timeout': 0,
        'quota-up': 1000,
        'quota-down': 2000,
        'quota-total': 2500,
        'rate-up': 1_000_000,
        'rate-down': 5_000_000,
      }),
    );
    expect(good).toEqual({
      overrides: {
        sessionTimeout: 60,
        idleTimeout: 0,
        quotaUp: 1000,
        quotaDown: 2000,
        quotaTotal: 2500,
        rateUp: 1_000_000,
        rateDown: 5_000_000,
      },
      problems: [],
    });
    const bad = overridesFrom(
      Message.from({ ok: true, 'session-timeout': 0, 'quota-up': '5', 'idle-timeout': 30 }),
    );
    expect(bad.overrides).toEqual({ idleTimeout: 30 });
    expect(bad.problems).toEqual([
      '"session-timeout" must be an int 1..4233600, got int 0',
      '"quota-up" must be an int 0..9007199254740991, got str 5',
    ]);
  });
});

/** A real guestbook on a real bus; the firewall is a stand-in that records what it was asked. */
function harness(cfg: Record<string, unknown> = {}, file?: string) {
  let now = T0;
  const clock = (): number => now;
  const bus = new Bus({ name: 'lifecycle-unit', logger: silentLogger });
  const config = parseConfig({ address: '10.0.0.1', lan: 'x', ...cfg });
  const sessions = new Sessions(file, clock, defaultLimits(config));
  const book = new Guestbook(bus, config, sessions, clock);
  const fw: string[] = [];
  bus.append('/system/firewall/allow', async (m, ctx) => {
    fw.push(`allow ${m.str('ip')} ${m.str('mac')} ${m.int('timeout')}`);
    await ctx.reply({ ip: m.str('ip') });
    return STOP;
  });
  bus.append('/system/firewall/deny', async (m, ctx) => {
    fw.push(`deny ${m.str('ip')} ${m.str('mac')}`);
    await ctx.reply({ removed: true });
    return STOP;
  });
  const out: Message[] = [];
  const logins: Message[] = [];
  const errors: Message[] = [];
  bus.append('/portal/logged-out', (m) => {
    out.push(m);
  });
  bus.append('/portal/login', (m) => {
    logins.push(m);
  });
  bus.append('/portal/error', (m) => {
    errors.push(m);
  });
  /** What the stand-in counters answer: by ip+mac, counting from table load `loaded`. */
  const counts = new Map<string, Sample>();
  let reads = 0;
  let failRead = false;
  let loaded = 1;
  const counters = async (): Promise<Counters> => {
    reads++;
    if (failRead) throw new Error('nft gave no answer');
    return { loaded, clients: new Map(counts) };
  };
  const life = new Lifecycle(book, { checkSeconds: config.idleCheckSeconds, counters, now: clock });
  const set = (ip: string, mac: string, up: number, down: number): void => {
    counts.set(counterKey(ip, mac), sample(up, down));
  };
  return {
    bus,
    book,
    sessions,
    life,
    fw,
    out,
    logins,
    errors,
    set,
    reads: () => reads,
    failReads: (v: boolean) => {
      failRead = v;
    },
    /** The firewall table rebuilt (a restart): every counter from 0 again. */
    rebuild: () => {
      loaded++;
      counts.clear();
    },
    /** Move the clock on by `s` seconds. */
    wait: (s: number) => {
      now += s * 1000;
    },
    /** Move the clock on by `s` seconds and run one check. */
    tick: async (s: number) => {
      now += s * 1000;
      const r = await life.check();
      await bus.settled(); // the announcements posted meanwhile
      return r;
    },
    /** Let what was posted be delivered. */
    settle: () => bus.settled(),
    at: () => now,
  };
}

describe('Lifecycle checks (injected clock, stand-in counters)', () => {
  let h: ReturnType<typeof harness>;
  beforeEach(() => {
    h = harness({ idleTimeout: 60, idleCheckSeconds: 10 });
  });
  afterEach(async () => {
    await h.bus.close(10);
  });

  it('a guest whose counters keep moving stays; one that stops is logged out idle within idleTimeout + one check', async () => {
    await h.book.login(IP_A, MAC_A, 3600);
    await h.book.login(IP_B, MAC_B, 3600);
    let a = 0;
    let stoppedAt = 0;
    for (let i = 1; i <= 20; i++) {
      a += 50_000; // A downloads all along
      h.set(IP_A, MAC_A, 400, a);
      if (i <= 3) h.set(IP_B, MAC_B, 100 * i, 1000 * i); // B for the first 30 s, then nothing
      if (i === 3) stoppedAt = h.at() + 10_000;
      const r = await h.tick(10);
      if (r.ended.length > 0) {
        expect(r.ended).toEqual([{ ip: IP_B, reason: 'idle' }]);
        // B's last bytes were seen at the check at 30 s; idle from then on for 60 s.
        expect(h.at() - stoppedAt).toBe(60_000);
        break;
      }
    }
    expect(h.out.map((m) => [m.str('ip'), m.str('reason')])).toEqual([[IP_B, 'idle']]);
    expect(h.out[0]!.int('bytes-up')).toBe(300);
    expect(h.out[0]!.int('bytes-down')).toBe(3000);
    expect(h.out[0]!.has('quota')).toBe(false);
    expect(h.fw).toContain(`deny ${IP_B} ${MAC_B}`);
    expect(h.sessions.get(IP_A)).toBeDefined();
    for (let i = 0; i < 10; i++) {
      a += 1;
      h.set(IP_A, MAC_A, 400, a); // a trickle is traffic too
      expect((await h.tick(10)).ended).toEqual([]);
    }
    expect(h.sessions.get(IP_A)?.usage.down).toBe(a);
  });

  it('each quota logs out with reason quota and says which; totals survive a table rebuild', async () => {
    await h.book.login(IP_A, MAC_A, 3600, { quotaUp: 1000 });
    await h.book.login(IP_B, MAC_B, 3600, { quotaDown: 10_000 });
    await h.book.login('10.0.0.12', '02:00:00:00:00:0c', 3600, { quotaTotal: 5000 });
    h.set(IP_A, MAC_A, 999, 0);
    h.set(IP_B, MAC_B, 0, 9_999);
    h.set('10.0.0.12', '02:00:00:00:00:0c', 2000, 2999);
    expect((await h.tick(10)).ended).toEqual([]);
    h.rebuild(); // the counters start again from 0; the session totals go on
    h.set(IP_A, MAC_A, 1, 0);
    h.set(IP_B, MAC_B, 0, 1);
    h.set('10.0.0.12', '02:00:00:00:00:0c', 0, 1);
    const r = await h.tick(10);
    expect(r.ended).toEqual([
      { ip: IP_A, reason: 'quota', quota: 'up' },
      { ip: IP_B, reason: 'quota', quota: 'down' },
      { ip: '10.0.0.12', reason: 'quota', quota: 'total' },
    ]);
    expect(h.out.map((m) => `${m.str('reason')}:${m.str('quota')}`)).toEqual([
      'quota:up',
      'quota:down',
      'quota:total',
    ]);
  });

  it('a session past its end is announced with reason session, without reading counters', async () => {
    await h.book.login(IP_A, MAC_A, 25);
    h.set(IP_A, MAC_A, 1, 1);
    await h.tick(10);
    const reads = h.reads();
    await h.tick(20); // 30 s: over
    expect(h.reads()).toBe(reads);
    expect(h.out.map((m) => [m.str('reason'), m.int('bytes-down')])).toEqual([['session', 1]]);
    expect(h.sessions.all()).toEqual([]);
  });

  it('a failed counter read is reported and ends no one for idleness', async () => {
    await h.book.login(IP_A, MAC_A, 3600);
    h.failReads(true);
    const r = await h.tick(120);
    expect(r.ended).toEqual([]);
    expect(h.errors[0]?.str('error')).toMatch(/nft gave no answer/);
    h.failReads(false);
    expect((await h.tick(10)).ended).toEqual([{ ip: IP_A, reason: 'idle' }]);
  });

  it('a check runs alone: asked again meanwhile, it gives the running one', async () => {
    await h.book.login(IP_A, MAC_A, 3600);
    const [x, y] = [h.life.check(), h.life.check()];
    expect(x).toBe(y);
    await x;
  });

  it('does not end a session that was replaced while the check ran', async () => {
    await h.book.login(IP_A, MAC_A, 3600);
    const old = h.sessions.get(IP_A)!;
    await h.tick(1); // another millisecond, another session
    await h.book.login(IP_A, MAC_A, 3600);
    expect(await h.book.end(IP_A, 'idle', { session: old })).toBe(false);
    expect(h.sessions.get(IP_A)).toBeDefined();
  });
});

describe('Guestbook.login with limits', () => {
  let h: ReturnType<typeof harness>;
  afterEach(async () => {
    await h.bus.close(10);
  });

  it('overrides from the auth answer win over the config; /portal/login carries the limits', async () => {
    h = harness({ idleTimeout: 300, quotaTotal: 1e9, sessionSeconds: 3600 });
    const answer = Message.from({ ok: true, 'session-timeout': 120, 'quota-down': 5000, 'rate-down': 2e6 });
    const s = await h.book.login(IP_A, MAC_A, 3600, h.book.overrides(answer));
    expect(s.limits).toEqual({
      sessionTimeout: 120,
      idleTimeout: 300,
      quotaUp: 0,
      quotaDown: 5000,
      quotaTotal: 1e9,
      rateDown: 2e6,
    });
    expect(s.expires - s.since).toBe(120_000);
    expect(h.fw).toEqual([`allow ${IP_A} ${MAC_A} 120`]);
    await h.settle();
    const m = h.logins[0]!;
    expect(
      ['session-timeout', 'idle-timeout', 'quota-up', 'quota-down', 'quota-total', 'rate-down'].map((t) =>
        m.int(t),
      ),
    ).toEqual([120, 300, 0, 5000, 1e9, 2e6]);
    expect(m.has('rate-up')).toBe(false);
    h.book.overrides(Message.from({ ok: true, 'idle-timeout': -1 }));
    await h.settle();
    expect(h.errors[0]?.str('code')).toBe('EBADTUPLE');
    expect(h.errors[0]?.str('error')).toMatch(/"idle-timeout" must be an int/);
  });

  it('per-MAC limits from the config apply to that device only; an auth answer still wins', async () => {
    h = harness({
      idleTimeout: 300,
      sessionSeconds: 3600,
      macLimits: {
        [MAC_A.toUpperCase().replaceAll(':', '-')]: { sessionSeconds: 600, quotaTotal: 7000, rateDown: 1e6 },
      },
    });
    const a = await h.book.login(IP_A, MAC_A, 3600);
    expect(a.limits).toMatchObject({
      sessionTimeout: 600,
      idleTimeout: 300,
      quotaTotal: 7000,
      rateDown: 1e6,
    });
    expect(a.expires - a.since).toBe(600_000);
    const b = await h.book.login(IP_B, MAC_B, 3600);
    expect(b.limits).toMatchObject({ sessionTimeout: 3600, idleTimeout: 300, quotaTotal: 0 });
    const c = await h.book.login(
      IP_A,
      MAC_A,
      3600,
      h.book.overrides(Message.from({ ok: true, 'quota-total': 9 })),
    );
    expect(c.limits).toMatchObject({ sessionTimeout: 600, quotaTotal: 9 });
    expect(() => parseConfig({ address: '10.0.0.1', lan: 'x', macLimits: { 'not-a-mac': {} } })).toThrow(
      /macLimits\.not-a-mac/,
    );
  });

  it('the same device logging in again keeps counting from the last sample; another device ends the old session (lease)', async () => {
    h = harness({ idleTimeout: 60, idleCheckSeconds: 10 });
    await h.book.login(IP_A, MAC_A, 3600);
    h.set(IP_A, MAC_A, 500, 70_000);
    await h.tick(10);
    await h.book.login(IP_A, MAC_A, 3600); // element kept, counters at 500/70000
    h.set(IP_A, MAC_A, 600, 80_000);
    await h.tick(10);
    expect(h.sessions.get(IP_A)?.usage).toMatchObject({ up: 100, down: 10_000 });
    expect(h.out).toEqual([]);
    await h.book.login(IP_A, MAC_B, 3600);
    await h.settle();
    expect(h.out.map((m) => [m.str('mac'), m.str('reason')])).toEqual([[MAC_A, 'lease']]);
    expect(h.sessions.get(IP_A)?.mac).toBe(MAC_B);
  });

  it('an operator logout of a session already past its end is announced as session, and says removed false', async () => {
    h = harness();
    await h.book.login(IP_A, MAC_A, 5);
    h.wait(6); // past its end, no check ran yet
    expect(await h.book.end(IP_A, 'operator')).toBe(false);
    await h.settle();
    expect(h.out.map((m) => m.str('reason'))).toEqual(['session']);
    expect(await h.book.end(IP_A, 'operator')).toBe(false);
    await h.settle();
    expect(h.out).toHaveLength(1);
  });
});

describe('the state file, version 2 (and version 1 read)', () => {
  it('keeps limits and the last sample across a restart', () => {
    const file = join(dir, 'v2.json');
    const a = new Sessions(file, () => T0);
    a.add(IP_A, MAC_A, limits({ quotaDown: 5000, rateUp: 1e6 }));
    const s = a.get(IP_A)!;
    a.update(s, { up: 10, down: 20, counterUp: 10, counterDown: 20, loaded: 3, active: T0 + 5 });
    a.save();
    const doc = JSON.parse(readFileSync(file, 'utf8'));
    expect(doc.version).toBe(2);
    const b = new Sessions(file, () => T0 + 1000);
    expect(b.get(IP_A)).toEqual({
      ip: IP_A,
      mac: MAC_A,
      since: T0,
      expires: T0 + 3_600_000,
      limits: limits({ quotaDown: 5000, rateUp: 1e6 }),
      usage: { up: 10, down: 20, counterUp: 10, counterDown: 20, loaded: 3, active: T0 + 5 },
    });
  });

  it('reads a version-1 file with the config defaults, idle counted from the restart', () => {
    const file = join(dir, 'v1.json');
    writeFileSync(
      file,
      JSON.stringify({ version: 1, sessions: [{ ip: IP_A, mac: MAC_A, since: T0, expires: T0 + 600_000 }] }),
    );
    const [s] = loadSessions(file, { idleTimeout: 300, quotaUp: 0, quotaDown: 7, quotaTotal: 0 }, T0 + 1000);
    expect(s).toEqual({
      ip: IP_A,
      mac: MAC_A,
      since: T0,
      expires: T0 + 600_000,
      limits: { sessionTimeout: 600, idleTimeout: 300, quotaUp: 0, quotaDown: 7, quotaTotal: 0 },
      usage: freshUsage(T0 + 1000),
    });
  });

  it('names a bad version-2 entry', () => {
    const file = join(dir, 'bad2.json');
    writeFileSync(
      file,
      JSON.stringify({
        version: 2,
        sessions: [{ ip: IP_A, mac: MAC_A, since: T0, expires: T0 + 1, limits: limits(), usage: { up: -1 } }],
      }),
    );
    expect(() => loadSessions(file)).toThrow(/sessions\[0\]: usage.up is not a whole number/);
    writeFileSync(file, JSON.stringify({ version: 3, sessions: [] }));
    expect(() => loadSessions(file)).toThrow(/expected \{"version":2/);
  });
});
