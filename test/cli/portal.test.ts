import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytes, device, duration, plain } from '../../src/cli/portal.js';
import { Bus } from '../../src/core/bus.js';
import { STOP } from '../../src/core/listener.js';
import { silentLogger } from '../../src/core/log.js';
import { Message } from '../../src/core/message.js';
import { serveDaemon } from '../../src/ipc/daemon.js';
import { cleanup, ROOT, runTs, tempDir } from '../support/daemons.js';

/**
 * `metanet portal …` without root: a stand-in daemon `portal` (served by this test process)
 * answers the portal's mailboxes with canned replies; the CLI runs as its own process. The real
 * portal behind the same verbs: test/apps/portal/operator.lab.test.ts.
 */
const CLI = `${ROOT}/src/cli/main.ts`;
let dir: string;
let bus: Bus;
let daemon: { close(): Promise<void> };
const seen: { mailbox: string; m: Message }[] = [];

function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const c = runTs(CLI, ['--dir', dir, ...args]);
  let out = '';
  let err = '';
  c.stdout?.on('data', (d: Buffer) => (out += d));
  c.stderr?.on('data', (d: Buffer) => (err += d));
  return new Promise((resolve) => c.on('exit', (code) => resolve({ code: code ?? -1, out, err })));
}

beforeAll(async () => {
  dir = tempDir();
  bus = new Bus({ name: 'portal', logger: silentLogger });
  const answer = (suffix: string, reply: (m: Message) => Record<string, unknown>) =>
    bus.listen(`/portal${suffix}`, async (m, ctx) => {
      seen.push({ mailbox: suffix, m });
      await ctx.reply(reply(m) as never);
      return STOP;
    });
  answer('/status', () => ({
    started: 1795000000,
    uptime: 3725,
    online: 2,
    logins: 5,
    logouts: 3,
    'bytes-up': 1_234_567,
    'bytes-down': 98_765_432,
    trusted: 1,
    blocked: 0,
    garden: 4,
    'http-refused': 19936,
  }));
  answer('/clients', () => ({
    count: 1,
    client: [
      {
        ip: '10.20.0.23',
        mac: '02:11:22:33:44:55',
        hostname: 'phone',
        since: 1795000000,
        expires: Math.floor(Date.now() / 1000) + 3600,
        idle: 42,
        'bytes-up': 5000,
        'bytes-down': 2_500_000,
      },
    ],
  }));
  answer('/authorize', (m) =>
    m.has('mac') && m.str('mac') === '02:00:00:00:00:0b'
      ? {
          error: '/portal/authorize: 02:00:00:00:00:0b is blocked',
          code: 'EDENIED',
          mailbox: '/portal/authorize',
        }
      : { ip: '10.20.0.23', mac: '02:11:22:33:44:55', expires: 1795003600 },
  );
  answer('/block', (m) => ({ mac: m.str('mac'), changed: true, ended: 2 }));
  answer('/trust', (m) => ({ mac: m.str('mac'), changed: false }));
  answer('/client', () => ({ found: false, state: 'unknown', ip: '10.20.0.99', mac: '', hostname: '' }));
  answer('/logout', (m) => ({ ip: '', mac: m.str('mac', ''), removed: false }));
  daemon = await serveDaemon(bus, { dir, signals: false });
}, 20_000);

afterAll(async () => {
  await daemon?.close();
  await bus?.close();
  cleanup(dir);
});

describe('metanet portal (against a stand-in portal daemon)', () => {
  it('status: the figures in words; --json: one object', async () => {
    const r = await cli('portal', 'status');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^uptime +1h02m \(since 2026-/m);
    expect(r.out).toMatch(/^online +2 guests$/m);
    expect(r.out).toMatch(/^logins +5 since start \(3 logouts\)$/m);
    expect(r.out).toMatch(/^traffic +up 1\.2 MB, down 99 MB since start$/m);
    expect(r.out).toMatch(/^refused +19936 connections/m);
    const j = await cli('portal', 'status', '--json');
    expect(JSON.parse(j.out)).toMatchObject({ online: 2, 'bytes-down': 98_765_432 });
  });

  it('clients: a table, or one JSON object per guest', async () => {
    const t = await cli('portal', 'clients');
    expect(t.out.split('\n')[0]).toMatch(/^IP +MAC +HOSTNAME +LEFT +IDLE +UP +DOWN$/);
    expect(t.out).toMatch(
      /^10\.20\.0\.23 +02:11:22:33:44:55 +phone +(59m\d\ds|1h00m) +42s +5\.0 kB +2\.5 MB$/m,
    );
    const j = await cli('portal', 'clients', '--json');
    expect(JSON.parse(j.out.trim())).toMatchObject({ ip: '10.20.0.23', hostname: 'phone', idle: 42 });
  });

  it('auth, block, trust, deauth, client: tuples sent, answers printed, exit codes', async () => {
    const a = await cli('portal', 'auth', '10.20.0.23', '--seconds', '900');
    expect(a.code, a.err).toBe(0);
    expect(a.out.trim()).toBe('10.20.0.23 (02:11:22:33:44:55) logged in until 2026-11-18T12:06:40.000Z');
    const sent = seen.filter((s) => s.mailbox === '/authorize').at(-1)!.m;
    expect(sent.str('ip')).toBe('10.20.0.23');
    expect(sent.int('session-timeout')).toBe(900);
    const denied = await cli('portal', 'auth', '02-00-00-00-00-0B');
    expect(denied.code).toBe(4); // EDENIED
    expect(denied.err).toMatch(/is blocked/);
    expect((await cli('portal', 'block', '02:AA:00:00:00:01')).out.trim()).toBe(
      '02:aa:00:00:00:01 blocked (2 sessions ended)',
    );
    expect((await cli('portal', 'trust', '02:aa:00:00:00:01')).out.trim()).toBe(
      '02:aa:00:00:00:01 was already trusted',
    );
    expect((await cli('portal', 'deauth', '02:aa:00:00:00:01')).out.trim()).toBe(
      '02:aa:00:00:00:01 had no session',
    );
    const c = await cli('portal', 'client', '10.20.0.99');
    expect(c.code).toBe(6);
    expect(c.out).toMatch(/^state +unknown$/m);
    const bad = await cli('portal', 'block', '10.20.0.1');
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/is not a MAC/);
    const none = await cli('--dir', `${dir}/nowhere`, 'portal', 'status');
    expect(none.code).toBe(2);
  }, 60_000);
});

describe('the helpers', () => {
  it('device, plain, bytes, duration', () => {
    expect(device('10.0.0.1')).toEqual({ ip: '10.0.0.1' });
    expect(device('02-AB-00-00-00-01')).toEqual({ mac: '02:ab:00:00:00:01' });
    expect(() => device('10.0.0')).toThrow(/neither/);
    const m = Message.from({ a: 1, l: { x: 'y' }, t: ['s1', 's2'] });
    expect(plain(m)).toEqual({ a: 1, l: { x: 'y' }, t: ['s1', 's2'] });
    expect([bytes(999), bytes(1000), bytes(12_345_678), bytes(2e12)]).toEqual([
      '999 B',
      '1.0 kB',
      '12 MB',
      '2.0 TB',
    ]);
    expect([duration(42), duration(185), duration(3725), duration(90000)]).toEqual([
      '42s',
      '3m05s',
      '1h02m',
      '1d01h',
    ]);
  });
});
