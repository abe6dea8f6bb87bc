import type { ChildProcess } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normaliseMac } from '../../../src/apps/dhcp-ldap/glue.js';
import { ROOT, runTs } from '../../support/daemons.js';
import { have } from '../../support/env.js';
import { Lab } from '../../support/lab.js';
import { BASE_DN, hostEntry, type Slapd, startSlapd } from '../../support/slapd.js';
import { waitForLine } from '../../support/wait.js';

/**
 * The paper's central example, in three processes: dhcpd in the router namespace, the dhcp-ldap
 * glue (another process) prepended on dhcpd:/dhcpd/lookup, a real slapd; real DHCP clients.
 * Each case gives the client interface a fresh MAC so the pool has no earlier lease for it.
 */
const POOL = /^10\.77\.0\.(1[0-4]\d|150)$/;
const MACS = {
  inLdap: '02:00:00:00:0a:01',
  inLdapDhclient: '02:00:00:00:0a:02',
  notInLdap: '02:00:00:00:0b:01',
  ldapDown: '02:00:00:00:0a:03',
  ldapSlow: '02:00:00:00:0a:04',
  glueDead: '02:00:00:00:0a:05',
};
const GLUE_TIMEOUT = 300;

describe.skipIf(!have(['ip', 'udhcpc', 'dhclient', 'slapd', 'slapadd'], { root: true }))(
  'DHCP answered from LDAP by a separate glue process, with fallback to the pool',
  () => {
    let lab: Lab;
    let slapd: Slapd;
    let sockDir: string;
    let dhcpd: ChildProcess;
    let glue: ChildProcess;
    let blackHole: Server;
    const held: Socket[] = [];

    function startGlue(url: string): Promise<string> {
      const cfg = lab.file(
        `glue-${Date.now()}.json`,
        JSON.stringify({ url, base: `ou=hosts,${BASE_DN}`, timeout: GLUE_TIMEOUT }),
      );
      glue = runTs(join(ROOT, 'src/apps/dhcp-ldap/main.ts'), ['--config', cfg, '--dir', sockDir]);
      return waitForLine(glue, /^dhcp-ldap ready$/, 15000);
    }

    async function stopGlue(): Promise<void> {
      const gone = new Promise((r) => glue.once('exit', r));
      glue.kill('SIGKILL');
      await gone;
    }

    /** A DHCP exchange from the client namespace with this MAC. */
    async function leaseFor(
      mac: string,
      client: 'udhcpc' | 'dhclient' = 'udhcpc',
    ): Promise<{ ip: string; ms: number }> {
      await lab.exec(lab.client, 'ip', ['link', 'set', 'c0', 'down']);
      await lab.exec(lab.client, 'ip', ['link', 'set', 'c0', 'address', mac]);
      await lab.exec(lab.client, 'ip', ['link', 'set', 'c0', 'up']);
      const t = performance.now();
      const l =
        client === 'udhcpc' ? await lab.udhcpc(lab.client, 'c0') : await lab.dhclient(lab.client, 'c0');
      return { ip: l.ip, ms: performance.now() - t };
    }

    beforeAll(async () => {
      slapd = await startSlapd({
        entries: [
          hostEntry('known', MACS.inLdap, '10.77.0.60'),
          hostEntry('known-dhclient', MACS.inLdapDhclient.toUpperCase(), '10.77.0.61'),
          hostEntry('down', MACS.ldapDown, '10.77.0.62'),
          hostEntry('dead', MACS.glueDead, '10.77.0.64'),
        ],
      });
      lab = await Lab.create({ clients: 1 });
      sockDir = join(lab.dir, 'sock');
      const cfg = lab.file(
        'dhcpd.json',
        JSON.stringify({
          listen: [{ interface: 'r0', address: lab.routerLanIp }],
          subnets: [
            {
              subnet: '10.77.0.0/24',
              pool: { start: '10.77.0.100', end: '10.77.0.150' },
              router: lab.routerLanIp,
              leaseTime: 600,
            },
          ],
          leaseFile: join(lab.dir, 'dhcpd.leases'),
        }),
      );
      dhcpd = lab.nodeScript(lab.router, 'src/apps/dhcpd/main.ts', ['--config', cfg, '--dir', sockDir]);
      await waitForLine(dhcpd, /^dhcpd ready$/, 15000);
      await startGlue(slapd.url);
      blackHole = createServer((s) => void held.push(s));
      await new Promise<void>((r) => blackHole.listen(0, '127.0.0.1', () => r()));
    }, 60000);

    afterAll(async () => {
      glue?.kill('SIGKILL');
      for (const s of held) s.destroy();
      blackHole?.close();
      await lab?.close();
      await slapd?.close();
    });

    it('a MAC in LDAP gets its LDAP address (udhcpc)', async () => {
      expect((await leaseFor(MACS.inLdap)).ip).toBe('10.77.0.60');
    });

    it('a MAC stored in upper case in LDAP still matches (dhclient)', async () => {
      expect((await leaseFor(MACS.inLdapDhclient, 'dhclient')).ip).toBe('10.77.0.61');
    });

    it('a MAC not in LDAP gets a pool address', async () => {
      expect((await leaseFor(MACS.notInLdap)).ip).toMatch(POOL);
    });

    it('slapd stopped: the pool answers, well within the timeout', async () => {
      await slapd.stop();
      try {
        const r = await leaseFor(MACS.ldapDown);
        expect(r.ip).toMatch(POOL);
        expect(r.ms).toBeLessThan(5000);
      } finally {
        await slapd.restart();
      }
    });

    it('LDAP slower than the configured timeout: the pool answers', async () => {
      await stopGlue();
      const addr = blackHole.address();
      if (addr === null || typeof addr === 'string') throw new Error('no black-hole port');
      await startGlue(`ldap://127.0.0.1:${addr.port}/`);
      try {
        const r = await leaseFor(MACS.ldapSlow);
        expect(r.ip).toMatch(POOL);
      } finally {
        await stopGlue();
        await startGlue(slapd.url);
      }
    });

    it('glue killed: the pool answers; a new glue takes over again', async () => {
      await stopGlue();
      expect((await leaseFor(MACS.glueDead)).ip).toMatch(POOL);
      await startGlue(slapd.url);
      expect((await leaseFor(MACS.inLdap)).ip).toBe('10.77.0.60');
    });

    it('normalises MACs as RFC 2307 text', () => {
      expect(normaliseMac('0:1A:b:cc:dd:ee')).toBe('00:1a:0b:cc:dd:ee');
    });
  },
);
