import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../../src/core/bus.js';
import { silentLogger } from '../../../src/core/log.js';
import type { Message } from '../../../src/core/message.js';
import { attachClient } from '../../../src/ipc/daemon.js';
import type { SocketTransport } from '../../../src/ipc/transport.js';
import { have } from '../../support/env.js';
import { Lab } from '../../support/lab.js';
import { until, waitForLine } from '../../support/wait.js';

/**
 * `metanet up` in a lab router (r0 = a captive guest network, r1 = the WAN): one process hosting
 * dhcpd and the portal, each its own daemon; reload applies a changed config restarting only what
 * changed (a logged-in guest and a lease survive), refuses a bad one, SIGHUP does the same, an app
 * can move to its own supervised process, SIGTERM stops everything and removes the sockets.
 */
const ok = have(['nft', 'conntrack', 'ip', 'curl', 'udhcpc'], { root: true });

describe.skipIf(!ok)('metanet up: one process, reload, own-process apps', () => {
  let lab: Lab;
  let bus: Bus;
  let transport: SocketTransport;
  let up: ChildProcess;
  let sockDir: string;
  let file: string;
  const config = (apps: Record<string, unknown>) => ({
    networks: {
      wan: { role: 'wan', device: 'r1' },
      guest: { role: 'guest', device: 'r0', address: '10.77.0.1/24' },
    },
    upstreamDns: ['10.77.1.2'],
    stateDir: join(lab.dir, 'state'),
    apps,
  });
  const write = (apps: Record<string, unknown>): void => {
    lab.file('gateway.json', JSON.stringify(config(apps), null, 2));
  };
  const status = async (): Promise<Message[]> =>
    (await bus.request('gateway:/gateway/status', {})).all('app').map((t) => t.value as Message);
  const reload = () => bus.request('gateway:/gateway/reload', {}, { timeout: 60_000 });
  const names = (m: Message, tag: string): string[] => m.all(tag).map((t) => String(t.value));
  const curl = async (url: string, args: string[] = []) => {
    const r = await lab.exec(lab.client, 'curl', ['-s', '-m', '4', ...args, url]);
    return r.stdout;
  };

  beforeAll(async () => {
    lab = await Lab.create({ clients: 1 });
    sockDir = join(lab.dir, 'sock');
    write({ dhcpd: { leaseTime: 600 }, portal: { title: 'First title', sessionSeconds: 600 } });
    file = join(lab.dir, 'gateway.json');
    up = lab.nodeScript(lab.router, 'src/cli/main.ts', ['--dir', sockDir, 'up', '--config', file], {
      env: { ...process.env, METANET_LOG: 'warn' },
    });
    await waitForLine(up, /^gateway ready: dhcpd portal \(\d+ ms\)$/, 30_000);
    bus = new Bus({ name: `gwtest${process.pid}`, logger: silentLogger });
    transport = attachClient(bus, { dir: sockDir });
  }, 60_000);

  afterAll(async () => {
    await bus?.close(100);
    await lab?.close();
  });

  it('hosts each app as its own daemon in one process', async () => {
    for (const d of ['gateway', 'dhcpd', 'portal']) expect(existsSync(join(sockDir, `${d}.sock`))).toBe(true);
    const apps = await status();
    expect(apps.map((a) => a.str('name'))).toEqual(['dhcpd', 'portal']);
    const pids = new Set(apps.map((a) => a.int('pid')));
    expect(pids.size).toBe(1); // one process
    // the portal follows dhcpd's leases: its listener is in dhcpd's chain
    await until(
      async () => String(await (await transport.link('dhcpd')).ls()).includes('follows="leases"'),
      'the portal listening on dhcpd:/dhcpd/lease/committed',
      10_000,
    );
  });

  it('a guest leases and logs in; a reload that changes the portal keeps both', async () => {
    const lease = await lab.udhcpc(lab.client, 'c0', { apply: true });
    expect(lease.ip).toMatch(/^10\.77\.0\./);
    expect(lease.dns).toEqual(['10.77.1.2']); // no forwarder in this config: upstream DNS
    const splash = await curl('http://10.77.0.1:8080/');
    expect(splash).toContain('First title');
    const csrf = /name="csrf" value="([^"]+)"/.exec(splash)?.[1];
    expect(csrf).toBeTruthy();
    await curl('http://10.77.0.1:8080/accept', ['-d', `csrf=${csrf}&url=`]);
    const clients = async () =>
      (await bus.request('portal:/portal/clients', {}))
        .all('client')
        .map((t) => (t.value as Message).str('ip'));
    expect(await clients()).toEqual([lease.ip]);

    write({ dhcpd: { leaseTime: 600 }, portal: { title: 'Second title', sessionSeconds: 600 } });
    const r = await reload();
    expect(r.bool('ok')).toBe(true);
    expect(names(r, 'restarted')).toEqual(['portal']);
    expect(names(r, 'unchanged')).toEqual(['dhcpd']);
    expect(await curl('http://10.77.0.1:8080/')).toContain('Second title');
    expect(await clients()).toEqual([lease.ip]); // still logged in
    const leases = await bus.request('dhcpd:/dhcpd/leases', {});
    expect(leases.int('count')).toBe(1);
  });

  it('a bad new config is refused and the running one kept', async () => {
    write({ dhcpd: { leaseTime: 5 }, portal: { title: 'Third', colour: 'red' } });
    const r = await reload();
    expect(r.bool('ok')).toBe(false);
    expect(r.str('error')).toMatch(/apps\.dhcpd\.leaseTime/);
    expect(r.str('error')).toMatch(/colour/);
    expect((await status()).map((a) => a.str('name'))).toEqual(['dhcpd', 'portal']);
    expect(await curl('http://10.77.0.1:8080/')).toContain('Second title');
  });

  it('SIGHUP reloads too and says what it restarted', async () => {
    write({ dhcpd: { leaseTime: 900 }, portal: { title: 'Second title', sessionSeconds: 600 } });
    up.kill('SIGHUP');
    await waitForLine(up, /^gateway reloaded: restarted dhcpd$/, 20_000);
    const leases = await bus.request('dhcpd:/dhcpd/leases', {});
    expect(leases.int('count')).toBe(1); // the journal kept it
  });

  it('an app marked process: own runs in a supervised child, restarted when it dies', async () => {
    write({
      dhcpd: { leaseTime: 900 },
      portal: { title: 'Own process', sessionSeconds: 600, process: 'own' },
    });
    const r = await reload();
    expect(r.bool('ok')).toBe(true);
    expect(names(r, 'restarted')).toEqual(['portal']);
    const portal = (await status()).find((a) => a.str('name') === 'portal')!;
    expect(portal.str('process')).toBe('own');
    const pid = Number(portal.int('pid'));
    expect(pid).not.toBe(Number((await status())[0]!.int('pid')));
    expect(await curl('http://10.77.0.1:8080/')).toContain('Own process');
    const exited = bus.wait('gateway:/gateway/app/exit', { timeout: 10_000 });
    process.kill(pid, 'SIGKILL');
    const e = await exited;
    expect(e.str('app')).toBe('portal');
    expect(e.str('signal')).toBe('SIGKILL');
    expect(Number(e.int('restart-in-ms'))).toBeGreaterThan(0);
    await until(
      async () => {
        const p = (await status()).find((a) => a.str('name') === 'portal');
        return p && Number(p.int('pid')) !== pid && Number(p.int('pid')) !== 0;
      },
      'the portal restarted',
      15_000,
    );
    await until(
      async () => (await curl('http://10.77.0.1:8080/')).includes('Own process'),
      'portal back',
      15_000,
    );
  });

  it('SIGTERM stops every app and removes the sockets', async () => {
    const exit = new Promise<number | null>((r) => up.once('exit', r));
    up.kill('SIGTERM');
    expect(await exit).toBe(0);
    for (const d of ['gateway', 'dhcpd', 'portal'])
      expect(existsSync(join(sockDir, `${d}.sock`))).toBe(false);
  });
});
