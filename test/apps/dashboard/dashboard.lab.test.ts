import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADDR, GatewayLab, type Lease, REPO_ROOT, waitForLine } from '../../../examples/gateway-lab/lab.js';
import { Bus } from '../../../src/core/bus.js';
import { silentLogger } from '../../../src/core/log.js';
import type { Message } from '../../../src/core/message.js';
import { attachClient } from '../../../src/ipc/daemon.js';
import { have } from '../../support/env.js';

/**
 * The dashboard in the gateway lab (examples/gateway-lab/lab.ts): the shipped examples/gateway.json
 * run by `metanet up` in the router (dhcpd, dns, portal), the dashboard as its own process next to
 * it (`src/apps/dashboard/main.ts` with a dashboard config: it is not in the registry yet) on the
 * router's LAN address with an operator password, and a headless Chromium in the LAN client's
 * namespace as the operator. A guest logs in and appears on the page live (SSE); a deauth from the
 * page logs it out (`portal:/portal/logged-out` reason `operator`). Screenshot: docs/apps/dashboard.png.
 */
const ok = have(['ip', 'udhcpc', 'dnsmasq', 'curl', 'nft', 'conntrack', 'chromium'], { root: true });
const PASSWORD = 'lab operator password';
const URL_ = `http://${ADDR.lan}:8081/`;

describe.skipIf(!ok)('dashboard lab: the operator page in headless Chromium', () => {
  let lab: GatewayLab;
  let bus: Bus;
  let browser: Browser | undefined;
  let page: Page;
  let guest: Lease;
  let guestMac: string;

  beforeAll(async () => {
    lab = await GatewayLab.create({ gatewayLog: 'warn' });
    await lab.startGateway();
    bus = new Bus({ name: `dashlab${process.pid}`, logger: silentLogger });
    attachClient(bus, { dir: lab.sockDir });
    const config = lab.file(
      'dashboard.json',
      JSON.stringify({
        listen: `${ADDR.lan}:8081`,
        password: PASSWORD,
        historyFile: join(lab.stateDir, 'dashboard.history'),
        portal: 'portal',
        deny: ['10.20.0.0/24'],
        sampleSeconds: 2,
      }),
    );
    const dash = lab.spawn(
      lab.ns.router,
      process.execPath,
      [
        '--import',
        'tsx',
        join(REPO_ROOT, 'src/apps/dashboard/main.ts'),
        '--config',
        config,
        '--dir',
        lab.sockDir,
      ],
      { env: { ...process.env, METANET_LOG: 'warn' } },
    );
    expect(await waitForLine(dash, /^dashboard ready/, 20_000, 'the dashboard')).toBe(
      `dashboard ready ${ADDR.lan}:8081`,
    );
    const lan = await lab.udhcpc(lab.ns.lan1);
    if (!lan) throw new Error('lan1: no DHCP lease');
    await lab.applyLease(lab.ns.lan1, lan);
    const g = await lab.udhcpc(lab.ns.guest1);
    if (!g) throw new Error('guest1: no DHCP lease');
    await lab.applyLease(lab.ns.guest1, g);
    guest = g;
    guestMac = await lab.mac(lab.ns.guest1);
    const wrapper = lab.file(
      'chromium-lan1.sh',
      `#!/bin/sh\nexec ip netns exec ${lab.ns.lan1} /usr/bin/chromium "$@"\n`,
      0o755,
    );
    browser = await chromium.launch({
      executablePath: wrapper,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking'],
    });
    const ctx = await browser.newContext({
      httpCredentials: { username: 'operator', password: PASSWORD },
      viewport: { width: 1400, height: 900 },
    });
    page = await ctx.newPage();
  }, 60_000);

  afterAll(async () => {
    await browser?.close().catch(() => {});
    await bus?.close(100);
    await lab?.close();
  });

  it('the page loads behind the operator password, and the charts draw', async () => {
    const bare = await lab.curl(lab.ns.lan1, URL_);
    expect(bare.code).toBe(401);
    await page.goto(URL_);
    expect(await page.textContent('h1')).toBe('MetaNet gateway');
    await page.waitForSelector('#live:not(.off)', { timeout: 10_000 });
    for (const res of ['hour', 'day', 'month']) {
      const canvas = page.locator(`#chart-${res} canvas`);
      expect(await canvas.count(), res).toBeGreaterThan(0);
    }
    // the sample taken at start is a point of each chart already
    await page.waitForFunction(
      () => Number(document.getElementById('chart-hour')?.dataset.points) >= 1,
      null,
      {
        timeout: 15_000,
      },
    );
  });

  it('a guest that logs in appears live (SSE), without a reload', async () => {
    await page.evaluate(() => {
      (window as unknown as { marker: number }).marker = 42;
    });
    expect(await page.locator(`tr[data-mac="${guestMac}"]`).count()).toBe(0);
    const points = Number(await page.getAttribute('#chart-hour', 'data-points'));
    const r = await bus.request('portal:/portal/authorize', { ip: guest.ip });
    expect(r.str('mac')).toBe(guestMac);
    await page.waitForSelector(`tr[data-mac="${guestMac}"]`, { timeout: 10_000 });
    expect(await page.textContent(`tr[data-mac="${guestMac}"] td.ip`)).toBe(guest.ip);
    expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(42);
    // some traffic for the charts and the rate column
    for (let i = 0; i < 5; i++)
      expect((await lab.curl(lab.ns.guest1, 'http://www.example.test/')).code).toBe(200);
    // the guest network gets no answer from the dashboard, logged in or not
    expect((await lab.curl(lab.ns.guest1, URL_)).code).toBeLessThan(0);
    // samples every 2 s, one point per 10 s: the hour chart grows without a reload
    await page.waitForFunction(
      (n) => Number(document.getElementById('chart-hour')?.dataset.points) > n,
      points,
      { timeout: 20_000 },
    );
  });

  it("a guest's own history: its chart draws; its rate now shows while it browses", async () => {
    // steady traffic from the guest while the page is looked at
    const browsing = lab.spawn(lab.ns.guest1, 'sh', [
      '-c',
      'while :; do curl -s -o /dev/null http://www.example.test/; sleep 0.05; done',
    ]);
    try {
      await page.click(`tr[data-mac="${guestMac}"] td.mac`);
      await page.waitForSelector('#chart-guest canvas', { timeout: 10_000 });
      expect(await page.textContent('#guest-mac')).toBe(guestMac);
      await page.waitForFunction(
        (mac) => {
          const rate = document.querySelector(`tr[data-mac="${mac}"] td:nth-child(7)`)?.textContent ?? '';
          return rate !== '' && !rate.startsWith('0 bit/s');
        },
        guestMac,
        { timeout: 15_000 },
      );
      await page.screenshot({ path: join(REPO_ROOT, 'docs/apps/dashboard.png'), fullPage: true });
    } finally {
      browsing.kill();
    }
  });

  it('a deauth from the page logs the guest out (reason operator)', async () => {
    let got!: (m: Message) => void;
    const seen = new Promise<Message>((r) => (got = r));
    const h = bus.listen(
      'portal:/portal/logged-out',
      (m) => {
        if (m.str('ip') === guest.ip) got(m);
      },
      { identity: { test: 'dashboard-lab' } },
    );
    await h.ready;
    try {
      await page.click(`tr[data-mac="${guestMac}"] button.deauth`);
      const m = await Promise.race([
        seen,
        new Promise<never>((_, no) => setTimeout(() => no(new Error('no /portal/logged-out')), 10_000)),
      ]);
      expect(m.str('reason')).toBe('operator');
      expect(m.str('mac')).toBe(guestMac);
    } finally {
      h.remove();
    }
    await page.waitForSelector(`tr[data-mac="${guestMac}"]`, { state: 'detached', timeout: 10_000 });
    expect(await page.textContent('#message')).toContain('deauth');
    expect((await lab.curl(lab.ns.guest1, 'http://www.example.test/')).code).toBe(302); // captive again
  });
});
