import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { MetricFamily, MetricValue } from '../../../src/apps/app.js';
import { parseConfig } from '../../../src/apps/portal/config.js';
import { Guestbook } from '../../../src/apps/portal/guestbook.js';
import {
  type Counters,
  counterKey,
  defaultLimits,
  Lifecycle,
  REASONS,
} from '../../../src/apps/portal/lifecycle.js';
import { MacLists } from '../../../src/apps/portal/maclists.js';
import { firewallMetrics, portalMetrics } from '../../../src/apps/portal/metrics.js';
import { Sessions } from '../../../src/apps/portal/sessions.js';
import { attachWeb } from '../../../src/apps/portal/web.js';
import { Bus } from '../../../src/core/bus.js';
import { STOP } from '../../../src/core/listener.js';
import { silentLogger } from '../../../src/core/log.js';
import { Message } from '../../../src/core/message.js';
import {
  CHANGE_BUCKETS,
  CHANGE_OPS,
  type ChangeCount,
  type ChangeOp,
} from '../../../src/services/firewall/index.js';

/**
 * The portal's metric families, in process: the real guestbook, web part and lifecycle on a real
 * bus; the firewall, the neighbour table (a command prefix that prints an ARP table) and the
 * auth mailbox are stand-ins. Requests are posted as the HTTP service would.
 */
const T0 = 1_800_000_000_000;
const IP_A = '10.0.0.10';
const MAC_A = '02:00:00:00:00:0a';
const IP_B = '10.0.0.11';
const MAC_B = '02:00:00:00:00:0b';
const ARP = [
  'IP address       HW type     Flags       HW address            Mask     Device',
  `${IP_A}        0x1         0x2         ${MAC_A}     *        x`,
  `${IP_B}        0x1         0x2         ${MAC_B}     *        x`,
].join('\n');

function setup() {
  let now = T0;
  const clock = (): number => now;
  const bus = new Bus({ name: 'portal-metrics', logger: silentLogger });
  const config = parseConfig({
    address: '10.0.0.1',
    lan: 'x',
    portalHost: 'portal.test',
    cutDelayMs: 10_000,
    stockAuth: false,
    trustedMacs: ['02:00:00:00:00:01', '02:00:00:00:00:02'],
    blockedMacs: ['02:00:00:00:00:03'],
    // `<prefix> cat /proc/net/arp` prints the stand-in table.
    commandPrefix: ['sh', '-c', `printf '%s\\n' "${ARP.replaceAll('\n', '" "')}"`, 'sh'],
  });
  const sessions = new Sessions(undefined, clock, defaultLimits(config));
  const book = new Guestbook(bus, config, sessions, clock);
  bus.append('/system/firewall/allow', async (m, ctx) => {
    await ctx.reply({ ip: m.str('ip') });
    return STOP;
  });
  bus.append('/system/firewall/deny', async (_m, ctx) => {
    await ctx.reply({ removed: true });
    return STOP;
  });
  let accept = false;
  bus.append('/portal/auth', async (_m, ctx) => {
    await ctx.reply(accept ? { ok: true } : { ok: false, reason: 'not today' });
    return STOP;
  });
  const counts = new Map<string, { up: number; down: number }>();
  const counters = async (): Promise<Counters> => ({
    loaded: 1,
    clients: new Map(
      [...counts].map(([k, v]) => [k, { packetsUp: 0, up: v.up, packetsDown: 0, down: v.down }]),
    ),
  });
  const life = new Lifecycle(book, { checkSeconds: config.idleCheckSeconds, counters, now: clock });
  const macs = new MacLists(bus, config, book, clock);
  const web = attachWeb(bus, config, book, (mac) => macs.isTrusted(mac));
  const families = portalMetrics(book.counts, {
    guestsOnline: () => sessions.list().length,
    macs: (list) => macs.list(list).length,
  });

  let seq = 0;
  /** One request as the HTTP service posts it; the answer's code and body. */
  async function request(
    ip: string,
    host: string,
    method: string,
    path: string,
    body = '',
  ): Promise<{ code: number; data: string }> {
    const client = `/test/client${++seq}`;
    let answer: Message | undefined;
    const h = bus.append(`${client}/response`, (m) => {
      answer = m;
    });
    bus.post(
      '/portal/http/request',
      new Message([
        { tag: 'clientname', type: 'str', value: client },
        { tag: 'method', type: 'str', value: method },
        { tag: 'Host', type: 'str', value: host },
        { tag: 'path', type: 'str', value: path },
        { tag: 'query', type: 'str', value: '' },
        { tag: 'headers', type: 'list', value: new Message([]) },
        { tag: 'body', type: 'bytes', value: new Uint8Array(Buffer.from(body)) },
        { tag: 'peerhost', type: 'str', value: ip },
      ]),
    );
    for (let i = 0; i < 200 && !answer; i++) {
      await bus.settled();
      if (!answer) await new Promise((r) => setTimeout(r, 10));
    }
    h.remove();
    if (!answer) throw new Error(`no answer to ${method} ${path}`);
    const d = answer.get('data');
    return {
      code: answer.int('code'),
      data:
        d?.type === 'bytes' ? Buffer.from(d.value as Uint8Array).toString('utf8') : String(d?.value ?? ''),
    };
  }

  return {
    bus,
    book,
    life,
    web,
    families,
    request,
    accept: (v: boolean) => {
      accept = v;
    },
    traffic: (ip: string, mac: string, up: number, down: number) =>
      counts.set(counterKey(ip, mac), { up, down }),
    wait: (s: number) => {
      now += s * 1000;
    },
  };
}

/** Every family's value now: `name` or `name{label="v"}` → number. */
async function scrape(families: readonly MetricFamily[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const labelText = (labels: Readonly<Record<string, string>>): string =>
    Object.entries(labels)
      .map(([k, x]) => `${k}="${x}"`)
      .join(',');
  for (const f of families) {
    if (f.type === 'histogram') {
      for (const s of await f.collect()) {
        const l = labelText(s.labels);
        let total = 0;
        for (const [i, le] of [...f.buckets.map(String), '+Inf'].entries()) {
          total += s.counts[i] ?? 0;
          out[`${f.name}_bucket{${l},le="${le}"}`] = total;
        }
        out[`${f.name}_sum{${l}}`] = s.sum;
        out[`${f.name}_count{${l}}`] = total;
      }
      continue;
    }
    const v: MetricValue = await f.collect();
    if (typeof v === 'number') out[f.name] = v;
    else
      for (const s of v) {
        const l = Object.entries(s.labels)
          .map(([k, x]) => `${k}="${x}"`)
          .join(',');
        out[`${f.name}{${l}}`] = s.value;
      }
  }
  return out;
}

const csrfOf = (html: string): string => {
  const t = /name="csrf" value="([^"]+)"/.exec(html)?.[1];
  if (!t) throw new Error('no csrf token in the page');
  return t;
};

describe('the portal’s metric families', () => {
  it('names, types and labels follow docs/metrics.md’s conventions; no per-guest label', () => {
    const { families, web } = setup();
    try {
      for (const f of families) {
        expect(f.name).toMatch(/^metanet_portal_[a-z_]+$/);
        expect(f.name.endsWith('_total')).toBe(f.type === 'counter');
        for (const l of f.labels ?? []) expect(['reason', 'direction']).toContain(l);
      }
      expect(families.map((f) => f.name)).toEqual(
        expect.arrayContaining([
          'metanet_portal_guests_online',
          'metanet_portal_logins_total',
          'metanet_portal_logouts_total',
          'metanet_portal_redirects_total',
          'metanet_portal_splash_pages_total',
          'metanet_portal_auth_refusals_total',
          'metanet_portal_api_requests_total',
          'metanet_portal_bytes_total',
          'metanet_portal_trusted_macs',
          'metanet_portal_blocked_macs',
        ]),
      );
    } finally {
      web.close();
    }
  });

  it('count redirects, splash pages, refusals, logins, API requests, bytes and logouts by reason', async () => {
    const t = setup();
    try {
      const m0 = await scrape(t.families);
      expect(m0).toMatchObject({
        metanet_portal_guests_online: 0,
        metanet_portal_logins_total: 0,
        metanet_portal_redirects_total: 0,
        metanet_portal_splash_pages_total: 0,
        metanet_portal_auth_refusals_total: 0,
        metanet_portal_api_requests_total: 0,
        'metanet_portal_bytes_total{direction="up"}': 0,
        'metanet_portal_bytes_total{direction="down"}': 0,
        metanet_portal_trusted_macs: 2,
        metanet_portal_blocked_macs: 1,
      });
      for (const r of [...REASONS, 'other'])
        expect(m0[`metanet_portal_logouts_total{reason="${r}"}`]).toBe(0);

      // A foreign host: redirected. The portal's own page: the splash.
      expect((await t.request(IP_A, 'example.com', 'GET', '/news')).code).toBe(302);
      const splash = await t.request(IP_A, 'portal.test', 'GET', '/');
      expect(splash.code).toBe(200);
      // Refused by the auth mailbox (the splash again, with the reason), then accepted.
      const refused = await t.request(IP_A, 'portal.test', 'POST', '/accept', `csrf=${csrfOf(splash.data)}`);
      expect(refused.code).toBe(403);
      t.accept(true);
      const ok = await t.request(IP_A, 'portal.test', 'POST', '/accept', `csrf=${csrfOf(refused.data)}`);
      expect(ok.code).toBe(303);
      expect((await t.request(IP_A, 'portal.test', 'GET', '/api')).code).toBe(200);
      expect(await scrape(t.families)).toMatchObject({
        metanet_portal_guests_online: 1,
        metanet_portal_logins_total: 1,
        metanet_portal_redirects_total: 1,
        metanet_portal_splash_pages_total: 2,
        metanet_portal_auth_refusals_total: 1,
        metanet_portal_api_requests_total: 1,
      });

      // Bytes move with the lifecycle's samples, not before.
      t.traffic(IP_A, MAC_A, 100, 5000);
      expect((await scrape(t.families))['metanet_portal_bytes_total{direction="down"}']).toBe(0);
      t.wait(30);
      await t.life.check();
      let m = await scrape(t.families);
      expect(m['metanet_portal_bytes_total{direction="up"}']).toBe(100);
      expect(m['metanet_portal_bytes_total{direction="down"}']).toBe(5000);

      // The same device logging in again: a new session, the bytes counted so far stay counted.
      await t.book.login(IP_A, MAC_A, 3600);
      t.traffic(IP_A, MAC_A, 150, 6000);
      t.wait(30);
      await t.life.check();
      m = await scrape(t.families);
      expect(m.metanet_portal_logins_total).toBe(2);
      expect(m['metanet_portal_bytes_total{direction="up"}']).toBe(150);
      expect(m['metanet_portal_bytes_total{direction="down"}']).toBe(6000);

      // Logouts by reason; an unknown reason is `other`; the bytes of ended sessions stay.
      await t.book.login(IP_B, MAC_B, 3600);
      expect((await scrape(t.families)).metanet_portal_guests_online).toBe(2);
      await t.book.end(IP_A, 'operator');
      await t.book.end(IP_B, 'kicked by hand');
      m = await scrape(t.families);
      expect(m).toMatchObject({
        metanet_portal_guests_online: 0,
        metanet_portal_logins_total: 3,
        'metanet_portal_logouts_total{reason="operator"}': 1,
        'metanet_portal_logouts_total{reason="other"}': 1,
        'metanet_portal_logouts_total{reason="idle"}': 0,
        'metanet_portal_bytes_total{direction="up"}': 150,
        'metanet_portal_bytes_total{direction="down"}': 6000,
      });

      // The lifecycle's own endings count under their reason.
      await t.book.login(IP_B, MAC_B, 60);
      t.wait(61);
      await t.life.check();
      expect((await scrape(t.families))['metanet_portal_logouts_total{reason="session"}']).toBe(1);
    } finally {
      t.web.close();
      await t.bus.settled();
    }
  });
});

describe('the firewall’s families, exported by the portal that owns it', () => {
  it('a latency histogram and errors by op, read from the service’s counters at each scrape', async () => {
    const stats = Object.fromEntries(
      CHANGE_OPS.map((op) => [
        op,
        { count: 0, errors: 0, seconds: 0, buckets: CHANGE_BUCKETS.map(() => 0).concat(0) },
      ]),
    ) as Record<ChangeOp, ChangeCount>;
    const families = firewallMetrics(() => stats);
    expect(families.map((f) => [f.name, f.type, f.labels])).toEqual([
      ['metanet_firewall_change_seconds', 'histogram', ['op']],
      ['metanet_firewall_change_errors_total', 'counter', ['op']],
    ]);
    let m = await scrape(families);
    for (const op of CHANGE_OPS) {
      expect(m[`metanet_firewall_change_seconds_count{op="${op}"}`]).toBe(0);
      expect(m[`metanet_firewall_change_errors_total{op="${op}"}`]).toBe(0);
    }
    // three allows: 1.5 ms, 1.8 ms, 40 ms; one deny refused
    stats.allow.count = 3;
    stats.allow.seconds = 0.0433;
    stats.allow.buckets[1] = 2; // (0.001, 0.002]
    stats.allow.buckets[5] = 1; // (0.02, 0.05]
    stats.deny.errors = 1;
    m = await scrape(families);
    expect(m['metanet_firewall_change_seconds_bucket{op="allow",le="0.001"}']).toBe(0);
    expect(m['metanet_firewall_change_seconds_bucket{op="allow",le="0.002"}']).toBe(2);
    expect(m['metanet_firewall_change_seconds_bucket{op="allow",le="0.02"}']).toBe(2);
    expect(m['metanet_firewall_change_seconds_bucket{op="allow",le="0.05"}']).toBe(3);
    expect(m['metanet_firewall_change_seconds_bucket{op="allow",le="+Inf"}']).toBe(3);
    expect(m['metanet_firewall_change_seconds_count{op="allow"}']).toBe(3);
    expect(m['metanet_firewall_change_seconds_sum{op="allow"}']).toBe(0.0433);
    expect(m['metanet_firewall_change_errors_total{op="deny"}']).toBe(1);
    const doc = readFileSync(new URL('../../../docs/metrics.md', import.meta.url), 'utf8');
    for (const f of families) expect(doc, f.name).toContain(`| \`${f.name}\` |`);
    for (const op of CHANGE_OPS) expect(doc, op).toContain(`\`${op}\``);

    // the portal's list carries them when its firewall's counters are given, not otherwise
    const { book, web } = setup();
    try {
      const gauges = { guestsOnline: () => 0, macs: () => 0 };
      expect(portalMetrics(book.counts, gauges).some((f) => f.name.startsWith('metanet_firewall_'))).toBe(
        false,
      );
      const withFw = portalMetrics(book.counts, { ...gauges, firewall: () => stats });
      expect(withFw.filter((f) => f.name.startsWith('metanet_firewall_'))).toHaveLength(2);
    } finally {
      web.close();
    }
  });
});
