import { execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CaptivePortal, startCaptivePortal } from '../../../src/apps/portal/portal.js';
import { Bus } from '../../../src/core/bus.js';
import { silentLogger } from '../../../src/core/log.js';
import type { Message } from '../../../src/core/message.js';
import { have } from '../../support/env.js';
import { Lab } from '../../support/lab.js';
import { until } from '../../support/wait.js';

/**
 * The portal's fair-sharing wiring end to end: `startCaptivePortal` with `uplinkDown`/`uplinkUp`
 * installs the shaper on the captive device (real tc and an ifb in the router namespace); a login
 * adds the guest's classes with its caps, `/portal/limits` (what a RADIUS CoA calls) changes them,
 * a logout removes them. (Throughput and fairness figures: test/services/shaper/shaper.lab.test.ts.)
 */
const ok = have(['nft', 'conntrack', 'ip', 'tc'], { root: true });

const freePort = (): Promise<number> =>
  new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

describe.skipIf(!ok)('portal + shaper: logins become tc classes with the guest caps', () => {
  let lab: Lab;
  let bus: Bus;
  let portal: CaptivePortal;
  let ip: string;
  let mac: string;
  /** The HTB classes of a device in the router namespace, as text (`tc -j` prints HTB classes as text). */
  const classes = (dev: string): string =>
    execFileSync('ip', ['netns', 'exec', lab.router, 'tc', 'class', 'show', 'dev', dev], {
      encoding: 'utf8',
    });
  /** The ceil (bits/s) of the class of the guest's filter, from the leaf rate text: one class per guest. */
  const guestCeils = (dev: string): string[] =>
    classes(dev)
      .split('\n')
      .filter((l) => /class htb 1:(?!1 |2 )\S+ parent 1:1 /.test(l))
      .map((l) => /ceil (\S+)/.exec(l)?.[1] ?? '');

  beforeAll(async () => {
    lab = await Lab.create({ addr: true });
    ip = lab.clientIp(0);
    mac = await lab.mac(lab.client, 'c0');
    bus = new Bus({ name: 'portal-shaping', logger: silentLogger });
    portal = await startCaptivePortal(bus, {
      address: '127.0.0.1',
      port: await freePort(),
      lan: 'r0',
      commandPrefix: ['ip', 'netns', 'exec', lab.router],
      uplinkDown: 20_000_000,
      uplinkUp: 10_000_000,
      rateDown: 4_000_000,
    });
  }, 30000);

  afterAll(async () => {
    await portal?.close();
    await bus?.close(50);
    await lab?.close();
  });

  it('a login adds the guest with the global cap; /portal/limits changes it; a logout removes it', async () => {
    expect(guestCeils('r0')).toEqual([]); // the tree is there, no guest yet
    expect(classes('r0')).toMatch(/class htb 1:1 root/);
    const r = await bus.request('/portal/authorize', { ip, mac });
    expect(r.str('ip')).toBe(ip);
    await until(() => guestCeils('r0').length === 1, 'the guest class on r0', 5000);
    expect(guestCeils('r0')).toEqual(['4Mbit']); // rateDown, global
    const changed = await bus.request('/portal/limits', {
      ip,
      'rate-down': 2_000_000,
      'session-timeout': 120,
    });
    expect(changed.str('mac')).toBe(mac);
    await until(() => guestCeils('r0')[0] === '2Mbit', 'the new cap on r0', 5000);
    const clients = await bus.request('/portal/clients', {});
    const me = clients.all('client').map((t) => t.value as Message)[0]!;
    expect(me.int('rate-down')).toBe(2_000_000);
    expect(Number(me.int('expires')) - Number(me.int('since'))).toBe(120);
    await bus.request('/portal/logout', { ip });
    await until(() => guestCeils('r0').length === 0, 'the guest class gone', 5000);
    // a guest without a session: /portal/limits says so
    const none = await bus.request('/portal/limits', { ip, 'rate-down': 1 });
    expect(none.str('error')).toMatch(/has no session/);
  });
});
