import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mailProxyApp } from '../../../src/apps/mailproxy/app.js';
import { Bus } from '../../../src/core/bus.js';
import { isMetanetError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/log.js';
import {
  type FirewallService,
  installFirewallService,
  readOwner,
} from '../../../src/services/firewall/index.js';
import { have } from '../../support/env.js';
import { Lab, REPO_ROOT } from '../../support/lab.js';
import { waitForLine } from '../../support/wait.js';

/**
 * One firewall table, one owner (docs/services/firewall.md, "Ownership"): a second installer of
 * the same table — another firewall in this process, the mail proxy's `installFirewall`, another
 * process — fails with EEXIST naming the owner and leaves the table (and its clients) alone; a
 * dead owner's table is taken over, as a restarting portal needs.
 */
const ok = have(['nft', 'ip'], { root: true });

describe.skipIf(!ok)('firewall table ownership (real nft in a lab router)', () => {
  let lab: Lab;
  const buses: Bus[] = [];
  const services: FirewallService[] = [];
  const ip = '10.77.0.10';
  const mac = '02:00:00:00:00:0a';

  const nft = (): string[] => ['ip', 'netns', 'exec', lab.router, 'nft'];
  const bus = (name: string): Bus => {
    const b = new Bus({ name, logger: silentLogger });
    buses.push(b);
    return b;
  };
  const install = async (
    b: Bus,
    extra: { table?: string; stateFile?: string } = {},
  ): Promise<FirewallService> => {
    const fw = await installFirewallService(b, {
      lan: 'r0',
      portal: { address: lab.routerLanIp, port: 8080 },
      nft: nft(),
      ...extra,
    });
    services.push(fw);
    return fw;
  };
  const auth4 = async (table = 'metanet'): Promise<string> =>
    (await lab.exec(lab.router, 'nft', ['list', 'set', 'inet', table, 'auth4'])).stdout;
  const refusal = async (p: Promise<unknown>): Promise<Error> => {
    try {
      await p;
    } catch (e) {
      return e as Error;
    }
    throw new Error('expected the install to be refused');
  };

  beforeAll(async () => {
    lab = await Lab.create({ addr: true });
  });

  afterAll(async () => {
    for (const s of services) await s.close().catch(() => {});
    await lab?.exec(lab.router, 'nft', ['delete', 'table', 'inet', 'metanet']).catch(() => {});
    for (const b of buses) await b.close();
    await lab?.close();
  });

  it('a second firewall on the same table in this process is refused, naming the owner; the clients stay', async () => {
    const portal = bus('portal');
    const fw = await install(portal);
    expect(fw.ruleset).toMatch(
      /comment "metanet owner pid=\d+ start=\d+ daemon=portal name=\/system\/firewall"/,
    );
    expect(await readOwner(nft(), 'metanet')).toMatchObject({ pid: process.pid, daemon: 'portal' });
    await portal.request('/system/firewall/allow', { ip, mac, timeout: 600 });
    const e = await refusal(install(bus('second')));
    expect(isMetanetError(e, 'EEXIST')).toBe(true);
    expect(e.message).toMatch(
      /table inet metanet belongs to daemon "portal" \(pid \d+, firewall \/system\/firewall\)/,
    );
    expect(await auth4()).toContain(`${ip} . ${mac}`);
    // Another table is another owner's business.
    const other = await install(bus('other'), { table: 'other' });
    await other.close({ removeTable: true });
  });

  it("the mail proxy's installFirewall on the portal's table fails loudly and drops nobody", async () => {
    const proxy = bus('mailproxy');
    const e = await refusal(
      mailProxyApp.start(
        proxy,
        {
          port: 0,
          address: '127.0.0.1',
          installFirewall: { lan: 'r0', portal: { address: lab.routerLanIp, port: 8080 }, nft: nft() },
        },
        { dir: undefined, log: silentLogger },
      ),
    );
    expect(isMetanetError(e, 'EEXIST')).toBe(true);
    expect(e.message).toContain('daemon "portal"');
    expect(await auth4()).toContain(`${ip} . ${mac}`);
  });

  it('the owner closed (a restart in the same process): the next install takes the table over', async () => {
    await services.shift()!.close();
    const again = await install(bus('portal2'), {});
    expect(again.ruleset).toContain('daemon=portal2');
    expect(await readOwner(nft(), 'metanet')).toMatchObject({ daemon: 'portal2' });
    await again.close();
    services.splice(services.indexOf(again), 1);
  });

  it('another process takes a released table; refused while it runs, taken over (with the state file) once it is killed', async () => {
    const stateFile = join(lab.dir, 'fw-state.json');
    // The table is still marked with this (running) process, but its firewall closed and released
    // it (the owner set is empty): another process may take it (a portal moved to its own process).
    expect(await readOwner(nft(), 'metanet')).toMatchObject({ pid: process.pid });
    expect(
      (await lab.exec(lab.router, 'nft', ['list', 'set', 'inet', 'metanet', 'owner'])).stdout,
    ).not.toMatch(/elements/);
    const child = lab.nodeScript(
      lab.router,
      join(REPO_ROOT, 'test/services/firewall/fixtures/owner-child.ts'),
      [stateFile, 'r0', lab.routerLanIp, '10.77.0.11', '02:00:00:00:00:0b'],
    );
    const line = await waitForLine(child, /^owner (ready|failed)/, 20_000);
    expect(line).toMatch(/^owner ready \d+$/);
    const pid = Number(line.split(' ')[2]);
    expect(await readOwner(['ip', 'netns', 'exec', lab.router, 'nft'], 'metanet')).toMatchObject({
      pid,
      daemon: 'ownerchild',
    });
    const e = await refusal(install(bus('portal3'), { stateFile }));
    expect(isMetanetError(e, 'EEXIST')).toBe(true);
    expect(e.message).toContain(`daemon "ownerchild" (pid ${pid}`);
    expect(await auth4()).toContain('10.77.0.11 . 02:00:00:00:00:0b');
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await gone;
    // ip netns exec forks: make sure the node process itself is gone.
    for (let i = 0; i < 100; i++) {
      try {
        process.kill(pid, 0);
        await new Promise((r) => setTimeout(r, 20));
      } catch {
        break;
      }
    }
    const fw = await install(bus('portal3'), { stateFile });
    expect(fw.ruleset).toContain('daemon=portal3');
    expect(await auth4()).toContain('10.77.0.11 . 02:00:00:00:00:0b'); // its client, from the state file
  });

  it('a table without an owner (an older version, or made by hand) is taken over', async () => {
    for (const s of services.splice(0)) await s.close();
    await lab.exec(lab.router, 'nft', ['delete', 'table', 'inet', 'metanet']);
    expect((await lab.exec(lab.router, 'nft', ['add', 'table', 'inet', 'metanet'])).code).toBe(0);
    expect(await readOwner(nft(), 'metanet')).toBeUndefined();
    const fw = await install(bus('portal4'));
    expect(await readOwner(nft(), 'metanet')).toMatchObject({ daemon: 'portal4', pid: process.pid });
    await fw.close();
  });
});
