import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../../src/core/bus.js';
import { silentLogger } from '../../../src/core/log.js';
import { attachClient } from '../../../src/ipc/daemon.js';
import { have } from '../../support/env.js';
import { Lab } from '../../support/lab.js';
import { waitForLine } from '../../support/wait.js';

/**
 * dhcpd under a DISCOVER storm, for real: the daemon in the router namespace of the lab, a /24
 * pool; 2,000 DISCOVERs from random MACs in 2 s sent as raw Ethernet frames (fixtures/storm.py,
 * each frame from its own MAC) from one client namespace; meanwhile a well-behaved client does a
 * whole exchange every 100 ms from another (fixtures/client.ts steady: it must never fail), and
 * busybox udhcpc, each time with a MAC the server has never seen, must get a lease within 5 s
 * during the storm and after it (while the storm's offers would still be held).
 * docs/services/dhcp.md, "Storms".
 */
const MAIN = 'src/apps/dhcpd/main.ts';
const CLIENT = join(import.meta.dirname, 'fixtures', 'client.ts');
const STORM = join(import.meta.dirname, 'fixtures', 'storm.py');
const PYTHON = '/usr/bin/python3';

interface Steady {
  runs: number;
  failures: string[];
  ip: string;
  ms: { p50: number; p99: number; max: number };
}

describe.skipIf(!have(['ip', 'udhcpc', PYTHON], { root: true }))(
  'dhcpd under a DISCOVER storm (namespace lab, raw frames, real udhcpc)',
  () => {
    let lab: Lab;
    let run = 0;
    const [UDHCPC, STEADY, STORMER] = [0, 1, 2];

    beforeAll(async () => {
      lab = await Lab.create({ clients: 3 });
      // the steady client sends its broadcasts through a socket: it needs an address and a route
      // (outside the pool); udhcpc and the storm use raw sockets and need none
      const ns = lab.clients[STEADY]!;
      for (const args of [
        ['addr', 'add', '10.77.0.5/24', 'dev', 'c0'],
        ['route', 'add', 'default', 'via', lab.routerLanIp],
      ]) {
        const r = await lab.exec(ns, 'ip', args);
        expect(r.code, r.stderr).toBe(0);
      }
    }, 30_000);

    afterAll(async () => {
      await lab?.close();
    });

    /** A MAC the server has never seen, set on udhcpc's interface. */
    async function freshMac(): Promise<string> {
      const mac = `02:5e:${[process.pid >> 8, process.pid, run, Math.floor(Math.random() * 256)]
        .map((b) => (b & 255).toString(16).padStart(2, '0'))
        .join(':')}`;
      const r = await lab.exec(lab.clients[UDHCPC]!, 'ip', ['link', 'set', 'c0', 'address', mac]);
      expect(r.code, r.stderr).toBe(0);
      return mac;
    }

    /** udhcpc with a fresh MAC: ms until bound (it gives up after 5 s: 5 DISCOVERs, 1 s apart). */
    async function leaseTime(): Promise<number> {
      await freshMac();
      const t0 = performance.now();
      const l = await lab.udhcpc(lab.clients[UDHCPC]!, 'c0', { timeoutS: 5 });
      expect(l.ip).toMatch(/^10\.77\.0\.\d+$/);
      return Math.round(performance.now() - t0);
    }

    function exited(c: ChildProcess): Promise<string> {
      let out = '';
      c.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
      });
      let err = '';
      c.stderr?.on('data', (d: Buffer) => {
        err += d.toString();
      });
      return new Promise((resolve, reject) =>
        c.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`exit ${code}: ${err}`)))),
      );
    }

    /** One storm against a fresh daemon with `extra` config; what the clients and the daemon saw. */
    async function storm(extra: Record<string, unknown>) {
      run++;
      const sockDir = join(lab.dir, `sock${run}`);
      const cfg = lab.file(
        `dhcpd${run}.json`,
        JSON.stringify({
          listen: [{ interface: 'r0', address: lab.routerLanIp }],
          subnets: [
            {
              subnet: '10.77.0.0/24',
              pool: { start: '10.77.0.10', end: '10.77.0.254' },
              router: lab.routerLanIp,
            },
          ],
          leaseFile: join(lab.dir, `dhcpd${run}.leases`),
          ...extra,
        }),
      );
      const server = lab.nodeScript(lab.router, MAIN, ['--config', cfg, '--dir', sockDir], {
        env: { ...process.env, METANET_LOG: 'info' },
      });
      const log: string[] = [];
      let partial = '';
      server.stderr?.on('data', (d: Buffer) => {
        const lines = (partial + d.toString()).split('\n');
        partial = lines.pop()!;
        log.push(...lines);
      });
      await waitForLine(server, /^dhcpd ready$/, 15_000);
      const bus = new Bus({ name: `stormtest-${process.pid}-${run}`, logger: silentLogger });
      attachClient(bus, { dir: sockDir });
      try {
        const client = lab.nodeScript(lab.clients[STEADY]!, CLIENT, ['steady', '02:5e:00:00:00:01', '8']);
        const steady = exited(client);
        await waitForLine(client, /^started$/, 15_000); // its first exchange: a known client from now on
        const logBefore = log.length;
        const stormer = exited(
          lab.spawn(lab.clients[STORMER]!, PYTHON, [STORM, 'c0', '2000', '2', String(run)]),
        );
        await new Promise((r) => setTimeout(r, 300));
        const during = await leaseTime();
        const sent = JSON.parse(await stormer) as { sent: number; seconds: number };
        const after = [await leaseTime(), await leaseTime()];
        const stats = (await bus.request(`dhcpd:/dhcpd/stats`, {})).toObject() as Record<string, number>;
        const s = JSON.parse((await steady).trim().split('\n').at(-1)!) as Steady;
        // the storm began ~7 s ago: the summaries of its first 5 s are written by now
        const lines = log.slice(logBefore);
        return { during, after, sent, stats, lines, steady: s };
      } finally {
        await bus.close();
        server.kill('SIGTERM');
        await new Promise((r) => server.once('exit', r));
      }
    }

    it('defaults (new clients limited per link, held offers reclaimed): nobody waits, the logs stay short', async () => {
      const r = await storm({});
      console.log(
        `storm with the defaults: sent ${r.sent.sent} in ${r.sent.seconds} s; udhcpc lease (new MAC) during ${r.during} ms, after ${r.after.join(', ')} ms; ` +
          `steady client ${r.steady.runs} exchanges, ${r.steady.failures.length} failed, ms p50 ${r.steady.ms.p50} p99 ${r.steady.ms.p99} max ${r.steady.ms.max}; ` +
          `${r.lines.length} log lines; stats ${JSON.stringify(r.stats)}`,
      );
      expect(r.sent.sent).toBe(2000);
      expect(r.sent.seconds).toBeLessThan(3);
      expect(r.steady.failures).toEqual([]);
      expect(r.steady.runs).toBeGreaterThanOrEqual(60);
      expect(r.during).toBeLessThan(5000);
      for (const ms of r.after) expect(ms).toBeLessThan(5000);
      expect(r.stats.received).toBeGreaterThan(1900); // (the kernel may drop a few of a burst)
      expect(r.stats['rate-limited']).toBeGreaterThan(1000);
      // 200 at once + 50/s let in: more than the 245 addresses, so offers were reclaimed too
      expect(r.stats['offers-reclaimed']).toBeGreaterThan(0);
      // one line per kind per 5 s at most (rate-limited, offers reclaimed), not one per packet
      expect(r.lines.length, r.lines.join('\n')).toBeLessThanOrEqual(8);
      expect(r.lines.join('\n')).toMatch(
        /new client over the newClients limit of its link: \d+ more in the last \d s/,
      );
    }, 60_000);

    it('no limit on new clients (newClients.perSecond 0): reclaiming held offers alone keeps the pool open', async () => {
      const r = await storm({ newClients: { perSecond: 0 } });
      console.log(
        `storm without the limit: sent ${r.sent.sent} in ${r.sent.seconds} s; udhcpc lease (new MAC) during ${r.during} ms, after ${r.after.join(', ')} ms; ` +
          `steady client ${r.steady.runs} exchanges, ${r.steady.failures.length} failed, ms p50 ${r.steady.ms.p50} p99 ${r.steady.ms.p99} max ${r.steady.ms.max}; ` +
          `${r.lines.length} log lines; stats ${JSON.stringify(r.stats)}`,
      );
      expect(r.steady.failures).toEqual([]);
      expect(r.during).toBeLessThan(5000);
      for (const ms of r.after) expect(ms).toBeLessThan(5000);
      expect(r.stats['rate-limited']).toBe(0);
      expect(r.stats.offers).toBeGreaterThan(1900);
      expect(r.stats['offers-reclaimed']).toBeGreaterThan(1500);
      expect(r.lines.length, r.lines.join('\n')).toBeLessThanOrEqual(8);
      expect(r.lines.join('\n')).toMatch(
        /a held offer was given to another client: \d+ more in the last \d s/,
      );
    }, 60_000);
  },
);
