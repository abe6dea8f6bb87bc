import { performance } from 'node:perf_hooks';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADDR,
  type Client,
  GatewayLab,
  INTERNET_HELLO,
  type Lease,
} from '../../../examples/gateway-lab/lab.js';
import { Bus } from '../../../src/core/bus.js';
import { silentLogger } from '../../../src/core/log.js';
import type { Message } from '../../../src/core/message.js';
import { attachClient } from '../../../src/ipc/daemon.js';
import { have } from '../../support/env.js';

/**
 * The shipped examples/gateway.json (dhcpd, dns, portal) run by `metanet up` in the router of the
 * gateway lab (examples/gateway-lab/lab.ts): real udhcpc clients on a LAN and a guest bridge, a
 * headless Chromium guest, an "internet" with a web server and dnsmasq. One lab for the file.
 */
const ok = have(['ip', 'udhcpc', 'dnsmasq', 'curl', 'nft', 'conntrack', 'chromium'], { root: true });
const URL_ = 'http://www.example.test/';
const PORTAL = `http://${ADDR.guest}:8080/`;

describe.skipIf(!ok)('gateway lab: examples/gateway.json with metanet up', () => {
  let lab: GatewayLab;
  let bus: Bus;
  let browser: Browser | undefined;
  const leases = new Map<Client, Lease>();

  /** A lease for a client (once), configured on its c0. */
  const leaseOf = async (c: Client): Promise<Lease> => {
    const known = leases.get(c);
    if (known) return known;
    const l = await lab.udhcpc(lab.ns[c]);
    if (!l) throw new Error(`${c}: no DHCP lease`);
    await lab.applyLease(lab.ns[c], l);
    leases.set(c, l);
    return l;
  };
  const clients = async (): Promise<Message[]> =>
    (await bus.request('portal:/portal/clients', {})).all('client').map((t) => t.value as Message);
  /** Attach a listener to a daemon's mailbox now; `next` resolves with the first matching message. */
  const expectMessage = async (
    address: string,
    match: (m: Message) => boolean,
    ms: number,
  ): Promise<{ next: Promise<Message> }> => {
    let got!: (m: Message) => void;
    const seen = new Promise<Message>((r) => (got = r));
    const h = bus.listen(
      address,
      (m) => {
        if (match(m)) got(m);
      },
      { identity: { test: 'gateway-lab' } },
    );
    await h.ready;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no matching message on ${address} within ${ms} ms`)), ms);
    });
    const next = Promise.race([seen, timeout]).finally(() => {
      clearTimeout(timer);
      h.remove();
    });
    next.catch(() => {}); // a test that fails before awaiting it reports its own error
    return { next };
  };

  beforeAll(async () => {
    lab = await GatewayLab.create({ gatewayLog: 'warn' });
    const t0 = performance.now();
    const gw = await lab.startGateway();
    process.stderr.write(`${gw.line}; ready after ${Math.round(performance.now() - t0)} ms (tsx)\n`);
    expect(gw.line).toMatch(/^gateway ready: dhcpd dns portal \(\d+ ms\)$/);
    bus = new Bus({ name: `gwlabtest${process.pid}`, logger: silentLogger });
    attachClient(bus, { dir: lab.sockDir });
  }, 45_000);

  afterAll(async () => {
    // The gateway runs with METANET_LOG=warn: whatever it logged is worth seeing.
    const log = lab
      ?.gatewayLogTail(30)
      .replace(/^gateway ready: .*\n?/m, '')
      .trim();
    if (log) process.stderr.write(`gateway log:\n${log}\n`);
    await browser?.close().catch(() => {});
    await bus?.close(100);
    await lab?.close();
  });

  it('(a) a headless Chromium guest: DHCP, www.example.test → splash → accept → the internet', async () => {
    const lease = await leaseOf('guest1');
    expect(lease.ip).toMatch(/^10\.20\.0\.\d+$/);
    expect(lease.prefix).toBe(24);
    expect(lease.router).toEqual([ADDR.guest]);
    expect(lease.dns).toEqual([ADDR.guest]);
    expect(lease.captivePortal).toBe(`${PORTAL}api`);
    // Chromium runs inside guest1's namespace (launched after the lease: it then sees the
    // namespace's resolv.conf); playwright drives it over the inherited CDP pipe.
    const wrapper = lab.file(
      'chromium-guest1.sh',
      `#!/bin/sh\nexec ip netns exec ${lab.ns.guest1} /usr/bin/chromium "$@"\n`,
      0o755,
    );
    browser = await chromium.launch({
      executablePath: wrapper,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking'],
    });
    const ctx = await browser.newContext();
    try {
      const page = await ctx.newPage();
      const t0 = performance.now();
      await page.goto(URL_);
      expect(page.url()).toBe(`${PORTAL}?url=${encodeURIComponent(URL_)}`);
      expect(await page.textContent('h1')).toBe("Welcome to the café's Wi-Fi");
      const t1 = performance.now();
      await Promise.all([page.waitForURL(URL_), page.click('#accept')]);
      expect(await page.textContent('#hello')).toBe(INTERNET_HELLO);
      process.stderr.write(
        `chromium: ${URL_} → splash ${Math.round(t1 - t0)} ms; accept → internet ${Math.round(performance.now() - t1)} ms\n`,
      );
    } finally {
      await ctx.close();
    }
    const mac = await lab.mac(lab.ns.guest1);
    expect((await clients()).map((c) => [c.str('ip'), c.str('mac')])).toContainEqual([lease.ip, mac]);
  });

  it('(b) a guest resolves names through the router’s forwarder before login', async () => {
    const lease = await leaseOf('guest2');
    expect(lease.dns).toEqual([ADDR.guest]);
    expect((await lab.curl(lab.ns.guest2, URL_)).code).toBe(302); // captive: not logged in
    const before = await dnsQueries();
    const r = await lab.resolve(lab.ns.guest2, 'www.example.test', ADDR.guest);
    expect(r.addresses).toEqual([ADDR.inet]);
    // The system resolver too (resolv.conf from the lease → the router).
    const getent = await lab.exec(lab.ns.guest2, 'getent', ['ahostsv4', 'news.example.test']);
    expect(getent.code, getent.stderr).toBe(0);
    expect(getent.stdout.split(/\s+/)[0]).toBe(ADDR.inet);
    expect(await dnsQueries()).toBeGreaterThan(before);
    expect((await clients()).map((c) => c.str('ip'))).not.toContain(lease.ip);
  });

  it('(c) a DHCP client on the WAN side gets no lease', async () => {
    const wanMac = await lab.mac(lab.ns.inet, 'i0');
    const seen: Message[] = [];
    const spy = bus.listen('dhcpd:/dhcpd/packet', (m) => void seen.push(m), { identity: { test: 'wan' } });
    await spy.ready;
    const rx = async (): Promise<number> =>
      Number((await lab.exec(lab.ns.router, 'cat', ['/sys/class/net/eth0/statistics/rx_packets'])).stdout);
    const rx0 = await rx();
    const r = await lab.udhcpcRun(lab.ns.inet, 'i0', { tries: 3, captivePortal: false });
    spy.remove();
    // The DISCOVERs did reach the router's eth0; dhcpd never took them in.
    expect(await rx()).toBeGreaterThanOrEqual(rx0 + 3);
    expect(seen.filter((m) => m.str('mac') === wanMac)).toEqual([]);
    expect(r.lease).toBeUndefined();
    expect(r.events).not.toContain('bound');
    expect(r.code, r.stderr).not.toBe(0);
    // It really asked, three times, and nothing came back.
    expect(r.stderr.match(/broadcasting discover/g), r.stderr).toHaveLength(3);
    expect(r.stderr).not.toMatch(/offer|obtained/i);
  });

  it('(d) a LAN client is never captive', async () => {
    const lease = await leaseOf('lan1');
    expect(lease.ip).toMatch(/^10\.10\.0\.\d+$/);
    expect(lease.router).toEqual([ADDR.lan]);
    expect(lease.dns).toEqual([ADDR.lan]);
    expect(lease.captivePortal).toBeUndefined();
    const r = await lab.curl(lab.ns.lan1, URL_);
    expect(r.code, r.body).toBe(200);
    expect(r.body).toContain(INTERNET_HELLO);
    expect((await clients()).map((c) => c.str('ip'))).not.toContain(lease.ip);
  });

  it('(e) a released lease ends the guest’s portal session', async () => {
    const ns = lab.ns.guest2;
    const lease = await leaseOf('guest2');
    // Log in with curl: redirect → splash (token) → POST /accept → 303.
    const redirect = await lab.curl(ns, URL_);
    expect(redirect.code).toBe(302);
    const splash = await lab.curl(ns, redirect.location);
    const csrf = /name="csrf" value="([^"]+)"/.exec(splash.body)?.[1];
    expect(csrf).toBeTruthy();
    const login = await lab.curl(ns, `${PORTAL}accept`, [
      '-d',
      `csrf=${encodeURIComponent(csrf!)}&url=${encodeURIComponent(URL_)}`,
    ]);
    expect(login.code).toBe(303);
    expect((await lab.curl(ns, URL_)).body).toContain(INTERNET_HELLO);
    expect((await clients()).map((c) => c.str('ip'))).toContain(lease.ip);

    const out = await expectMessage('portal:/portal/logged-out', (m) => m.str('ip') === lease.ip, 10_000);
    // udhcpc -R: bound again (the same address), stopped: DHCPRELEASE.
    const again = await lab.udhcpc(ns, 'c0', { release: true });
    expect(again?.ip).toBe(lease.ip);
    const m = await out.next;
    expect(m.str('reason')).toBe('lease');
    expect(m.str('mac')).toBe(await lab.mac(ns));
    expect((await clients()).map((c) => c.str('ip'))).not.toContain(lease.ip);
    const after = await lab.curl(ns, URL_);
    expect(after.code).toBe(302);
    expect(after.location).toBe(`${PORTAL}?url=${encodeURIComponent(URL_)}`);
    leases.delete('guest2');
  });

  /** The forwarder's query counter, from the gateway's status. */
  async function dnsQueries(): Promise<number> {
    const r = await bus.request('gateway:/gateway/status', {});
    const dns = r
      .all('app')
      .map((t) => t.value as Message)
      .find((a) => a.str('name') === 'dns');
    if (!dns) throw new Error(`no dns app in the gateway status: ${r}`);
    return Number(dns.int('queries'));
  }
});
