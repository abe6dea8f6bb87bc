import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADDR,
  type Client,
  GatewayLab,
  INTERNET_HELLO,
  type Lease,
  REPO_ROOT,
} from '../../../examples/gateway-lab/lab.js';
import { Bus } from '../../../src/core/bus.js';
import { silentLogger } from '../../../src/core/log.js';
import type { Message } from '../../../src/core/message.js';
import { attachClient } from '../../../src/ipc/daemon.js';
import { have } from '../../support/env.js';

/**
 * The operator's verbs and the MAC lists (docs/apps/portal.md, "MAC lists" and "The operator") in
 * the gateway lab: `metanet up` with examples/gateway.json (dhcpd, dns, portal), real udhcpc and
 * curl guests, every verb run as `node --import tsx src/cli/main.ts --dir SOCKDIR portal …`.
 * Trusted MACs are never captive, blocked MACs get no lease and no access; both survive a
 * restart of the gateway (the portal's MAC file). Every change is a message on its mailbox.
 */
const ok = have(['ip', 'udhcpc', 'dnsmasq', 'curl', 'nft', 'conntrack'], { root: true });
const SITE = 'http://www.example.test/';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

describe.skipIf(!ok)('portal operator verbs and MAC lists (metanet portal …, gateway lab)', () => {
  let lab: GatewayLab;
  let bus: Bus;
  const leases = new Map<Client, Lease>();
  const macs = new Map<Client, string>();
  const events: { mailbox: string; m: Message }[] = [];
  const handles: { remove(): void }[] = [];

  /** The CLI, as an operator runs it. */
  const cli = (...args: string[]): Promise<Run> =>
    new Promise((resolve) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', 'src/cli/main.ts', '--dir', lab.sockDir, 'portal', ...args],
        { cwd: REPO_ROOT, timeout: 20_000 },
        (err, stdout, stderr) =>
          resolve({ code: err ? Number((err as { code?: number }).code ?? 99) : 0, stdout, stderr }),
      );
    });
  const lease = async (c: Client, tries = 3): Promise<Lease | undefined> => {
    const l = await lab.udhcpc(lab.ns[c], 'c0', { tries });
    if (l) {
      await lab.applyLease(lab.ns[c], l);
      leases.set(c, l);
    }
    return l;
  };
  const page = async (c: Client): Promise<string> => {
    const r = await lab.curl(lab.ns[c], SITE);
    return r.code === 200 && r.body.includes(INTERNET_HELLO)
      ? 'internet'
      : r.code === 302
        ? 'portal'
        : `no answer (${r.code})`;
  };
  const follow = async (): Promise<void> => {
    for (const box of ['login', 'logged-out', 'blocked', 'unblocked', 'trusted', 'untrusted']) {
      const h = bus.listen(`portal:/portal/${box}`, (m) => {
        events.push({ mailbox: box, m });
      });
      await h.ready;
      handles.push(h);
    }
  };
  const event = async (box: string, mac: string, ms = 5000): Promise<Message> => {
    const end = Date.now() + ms;
    for (;;) {
      const e = events.find((x) => x.mailbox === box && x.m.str('mac') === mac);
      if (e) return e.m;
      if (Date.now() > end) throw new Error(`no /portal/${box} for ${mac}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  beforeAll(async () => {
    lab = await GatewayLab.create({ gatewayLog: 'warn' });
    await lab.startGateway();
    bus = new Bus({ name: `operatortest${process.pid}`, logger: silentLogger });
    attachClient(bus, { dir: lab.sockDir });
    await follow();
    for (const c of ['guest1', 'guest2'] as const) {
      macs.set(c, await lab.mac(lab.ns[c]));
      if (!(await lease(c))) throw new Error(`${c}: no lease`);
    }
  }, 60_000);

  afterAll(async () => {
    const log = lab
      ?.gatewayLogTail(20)
      .replace(/^gateway ready: .*\n?/m, '')
      .trim();
    if (log) process.stderr.write(`gateway log:\n${log}\n`);
    for (const h of handles) h.remove();
    await bus?.close(100);
    await lab?.close();
  });

  it('status, clients (table and --json), client: a fresh portal', async () => {
    const s = await cli('status');
    expect(s.code, s.stderr).toBe(0);
    expect(s.stdout).toMatch(/^uptime +\d+s \(since \d{4}-/m);
    expect(s.stdout).toMatch(/^online +0 guests$/m);
    expect(s.stdout).toMatch(/^logins +0 since start/m);
    const js = await cli('status', '--json');
    const j = JSON.parse(js.stdout) as Record<string, number>;
    expect(j.online).toBe(0);
    expect(typeof j['bytes-up']).toBe('number');
    expect((await cli('clients')).stdout.trim()).toBe('no guest online');
    const ip1 = leases.get('guest1')!.ip;
    const c = await cli('client', ip1);
    expect(c.code, c.stderr).toBe(0); // known (lease, neighbour table), not online: captive
    expect(c.stdout).toMatch(/^state +captive$/m);
    expect(c.stdout).toContain(macs.get('guest1'));
    const unknown = await cli('client', '10.20.0.250');
    expect(unknown.code).toBe(6);
    expect(unknown.stdout).toMatch(/^state +unknown$/m);
    const bad = await cli('client', 'nonsense');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/neither an IPv4 address nor a MAC/);
  });

  it('auth IP logs a guest in (MAC from ARP/DHCP); clients lists it; deauth by MAC logs it out (operator)', async () => {
    const ip1 = leases.get('guest1')!.ip;
    const mac1 = macs.get('guest1')!;
    expect(await page('guest1')).toBe('portal');
    const a = await cli('auth', ip1, '--seconds', '600');
    expect(a.code, a.stderr).toBe(0);
    expect(a.stdout).toMatch(new RegExp(`^${ip1} \\(${mac1}\\) logged in until \\d{4}-`));
    expect((await event('login', mac1)).int('session-timeout')).toBe(600);
    expect(await page('guest1')).toBe('internet');
    const list = await cli('clients');
    expect(list.stdout).toMatch(/^IP +MAC +HOSTNAME +LEFT +IDLE +UP +DOWN$/m);
    expect(list.stdout).toContain(`${ip1}  ${mac1}`);
    const json = (await cli('clients', '--json')).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(json).toHaveLength(1);
    expect(json[0]).toMatchObject({ ip: ip1, mac: mac1, 'session-timeout': 600 });
    const one = await cli('client', mac1);
    expect(one.code).toBe(0);
    expect(one.stdout).toMatch(/^state +online$/m);
    expect((await cli('status')).stdout).toMatch(/^logins +1 since start/m);
    const d = await cli('deauth', mac1);
    expect(d.code, d.stderr).toBe(0);
    expect(d.stdout.trim()).toBe(`${ip1} logged out`);
    expect((await event('logged-out', mac1)).str('reason')).toBe('operator');
    expect(await page('guest1')).toBe('portal');
    expect((await cli('deauth', ip1)).stdout.trim()).toBe(`${ip1} had no session`);
    // auth by MAC (its address from its lease), deauth by IP
    expect((await cli('auth', mac1)).code).toBe(0);
    expect(await page('guest1')).toBe('internet');
    expect((await cli('deauth', ip1)).stdout.trim()).toBe(`${ip1} logged out`);
    expect((await cli('auth', '02:00:00:00:00:99')).code).toBe(6); // no address known for it
  });

  it('trust MAC: never captive, without a session; untrust: captive again', async () => {
    const mac2 = macs.get('guest2')!;
    expect(await page('guest2')).toBe('portal');
    const t = await cli('trust', mac2.toUpperCase());
    expect(t.code, t.stderr).toBe(0);
    expect(t.stdout.trim()).toBe(`${mac2} trusted`);
    await event('trusted', mac2);
    expect(await page('guest2')).toBe('internet');
    // The RFC 8908 API agrees: a trusted device is not captive, with no session.
    const api = await lab.curl(lab.ns.guest2, `http://${ADDR.guest}:8080/api`);
    expect(JSON.parse(api.body)).toMatchObject({ captive: false });
    expect((await cli('trust', mac2)).stdout.trim()).toBe(`${mac2} was already trusted`);
    expect((await cli('client', mac2)).stdout).toMatch(/^state +trusted$/m);
    expect((await cli('clients')).stdout.trim()).toBe('no guest online'); // not a session
    expect((await cli('untrust', mac2)).stdout.trim()).toBe(`${mac2} untrusted`);
    await event('untrusted', mac2);
    expect(await page('guest2')).toBe('portal');
    expect((await cli('trust', mac2)).code).toBe(0); // trusted again for the restart below
  });

  it('block MAC: its session ends (blocked), no access, no DHCP lease (udhcpc gives up); auth refused', async () => {
    const ip1 = leases.get('guest1')!.ip;
    const mac1 = macs.get('guest1')!;
    expect((await cli('auth', ip1)).code).toBe(0);
    expect(await page('guest1')).toBe('internet');
    const b = await cli('block', mac1);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stdout.trim()).toBe(`${mac1} blocked (1 session ended)`);
    expect((await event('blocked', mac1)).int('ended')).toBe(1);
    const out = events.filter((e) => e.mailbox === 'logged-out' && e.m.str('mac') === mac1).at(-1)!;
    expect(out.m.str('reason')).toBe('blocked');
    expect(await page('guest1')).toMatch(/^no answer/);
    expect((await lab.exec(lab.ns.guest1, 'ping', ['-c1', '-W1', ADDR.guest])).code).not.toBe(0);
    const refused = await cli('auth', ip1);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toMatch(/is blocked/);
    // dhcpd asks the portal's listener first, which answers "no address" for this MAC
    const ls = await new Promise<string>((r) =>
      execFile(
        process.execPath,
        ['--import', 'tsx', 'src/cli/main.ts', '--dir', lab.sockDir, 'ls', 'dhcpd'],
        { cwd: REPO_ROOT },
        (_e, o) => r(o),
      ),
    );
    expect(ls).toMatch(/\/dhcpd\/lookup[^\n]*\n\s+#\d+ portalBlocked \{app="portal" blocks="macs"\}/);
    const answer = await bus.request('dhcpd:/dhcpd/lookup', {
      mac: mac1,
      type: 'discover',
      subnet: '10.20.0.0/24',
    });
    expect(answer.has('ip')).toBe(false);
    expect(answer.str('source')).toBe('portal');
    const t0 = Date.now();
    expect(await lease('guest1', 2)).toBeUndefined();
    process.stderr.write(`blocked MAC: udhcpc gave up after ${Date.now() - t0} ms without a lease\n`);
    expect((await lease('guest2')) !== undefined).toBe(true); // others still get one
  });

  it('both lists survive a restart of the gateway (portal state), then unblock/untrust undo them', async () => {
    const mac1 = macs.get('guest1')!;
    const mac2 = macs.get('guest2')!;
    await lab.stopGateway();
    await lab.startGateway();
    await new Promise((r) => setTimeout(r, 300));
    expect(await page('guest2')).toBe('internet');
    expect(await page('guest1')).toMatch(/^no answer/);
    expect(await lease('guest1', 2)).toBeUndefined();
    expect((await cli('client', mac1)).stdout).toMatch(/^state +blocked$/m);
    expect((await cli('status')).stdout).toMatch(/^macs +1 trusted, 1 blocked$/m);
    const ub = await cli('unblock', mac1);
    expect(ub.code, ub.stderr).toBe(0);
    expect(ub.stdout.trim()).toBe(`${mac1} unblocked`);
    expect(await lease('guest1')).toBeDefined();
    expect(await page('guest1')).toBe('portal');
    expect((await cli('untrust', mac2)).code).toBe(0);
    expect(await page('guest2')).toBe('portal');
    expect((await cli('status')).stdout).toMatch(/^macs +0 trusted, 0 blocked$/m);
    expect((await cli('block', 'zz:00')).code).toBe(1);
  });
});
