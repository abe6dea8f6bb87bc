import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADDR, GatewayLab, type Lease, waitForLine } from '../../../examples/gateway-lab/lab.js';
import { Bus } from '../../../src/core/bus.js';
import { silentLogger } from '../../../src/core/log.js';
import { attachClient } from '../../../src/ipc/daemon.js';
import { have } from '../../support/env.js';

/**
 * A hostile guest (docs/apps/portal.md, "Hostile guests"): in the gateway lab, guest1 runs two Node
 * scripts (10,000 connections each: this VM's hard limit on file descriptors per process is 20,000
 * and cannot be raised, so prlimit sets each to that) that open 20,000 connections to the portal's
 * web server and keep trying to hold them (a connection the server resets is opened again a second
 * later). Meanwhile guest2 loads the splash page and logs in with curl. The portal's per-client
 * cap (`maxConnectionsPerClient`, default 64) resets guest1's connections beyond 64 at accept.
 */
const ok = have(['ip', 'udhcpc', 'dnsmasq', 'curl', 'nft', 'conntrack', 'prlimit'], { root: true });
const PORTAL = `http://${ADDR.guest}:8080/`;
const HOLD = 20_000;

describe.skipIf(!ok)('portal: one guest holding 20,000 connections does not lock the others out', () => {
  let lab: GatewayLab;
  let bus: Bus;
  const attackers: ReturnType<GatewayLab['spawn']>[] = [];
  let victim: Lease;
  const report: string[] = [];

  beforeAll(async () => {
    lab = await GatewayLab.create({ gatewayLog: 'warn' });
    await lab.startGateway();
    bus = new Bus({ name: `hostiletest${process.pid}`, logger: silentLogger });
    attachClient(bus, { dir: lab.sockDir });
    for (const c of ['guest1', 'guest2'] as const) {
      const l = await lab.udhcpc(lab.ns[c]);
      if (!l) throw new Error(`${c}: no lease`);
      await lab.applyLease(lab.ns[c], l);
      if (c === 'guest2') victim = l;
    }
    // Enough source ports for 20,000 connections to one address and port.
    await lab.exec(lab.ns.guest1, 'sysctl', ['-qw', 'net.ipv4.ip_local_port_range=1024 65000']);
  }, 60_000);

  afterAll(async () => {
    for (const a of attackers) a.kill('SIGKILL');
    const log = lab
      ?.gatewayLogTail(12)
      .replace(/^gateway ready: .*\n?/m, '')
      .trim();
    if (log) process.stderr.write(`gateway log (tail):\n${log}\n`);
    if (report.length) process.stderr.write(`${report.join('\n')}\n`);
    await bus?.close(100);
    await lab?.close();
  });

  it('guest2 gets the splash page and logs in while guest1 floods; guest1 holds at most the cap', async () => {
    const script = lab.file(
      'hold.mjs',
      `import net from 'node:net';
const [host, port, total] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
let open = 0, attempts = 0, resets = 0, refused = 0, other = 0, inflight = 0, peakOpen = 0;
const start = (delay) => setTimeout(() => {
  attempts++; inflight++;
  const s = net.connect({ host, port });
  let up = false;
  s.on('connect', () => { up = true; open++; if (open > peakOpen) peakOpen = open; });
  s.on('error', (e) => { if (e.code === 'ECONNRESET') resets++; else if (e.code === 'ECONNREFUSED') refused++; else other++; });
  s.on('close', () => { inflight--; if (up) open--; start(1000); });
}, delay);
// Ramp up: 1,000 new connections every 50 ms until all are in flight.
for (let i = 0; i < total; i++) start(Math.floor(i / 1000) * 50);
setInterval(() => console.log(JSON.stringify({ attempts, open, inflight, resets, refused, other, peakOpen })), 1000);
`,
    );
    const last: Record<string, number>[] = [{}, {}];
    for (const i of [0, 1]) {
      const a = lab.spawn(lab.ns.guest1, 'prlimit', [
        '--nofile=20000:20000',
        process.execPath,
        script,
        ADDR.guest,
        '8080',
        String(HOLD / 2),
      ]);
      attackers.push(a);
      a.stdout?.on('data', (d: Buffer) => {
        const line = d.toString().trim().split('\n').at(-1);
        if (line?.startsWith('{')) last[i] = JSON.parse(line) as Record<string, number>;
      });
    }
    for (const a of attackers)
      await waitForLine(a, /"attempts":[1-9]\d{4}/, 30_000, 'an attacker ramping up to 10,000 connections');
    await new Promise((r) => setTimeout(r, 2000)); // under fire for a while

    const t0 = performance.now();
    const splash = await lab.curl(lab.ns.guest2, PORTAL, ['--connect-timeout', '10', '-m', '15']);
    const t1 = performance.now();
    expect(splash.code, splash.body).toBe(200);
    const token = /name="csrf" value="([^"]+)"/.exec(splash.body)?.[1];
    expect(token).toBeTruthy();
    const login = await lab.curl(lab.ns.guest2, `${PORTAL}accept`, [
      '--connect-timeout',
      '10',
      '-m',
      '15',
      '-d',
      `csrf=${token}&url=`,
    ]);
    const t2 = performance.now();
    expect(login.code, login.body).toBe(303);
    const clients = await bus.request('portal:/portal/clients', {});
    expect(clients.all('client').map((t) => (t.value as { str(k: string): string }).str('ip'))).toContain(
      victim.ip,
    );
    const stats = await bus.request('portal:/portal/http/stats', {});
    const status = await bus.request('portal:/portal/status', {});
    report.push(
      `hostile guest: attackers ${JSON.stringify(last)}`,
      `  portal http: ${stats.int('connections')} connections open from ${stats.int('peers')} addresses, ` +
        `${stats.int('refused-cap')} refused by the cap, ${stats.int('refused-fd')} for want of fds, ${stats.int('accepted')} accepted`,
      `  victim: splash ${Math.round(t1 - t0)} ms, login ${Math.round(t2 - t1)} ms; /portal/status http-refused ${status.int('http-refused')}`,
    );
    // The attacker never holds more than the cap (64), whatever it tries.
    expect(stats.int('max-per-peer')).toBe(64);
    // On the server's side (the attacker's own "open" counts handshakes the kernel completed that
    // still wait in the accept queue, to be reset when accepted).
    expect(stats.int('connections')).toBeLessThanOrEqual(64 + 2);
    expect(stats.int('refused-cap')).toBeGreaterThan(HOLD / 2);
    expect(status.int('http-refused')).toBeGreaterThan(HOLD / 2);
    // The refusals are logged, but not one line each.
    const log = lab.gatewayLogTail(400);
    const lines = log.split('\n').filter((l) => l.includes('connection refused'));
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.length).toBeLessThan(20);
    expect(log).toMatch(/holds 64 connections \(maxConnectionsPerPeer 64\)/);
  }, 120_000);
});
