import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { AppHandle, GatewayFacts, Network } from '../../../src/apps/app.js';
import { dashboardApp, startDashboard } from '../../../src/apps/dashboard/app.js';
import { historyBytes } from '../../../src/apps/dashboard/history.js';
import { Bus } from '../../../src/core/bus.js';
import { STOP } from '../../../src/core/listener.js';
import { silentLogger } from '../../../src/core/log.js';

const dir = mkdtempSync(join(tmpdir(), 'mn-dash-server-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const PASSWORD = 'correct horse battery';
const auth = `Basic ${Buffer.from(`operator:${PASSWORD}`).toString('base64')}`;

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}
function http(
  port: number,
  path: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: opts.headers },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Open /events; `next(event)` resolves with the data of the next such event. */
function events(
  port: number,
): Promise<{ next(event: string, ms?: number): Promise<unknown>; close(): void }> {
  return new Promise((resolve, reject) => {
    const waiting: { event: string; fn: (d: unknown) => void }[] = [];
    const req = request(
      { host: '127.0.0.1', port, path: '/events', headers: { authorization: auth } },
      (res) => {
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          buf += d;
          let i = buf.indexOf('\n\n');
          while (i >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const ev = /^event: (.*)$/m.exec(block)?.[1];
            const data = /^data: (.*)$/m.exec(block)?.[1];
            const w = waiting.findIndex((x) => x.event === ev);
            if (w >= 0 && data !== undefined) waiting.splice(w, 1)[0]!.fn(JSON.parse(data));
            i = buf.indexOf('\n\n');
          }
        });
        resolve({
          next: (event, ms = 3000) =>
            new Promise((ok, fail) => {
              const t = setTimeout(() => fail(new Error(`no ${event} event within ${ms} ms`)), ms);
              waiting.push({
                event,
                fn: (d) => {
                  clearTimeout(t);
                  ok(d);
                },
              });
            }),
          close: () => req.destroy(),
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('the dashboard on a bus with a stand-in portal', () => {
  let bus: Bus | undefined;
  let handle: AppHandle | undefined;
  afterEach(async () => {
    await handle?.close();
    await bus?.close(50);
    handle = undefined;
    bus = undefined;
  });

  async function setup() {
    const b = new Bus({ name: 'portal', logger: silentLogger });
    bus = b;
    const clients: Record<string, string | number>[] = [];
    const calls: [string, Record<string, unknown>][] = [];
    b.listen('/portal/clients', async (_m, ctx) => {
      if (ctx.replyTo) await ctx.reply({ count: clients.length, client: clients });
      return STOP;
    });
    for (const verb of ['/portal/logout', '/portal/block', '/portal/trust'])
      b.listen(verb, async (m, ctx) => {
        calls.push([verb, m.without('reply-to').toObject()]);
        if (ctx.replyTo) await ctx.reply({ removed: true, changed: true });
        return STOP;
      });
    const port = 20000 + Math.floor(Math.random() * 20000);
    const historyFile = join(dir, `history-${port}`);
    const config = dashboardApp.parse({
      listen: `127.0.0.1:${port}`,
      password: PASSWORD,
      historyFile,
      portal: 'portal',
      extrusion: 'portal',
      maxGuests: 4,
      sampleSeconds: 1,
    });
    handle = await startDashboard(b, config);
    return { b, port, clients, calls, historyFile };
  }
  const guest = {
    ip: '10.20.0.50',
    mac: '02:00:00:00:00:50',
    hostname: '<img src=x onerror=alert(1)>',
    since: Math.floor(Date.now() / 1000) - 65,
    expires: Math.floor(Date.now() / 1000) + 3600,
    'bytes-up': 1000,
    'bytes-down': 50_000,
    idle: 0,
  };

  it('asks for the operator password, then serves the page, its assets and uPlot from node_modules', async () => {
    const { port } = await setup();
    const no = await http(port, '/');
    expect(no.status).toBe(401);
    expect(no.headers['www-authenticate']).toMatch(/^Basic /);
    expect((await http(port, '/', { headers: { authorization: 'Basic b3A6d3Jvbmc=' } })).status).toBe(401);
    const page = await http(port, '/', { headers: { authorization: auth } });
    expect(page.status).toBe(200);
    expect(page.body).toMatch(/<meta name="csrf-token" content="[A-Za-z0-9_-]{32}">/);
    expect(page.headers['content-security-policy']).toContain("default-src 'self'");
    for (const f of ['uPlot.js', 'uPlot.css', 'dashboard.js', 'dashboard.css']) {
      const r = await http(port, `/static/${f}`, { headers: { authorization: auth } });
      expect(r.status, f).toBe(200);
      expect(r.body.length, f).toBeGreaterThan(100);
    }
    expect((await http(port, '/static/../app.ts', { headers: { authorization: auth } })).status).toBe(404);
  });

  it('lists guests, pushes them on /events when one logs in, and records history', async () => {
    const { b, port, clients, historyFile } = await setup();
    const ev = await events(port);
    try {
      clients.push(guest);
      const pushed = ev.next('guests');
      b.post('/portal/login', { ip: guest.ip, mac: guest.mac });
      const got = (await pushed) as { guests: { mac: string; hostname: string }[] };
      expect(got.guests.map((g) => g.mac)).toEqual([guest.mac]);
      expect(got.guests[0]!.hostname).toBe(guest.hostname); // escaped by the page (textContent)
      const state = JSON.parse((await http(port, '/api/state', { headers: { authorization: auth } })).body);
      expect(state.guests[0]).toMatchObject({ ip: guest.ip, mac: guest.mac, up: 1000, down: 50_000 });
      const hist = JSON.parse(
        (await http(port, '/api/history?res=hour', { headers: { authorization: auth } })).body,
      );
      expect(hist.step).toBe(10);
      expect(hist.t).toHaveLength(360);
      expect(hist.online.filter((v: number | null) => v !== null).length).toBeGreaterThan(0);
      expect((await http(port, '/api/history?res=year', { headers: { authorization: auth } })).status).toBe(
        400,
      );
    } finally {
      ev.close();
    }
    await handle!.close();
    handle = undefined;
    expect(statSync(historyFile).size).toBe(historyBytes(4));
    expect(existsSync(`${historyFile}.tmp`)).toBe(false);
  });

  it("per guest: /api/guest gives the guest's bytes; a logout's last bytes are not lost", async () => {
    const { b, port, clients } = await setup();
    clients.push(guest);
    b.post('/portal/login', { ip: guest.ip, mac: guest.mac });
    const get = async (path: string) => {
      const r = await http(port, path, { headers: { authorization: auth } });
      return { status: r.status, body: JSON.parse(r.body) };
    };
    // sampled every second: the session's baseline, then a delta of 500 up, 7000 down
    await new Promise((r) => setTimeout(r, 1200));
    clients[0] = { ...guest, 'bytes-up': 1500, 'bytes-down': 57_000 };
    await new Promise((r) => setTimeout(r, 1200));
    // then it logs out with 100 bytes more each way, before the next sample
    clients.length = 0;
    b.post('/portal/logged-out', {
      ip: guest.ip,
      mac: guest.mac,
      since: guest.since,
      reason: 'operator',
      'bytes-up': 1600,
      'bytes-down': 57_100,
    });
    await new Promise((r) => setTimeout(r, 1200));
    const g = await get(`/api/guest?mac=${guest.mac.toUpperCase()}&res=day`);
    expect(g.status).toBe(200);
    const sum = (a: (number | null)[]) => a.reduce<number>((n, v) => n + (v ?? 0), 0);
    expect(sum(g.body.up)).toBe(600);
    expect(sum(g.body.down)).toBe(7100);
    const day = (await get('/api/history?res=day')).body;
    expect(sum(day.up)).toBe(600);
    expect(sum(day.logins)).toBe(1);
    expect((await get('/api/guest?mac=02:00:00:00:00:99')).status).toBe(404);
  });

  it('actions: CSRF token required, then the portal verbs (deauth reason operator, block, trust)', async () => {
    const { port, calls } = await setup();
    const page = await http(port, '/', { headers: { authorization: auth } });
    const csrf = /csrf-token" content="([^"]+)"/.exec(page.body)![1]!;
    const post = (body: unknown, headers: Record<string, string> = {}) =>
      http(port, '/api/action', {
        method: 'POST',
        headers: { authorization: auth, 'content-type': 'application/json', ...headers },
        body: JSON.stringify(body),
      });
    expect((await post({ action: 'deauth', target: guest.ip })).status).toBe(403);
    expect(
      (await post({ action: 'deauth', target: guest.ip }, { 'x-csrf-token': 'x'.repeat(32) })).status,
    ).toBe(403);
    expect(calls).toEqual([]);
    expect((await post({ action: 'deauth', target: 'nope' }, { 'x-csrf-token': csrf })).status).toBe(400);
    expect((await post({ action: 'deauth', target: guest.ip }, { 'x-csrf-token': csrf })).status).toBe(200);
    expect((await post({ action: 'block', target: guest.mac }, { 'x-csrf-token': csrf })).status).toBe(200);
    expect((await post({ action: 'trust', target: guest.mac }, { 'x-csrf-token': csrf })).status).toBe(200);
    expect(calls).toEqual([
      ['/portal/logout', { ip: guest.ip, reason: 'operator' }],
      ['/portal/block', { mac: guest.mac }],
      ['/portal/trust', { mac: guest.mac }],
    ]);
  });

  it('lists extrusion detections (followed on /extrusion/detected) live and in the state', async () => {
    const { b, port } = await setup();
    const ev = await events(port);
    try {
      const pushed = ev.next('detection');
      b.post('/extrusion/detected', {
        ip: guest.ip,
        mac: guest.mac,
        rule: 'port-scan',
        count: 100,
        threshold: 100,
        window: 60,
        at: Date.now(),
        action: 'deauth',
      });
      expect(await pushed).toMatchObject({ ip: guest.ip, rule: 'port-scan', action: 'deauth' });
      const state = JSON.parse((await http(port, '/api/state', { headers: { authorization: auth } })).body);
      expect(state.detections).toHaveLength(1);
      expect(state.extrusion).toBe(true);
    } finally {
      ev.close();
    }
  });
});

describe('the dashboard config', () => {
  const net = (name: string, role: Network['role'], address?: string): Network => ({
    name,
    role,
    device: name,
    address,
    prefix: address ? 24 : undefined,
    subnet: address ? `${address.replace(/\.\d+$/, '.0')}/24` : undefined,
    captive: role === 'guest',
  });
  const networks = [net('wan', 'wan'), net('lan', 'lan', '10.10.0.1'), net('guest', 'guest', '10.20.0.1')];
  const gw: GatewayFacts = {
    networks,
    served: networks.slice(1),
    captive: networks.slice(2),
    upstreamDns: [],
    stateDir: '/var/lib/metanet',
    commandPrefix: [],
    enabled: new Set(['portal', 'extrusion', 'dashboard']),
    portal: undefined,
  };
  const from = (s: Record<string, unknown>) =>
    dashboardApp.parse(
      dashboardApp.fromGateway(gw, dashboardApp.section.parse(s) as Record<string, unknown>),
    );

  it('defaults: loopback, no password, the history in stateDir, guests denied', () => {
    const c = from({});
    expect(c).toMatchObject({
      listen: '127.0.0.1:8081',
      historyFile: '/var/lib/metanet/dashboard.history',
      portal: 'portal',
      extrusion: 'extrusion',
      deny: ['10.20.0.0/24'],
      maxGuests: 64,
    });
    expect(c.password).toBeUndefined();
  });

  it('the address rule: the LAN needs a password; the guest network needs allowGuest; never the WAN or 0.0.0.0', () => {
    expect(() => from({ listen: '10.10.0.1:8081' })).toThrow(/needs an operator password/);
    expect(from({ listen: '10.10.0.1:8081', password: 'long enough' }).listen).toBe('10.10.0.1:8081');
    expect(() => from({ listen: '10.20.0.1:8081', password: 'long enough' })).toThrow(/allowGuest/);
    const g = from({ listen: '10.20.0.1:8081', password: 'long enough', allowGuest: true });
    expect(g.deny).toEqual([]);
    expect(() => from({ listen: '0.0.0.0:8081', password: 'long enough' })).toThrow(
      /not the router's address/,
    );
    expect(() => from({ listen: '10.9.9.9:8081', password: 'long enough' })).toThrow(
      /not the router's address/,
    );
    expect(() => from({ listen: 'localhost:8081' })).toThrow(/address:port/);
  });
});
