import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../../src/core/bus.js';
import { STOP } from '../../../src/core/listener.js';
import { silentLogger } from '../../../src/core/log.js';
import { attachClient } from '../../../src/ipc/daemon.js';
import { have } from '../../support/env.js';
import { Lab } from '../../support/lab.js';
import { waitForLine } from '../../support/wait.js';

/**
 * The real thing: dhcpd as a child process in the router namespace, busybox udhcpc and ISC
 * dhclient in client namespaces, the test process reaching the daemon's mailboxes over its socket.
 */
const MAIN = 'src/apps/dhcpd/main.ts';
const CLIENT = join(import.meta.dirname, 'fixtures', 'client.ts');

describe.skipIf(!have(['ip', 'udhcpc', 'dhclient', 'perfdhcp'], { root: true }))(
  'dhcpd with real DHCP clients',
  () => {
    let lab: Lab;
    let server: ChildProcess;
    let cfg: string;
    let sockDir: string;
    let staticMac: string;
    let bus: Bus;
    let log = '';

    async function startServer(): Promise<void> {
      server = lab.nodeScript(lab.router, MAIN, ['--config', cfg, '--dir', sockDir], {
        env: { ...process.env, METANET_LOG: 'info' },
      });
      server.stderr?.on('data', (d: Buffer) => {
        log += d.toString();
      });
      await waitForLine(server, /^dhcpd ready$/, 15000);
    }

    async function killServer(): Promise<void> {
      const gone = new Promise((r) => server.once('exit', r));
      server.kill('SIGKILL');
      await gone;
    }

    beforeAll(async () => {
      lab = await Lab.create({ clients: 2 });
      sockDir = join(lab.dir, 'sock');
      staticMac = await lab.mac(lab.clients[1]!, 'c0');
      cfg = lab.file(
        'dhcpd.json',
        JSON.stringify({
          listen: [{ interface: 'r0', address: lab.routerLanIp }],
          subnets: [
            {
              subnet: '10.77.0.0/24',
              pool: { start: '10.77.0.100', end: '10.77.0.150' },
              router: lab.routerLanIp,
              dns: [lab.routerLanIp],
              domain: 'lab.test',
              leaseTime: 600,
              captivePortal: 'https://portal.lab.test/api',
            },
          ],
          hosts: [{ mac: staticMac, ip: '10.77.0.50', hostname: 'fixed' }],
          leaseFile: join(lab.dir, 'dhcpd.leases'),
        }),
      );
      await startServer();
      bus = new Bus({ name: `dhcptest-${process.pid}`, logger: silentLogger });
      attachClient(bus, { dir: sockDir });
    }, 30000);

    afterAll(async () => {
      await bus?.close();
      await lab?.close();
    });

    it('busybox udhcpc gets a lease from the pool with router, DNS, domain and captive portal (114)', async () => {
      const l = await lab.udhcpc(lab.client, 'c0', { request: [114] });
      expect(l.ip).toMatch(/^10\.77\.0\.(1[0-4]\d|150)$/);
      expect(l.router).toEqual([lab.routerLanIp]);
      expect(l.dns).toEqual([lab.routerLanIp]);
      expect(l.domain).toBe('lab.test');
      expect(l.serverId).toBe(lab.routerLanIp);
      expect(l.leaseTime).toBe(600);
      expect(Buffer.from(l.env.opt114 ?? '', 'hex').toString()).toBe('https://portal.lab.test/api');
    });

    it('ISC dhclient gets the same client the same address back', async () => {
      const a = await lab.udhcpc(lab.client, 'c0');
      const b = await lab.dhclient(lab.client, 'c0');
      expect(b.ip).toBe(a.ip);
      expect(b.router).toEqual([lab.routerLanIp]);
      expect(b.leaseTime).toBe(600);
    });

    it('a static host gets its fixed address and name (udhcpc with the broadcast flag, and dhclient)', async () => {
      const a = await lab.udhcpc(lab.clients[1]!, 'c0', { broadcast: true });
      expect(a.ip).toBe('10.77.0.50');
      expect(a.hostname).toBe('fixed');
      const b = await lab.dhclient(lab.clients[1]!, 'c0');
      expect(b.ip).toBe('10.77.0.50');
    });

    it('the leases and counters are reachable from another process (dhcpd:/dhcpd/leases, /stats)', async () => {
      const m = await bus.request('dhcpd:/dhcpd/leases', {});
      const ips = m.all('lease').map((t) => (t.type === 'list' ? t.value.str('ip') : ''));
      expect(ips).toContain('10.77.0.50');
      const s = await bus.request('dhcpd:/dhcpd/stats', {});
      expect(s.int('acks')).toBeGreaterThanOrEqual(4);
    });

    it('a listener prepended from another process on dhcpd:/dhcpd/lookup overrides the pool; removing it restores the pool', async () => {
      const mac = await lab.mac(lab.client, 'c0');
      let calls = 0;
      const h = bus.prepend(
        'dhcpd:/dhcpd/lookup',
        async (m, ctx) => {
          calls++;
          if (m.str('mac') !== mac) return;
          await ctx.reply({ ip: '10.77.0.77', source: 'test-glue' });
          return STOP;
        },
        { app: 'test-glue' },
      );
      await h.ready;
      try {
        const l = await lab.udhcpc(lab.client, 'c0');
        expect(l.ip).toBe('10.77.0.77');
      } finally {
        h.remove();
      }
      expect(calls).toBe(2); // DISCOVER and REQUEST
      // the pool answers again; it keeps the client on the address it now holds
      const back = await lab.udhcpc(lab.client, 'c0');
      expect(back.ip).toBe('10.77.0.77');
      expect(calls).toBe(2);
      const other = await lab.udhcpc(lab.clients[1]!, 'c0');
      expect(other.ip).toBe('10.77.0.50');
    });

    it('random bytes never stop it: a burst of garbage, then a real client still gets a lease', async () => {
      const before = (await bus.request('dhcpd:/dhcpd/stats', {})).int('malformed');
      const l0 = await lab.udhcpc(lab.client, 'c0', { apply: true });
      const r = await lab.exec(
        lab.client,
        process.execPath,
        ['--import', 'tsx', CLIENT, 'fuzz', '300', lab.routerLanIp, '10.77.0.255'],
        { timeoutMs: 20000 },
      );
      expect(r.stdout).toMatch(/sent 600/);
      const l1 = await lab.udhcpc(lab.client, 'c0');
      expect(l1.ip).toBe(l0.ip);
      const after = (await bus.request('dhcpd:/dhcpd/stats', {})).int('malformed');
      expect(after - before).toBeGreaterThan(100);
      expect(log).toMatch(/malformed packet/);
    }, 30000);

    it('a real relay agent (perfdhcp, giaddr = its address): 4-way exchanges answered to giaddr:67, none dropped', async () => {
      await lab.udhcpc(lab.client, 'c0', { apply: true });
      const r = await lab.exec(
        lab.client,
        'perfdhcp',
        ['-4', '-r', '40', '-n', '40', '-R', '20', '-W', '1000000', '-l', 'c0', lab.routerLanIp],
        {
          timeoutMs: 20000,
        },
      );
      expect(r.stdout).toMatch(/received packets: 40/);
      expect(r.code, r.stdout + r.stderr).toBe(0); // perfdhcp exits 3 on any drop
    }, 30000);

    it('kill -9 and restart: the lease survives; a RENEWING client (unicast) keeps its address; udhcpc gets it again', async () => {
      const mac = await lab.mac(lab.client, 'c0');
      const l = await lab.udhcpc(lab.client, 'c0', { apply: true });
      await killServer();
      await startServer();
      const r = await lab.exec(
        lab.client,
        process.execPath,
        ['--import', 'tsx', CLIENT, 'renew', mac, l.ip, lab.routerLanIp],
        {
          timeoutMs: 15000,
        },
      );
      expect(JSON.parse(r.stdout.trim())).toEqual({ type: 5, yiaddr: l.ip, lease: 600 });
      const again = await lab.udhcpc(lab.client, 'c0');
      expect(again.ip).toBe(l.ip);
      const d = await lab.dhclient(lab.clients[1]!, 'c0');
      expect(d.ip).toBe('10.77.0.50');
    }, 30000);

    it('SIGTERM: a clean exit (0) that removes its daemon socket', async () => {
      const exited = new Promise<number | null>((r) => server.once('exit', (code) => r(code)));
      // ip netns exec execs the command: the child's pid is dhcpd's own
      server.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(existsSync(join(sockDir, 'dhcpd.sock'))).toBe(false);
    });
  },
);
