import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import type { AppHandle, GatewayFacts, Network } from '../../../src/apps/app.js';
import { extrusionApp, startExtrusion } from '../../../src/apps/extrusion/app.js';
import {
  ExtrusionConfigSchema,
  parseExtrusionConfig,
  sectionShape,
} from '../../../src/apps/extrusion/config.js';
import {
  type ConnEvent,
  type Detection,
  type DetectorLimits,
  Detectors,
  ip4,
  PrefixSet,
  type RuleThresholds,
} from '../../../src/apps/extrusion/detectors.js';
import { parseConntrackLine } from '../../../src/apps/extrusion/events.js';
import { extrusionTable } from '../../../src/apps/extrusion/table.js';
import { Bus } from '../../../src/core/bus.js';
import { STOP } from '../../../src/core/listener.js';
import { silentLogger } from '../../../src/core/log.js';
import type { Message } from '../../../src/core/message.js';
import { isIPv4 } from '../../../src/services/dhcp/ip.js';

const DEFAULT_RULES: RuleThresholds = {
  portScanPorts: 100,
  portScanHosts: 250,
  hostsExcept: [80, 443],
  smtpCount: 20,
  smtpPorts: [25, 465, 587],
  floodCount: 1000,
  blocklistCount: 1,
  blocklist: ['198.51.100.0/24', '203.0.113.7'],
};
const DEFAULT_LIMITS: DetectorLimits = { perGuest: 4096, guests: 4096, events: 262_144, sample: 10 };
const G = '10.20.0.23';
const tcp = (src: string, dst: string, dport: number): ConnEvent => ({ src, dst, protonum: 6, dport });
const udp = (src: string, dst: string, dport: number): ConnEvent => ({ src, dst, protonum: 17, dport });

function detectors(
  rules: Partial<RuleThresholds> = {},
  limits: Partial<DetectorLimits> = {},
  windowMs = 60_000,
): Detectors {
  return new Detectors({
    windowMs,
    rules: { ...DEFAULT_RULES, ...rules },
    limits: { ...DEFAULT_LIMITS, ...limits },
    subnets: ['10.20.0.0/24'],
    exclude: ['10.20.0.1'],
  });
}

describe('conntrack event lines', () => {
  const LINES = {
    plain:
      '    [NEW] tcp      6 120 SYN_SENT src=10.20.0.5 dst=10.99.0.1 sport=46256 dport=13 [UNREPLIED] src=10.99.0.1 dst=10.20.0.5 sport=13 dport=46256',
    extended:
      '    [NEW] ipv4     2 tcp      6 120 SYN_SENT src=10.20.0.5 dst=10.99.0.1 sport=46256 dport=13 [UNREPLIED] src=10.99.0.1 dst=10.20.0.5 sport=13 dport=46256 id=2698126121',
    timestamp:
      '[1796526402.176180]\t    [NEW] ipv4     2 tcp      6 120 SYN_SENT src=10.20.0.5 dst=10.99.0.1 sport=46256 dport=13 [UNREPLIED] src=10.99.0.1 dst=10.20.0.5 sport=13 dport=46256 id=2698126121',
    udp: '    [NEW] udp      17 30 src=10.20.0.5 dst=10.20.0.1 sport=40000 dport=53 [UNREPLIED] src=10.20.0.1 dst=10.20.0.5 sport=53 dport=40000',
    icmp: '    [NEW] icmp     1 30 src=10.20.0.5 dst=10.99.0.1 type=8 code=0 id=21097 [UNREPLIED] src=10.99.0.1 dst=10.20.0.5 type=0 code=0 id=21097',
    // DNAT to the portal: the original destination is what counts, not the reply's source
    dnat: '    [NEW] tcp      6 120 SYN_SENT src=10.20.0.5 dst=93.184.216.34 sport=5000 dport=80 [UNREPLIED] src=10.20.0.1 dst=10.20.0.5 sport=8080 dport=5000',
  };

  it('reads the original direction of every format conntrack prints', () => {
    const tcp13 = { src: '10.20.0.5', dst: '10.99.0.1', protonum: 6, dport: 13 };
    expect(parseConntrackLine(LINES.plain)).toEqual(tcp13);
    expect(parseConntrackLine(LINES.extended)).toEqual(tcp13);
    expect(parseConntrackLine(LINES.timestamp)).toEqual(tcp13);
    expect(parseConntrackLine(LINES.udp)).toEqual({
      src: '10.20.0.5',
      dst: '10.20.0.1',
      protonum: 17,
      dport: 53,
    });
    expect(parseConntrackLine(LINES.icmp)).toEqual({
      src: '10.20.0.5',
      dst: '10.99.0.1',
      protonum: 1,
      dport: undefined,
    });
    expect(parseConntrackLine(LINES.dnat)).toMatchObject({ dst: '93.184.216.34', dport: 80 });
  });

  it('refuses what is not a NEW flow', () => {
    for (const l of [
      '',
      'conntrack v1.4.7 (conntrack-tools): 21 flow events have been shown.',
      'NOTICE: Netlink socket buffer size has been set to 4194304 bytes.',
      LINES.plain.replace('[NEW]', '[DESTROY]'),
      LINES.plain.replace('src=10.20.0.5', 'src=10.20.0.500'),
      LINES.plain.replace('dport=13 ', 'dport=70000 '),
      LINES.plain.replace(' 6 120', ' x 120'),
      '    [NEW] tcp      6 120 SYN_SENT',
      '[NEW]',
    ])
      expect(parseConntrackLine(l), l).toBeUndefined();
  });

  const ipArb = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join('.'));
  const eventArb = fc.record({
    src: ipArb,
    dst: ipArb,
    proto: fc.constantFrom(6, 17, 1, 47),
    sport: fc.integer({ min: 1, max: 65535 }),
    dport: fc.integer({ min: 0, max: 65535 }),
    format: fc.constantFrom('plain', 'extended', 'timestamp'),
  });
  type Ev = typeof eventArb extends fc.Arbitrary<infer T> ? T : never;
  const format = (e: Ev): string => {
    const num = e.proto;
    const name = { 6: 'tcp', 17: 'udp', 1: 'icmp', 47: 'gre' }[num];
    const l4 =
      num === 6 || num === 17
        ? [`sport=${e.sport}`, `dport=${e.dport}`]
        : num === 1
          ? ['type=8', 'code=0', `id=${e.sport}`]
          : [];
    const r4 =
      num === 6 || num === 17
        ? [`sport=${e.dport}`, `dport=${e.sport}`]
        : num === 1
          ? ['type=0', 'code=0', `id=${e.sport}`]
          : [];
    const head = e.format === 'plain' ? '' : 'ipv4     2 ';
    const ts = e.format === 'timestamp' ? `[1796526402.${e.sport}]\t` : '';
    const state = num === 6 ? ' SYN_SENT' : '';
    return `${ts}    [NEW] ${head}${name}      ${num} 120${state} src=${e.src} dst=${e.dst} ${l4.join(' ')} [UNREPLIED] src=${e.dst} dst=${e.src} ${r4.join(' ')}`;
  };

  it('fuzz: every generated line reads back as the event it was made from', () => {
    fc.assert(
      fc.property(eventArb, (e) => {
        const got = parseConntrackLine(format(e));
        const num = e.proto;
        expect(got).toEqual({
          src: e.src,
          dst: e.dst,
          protonum: num,
          dport: num === 6 || num === 17 ? e.dport : undefined,
        });
      }),
      { numRuns: 2000 },
    );
  });

  it('fuzz: any text, any cut or mutation of a real line: no throw, and a result is well formed', () => {
    const wellFormed = (l: string): void => {
      const r = parseConntrackLine(l);
      if (r === undefined) return;
      expect(r.src.length).toBeGreaterThan(0);
      expect(r.dst.length).toBeGreaterThan(0);
      expect(Number.isInteger(r.protonum) && r.protonum >= 0 && r.protonum <= 255).toBe(true);
      if (r.dport !== undefined) expect(r.dport >= 0 && r.dport <= 65535).toBe(true);
      if (!r.src.includes(':')) expect(isIPv4(r.src)).toBe(true);
      if (!r.dst.includes(':')) expect(isIPv4(r.dst)).toBe(true);
    };
    fc.assert(fc.property(fc.string({ maxLength: 300 }), wellFormed), { numRuns: 3000 });
    fc.assert(
      fc.property(eventArb, fc.nat(), fc.nat(), fc.string({ maxLength: 8 }), (e, a, b, junk) => {
        const l = format(e);
        const i = a % (l.length + 1);
        const j = i + (b % (l.length - i + 1));
        wellFormed(l.slice(0, i)); // cut
        wellFormed(l.slice(0, i) + junk + l.slice(j)); // spliced
      }),
      { numRuns: 3000 },
    );
  });

  it('ip4 agrees with the dotted-quad regex on any string', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 20 }),
          ipArb,
          fc
            .array(fc.oneof(fc.nat(300).map(String), fc.constant('01')), { maxLength: 5 })
            .map((a) => a.join('.')),
        ),
        (s) => {
          expect(ip4(s) >= 0).toBe(isIPv4(s));
          if (isIPv4(s)) {
            const p = s.split('.').map(Number);
            expect(ip4(s)).toBe(((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0);
          }
        },
      ),
      { numRuns: 3000 },
    );
  });
});

describe('detectors (injected clock)', () => {
  it('port scan: the 100th distinct port in a minute fires, once, with a sample of the newest ports', () => {
    const d = detectors();
    let t = 1_000_000;
    for (let p = 1; p < 100; p++) expect(d.observe(tcp(G, '10.99.0.1', p), (t += 5))).toEqual([]);
    const [hit, ...more] = d.observe(tcp(G, '10.99.0.1', 100), (t += 5));
    expect(more).toEqual([]);
    expect(hit).toMatchObject({
      ip: G,
      rule: 'port-scan',
      measure: 'ports',
      count: 100,
      threshold: 100,
      windowSeconds: 60,
      connections: 100,
      ports: 100,
      hosts: 1,
      first: 1_000_005,
      at: t,
    });
    expect(hit!.sample).toEqual(Array.from({ length: 10 }, (_, i) => `10.99.0.1:${100 - i}/tcp`));
    // not again within the window, however much more it scans
    for (let p = 101; p < 1000; p++) expect(d.observe(tcp(G, '10.99.0.1', p), (t += 5))).toEqual([]);
    // one window after the report: the scan still going on is reported again
    t = hit!.at + 60_000;
    expect(d.observe(tcp(G, '10.99.0.1', 2000), t).map((x) => x.rule)).toEqual(['port-scan']);
    d.check();
  });

  it('port scan by hosts: a sweep of one port over many hosts', () => {
    const d = detectors();
    const out: Detection[] = [];
    for (let h = 1; h <= 250; h++)
      out.push(...d.observe(tcp(G, `10.99.${h >> 8}.${h & 255}`, 445), 1000 + h));
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ rule: 'port-scan', measure: 'hosts', count: 250, ports: 1 });
    expect(out[0]!.sample[0]).toBe('10.99.0.250:445/tcp');
  });

  it('a slow scan that never has 100 ports inside one window is not a scan', () => {
    const d = detectors();
    for (let p = 1; p <= 1000; p++) expect(d.observe(tcp(G, '10.99.0.1', p), p * 700)).toEqual([]);
    expect(d.figures(1000 * 700, G)[0]!.ports).toBeLessThan(100);
  });

  it('SMTP burst: 20 tcp connections to 25/465/587 in the window; udp and other ports do not count', () => {
    const d = detectors();
    let t = 0;
    for (let i = 0; i < 50; i++) d.observe(udp(G, '10.99.0.1', 25), (t += 10));
    for (let i = 0; i < 50; i++) d.observe(tcp(G, '10.99.0.1', 2525), (t += 10));
    const got: Detection[] = [];
    for (let i = 0; i < 19; i++)
      got.push(...d.observe(tcp(G, `10.99.0.${1 + (i % 3)}`, [25, 587, 465][i % 3]!), (t += 10)));
    expect(got).toEqual([]);
    got.push(...d.observe(tcp(G, '10.99.0.9', 25), (t += 10)));
    expect(got.map((x) => [x.rule, x.count, x.threshold])).toEqual([['smtp-burst', 20, 20]]);
    expect(got[0]!.sample).toHaveLength(10);
    expect(got[0]!.sample.every((s) => /:(25|465|587)\/tcp$/.test(s))).toBe(true);
  });

  it('flood: the 1000th new connection in the window', () => {
    const d = detectors();
    const got: Detection[] = [];
    for (let i = 0; i < 1000; i++) got.push(...d.observe(udp(G, '10.99.0.1', 53), i * 50));
    expect(got.map((x) => [x.rule, x.count])).toEqual([['flood', 1000]]);
    expect(got[0]!.sample).toHaveLength(10);
  });

  it('blocklist: the first connection to a listed prefix or address; ICMP included', () => {
    const d = detectors();
    expect(d.observe(tcp(G, '198.51.99.255', 80), 1)).toEqual([]);
    const [a] = d.observe({ src: G, dst: '198.51.100.77', protonum: 1, dport: undefined }, 2);
    expect(a).toMatchObject({ rule: 'blocklist', count: 1, threshold: 1, sample: ['198.51.100.77/icmp'] });
    expect(d.observe(tcp(G, '203.0.113.7', 443), 3)).toEqual([]); // reported once per window
    const other = '10.20.0.24';
    expect(d.observe(tcp(other, '203.0.113.7', 443), 4).map((x) => x.sample)).toEqual([
      ['203.0.113.7:443/tcp'],
    ]);
    expect(d.observe(tcp(other, '203.0.113.8', 443), 5)).toEqual([]);
  });

  it('watches only the captive subnets, never the router or the subnet’s own network/broadcast', () => {
    const d = detectors({ floodCount: 1 });
    expect(d.observe(tcp('10.10.0.5', '10.99.0.1', 80), 1)).toEqual([]); // LAN
    expect(d.observe(tcp('10.20.0.1', '10.99.0.1', 80), 1)).toEqual([]); // the router
    expect(d.observe(tcp('10.20.0.255', '10.99.0.1', 80), 1)).toEqual([]);
    expect(d.observe({ src: G, dst: '2001:db8::1', protonum: 6, dport: 80 }, 1)).toEqual([]); // not IPv4
    expect(d.counters.ignored).toBe(4);
    expect(d.observe(tcp(G, '10.99.0.1', 80), 1).map((x) => x.rule)).toEqual(['flood']);
  });

  it('a browsing guest stays below every default threshold', () => {
    // A heavy minute: 12 page loads, each 40 connections to 25 hosts on 443/80, 30 DNS queries,
    // NTP, a mail client checking IMAPS and sending 3 mails, a video call's STUN to 20 ports.
    const d = detectors();
    let t = 0;
    const got: Detection[] = [];
    for (let page = 0; page < 12; page++) {
      for (let c = 0; c < 40; c++)
        got.push(...d.observe(tcp(G, `151.101.${page}.${c % 25}`, c % 5 ? 443 : 80), (t += 100)));
      for (let q = 0; q < 30; q++) got.push(...d.observe(udp(G, '10.20.0.1', 53), (t += 10)));
    }
    got.push(...d.observe(udp(G, '162.159.200.1', 123), (t += 10)));
    for (let i = 0; i < 3; i++) got.push(...d.observe(tcp(G, '192.0.2.25', 587), (t += 10)));
    got.push(...d.observe(tcp(G, '192.0.2.25', 993), (t += 10)));
    for (let p = 0; p < 20; p++) got.push(...d.observe(udp(G, '192.0.2.99', 3478 + p * 7), (t += 10)));
    expect(t).toBeLessThan(60_000);
    expect(got).toEqual([]);
    const f = d.figures(t, G)[0]!;
    expect(f.connections).toBe(12 * 70 + 25);
    expect(f.hosts).toBeLessThan(10); // the web's hosts are not counted as distinct hosts
  });

  it('prefix sets match by every prefix length', () => {
    const s = new PrefixSet(['0.0.0.0/1', '10.0.0.0/8', '192.0.2.1']);
    expect(s.size).toBe(3);
    expect(s.has(ip4('127.255.255.255'))).toBe(true);
    expect(s.has(ip4('10.200.1.1'))).toBe(true);
    expect(s.has(ip4('192.0.2.1'))).toBe(true);
    expect(s.has(ip4('192.0.2.2'))).toBe(false);
    expect(() => new PrefixSet(['10.0.0.1/8'])).toThrow(/host bits/);
  });

  it('property: memory stays bounded (per guest, guests, total) and the counts stay exact', () => {
    const limits: DetectorLimits = { perGuest: 40, guests: 8, events: 150, sample: 3 };
    const step = fc.record({
      guest: fc.nat(30),
      dst: fc.nat(20),
      port: fc.nat(60),
      proto: fc.constantFrom(6, 17, 1),
      dt: fc.oneof(fc.constant(0), fc.nat(50), fc.nat(70_000)),
    });
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 600 }), (steps) => {
        const d = detectors(
          { portScanPorts: 30, portScanHosts: 15, smtpCount: 5, floodCount: 35 },
          limits,
          60_000,
        );
        let t = 0;
        let maxSlots = 0;
        for (const s of steps) {
          t += s.dt;
          d.observe(
            {
              src: `10.20.0.${2 + s.guest}`,
              dst: `198.51.100.${s.dst}`,
              protonum: s.proto,
              dport: s.proto === 1 ? undefined : [25, 80, 443, 587][s.port % 4]! + s.port,
            },
            t,
          );
          const z = d.size();
          expect(z.events).toBeLessThanOrEqual(limits.events);
          expect(z.guests).toBeLessThanOrEqual(limits.guests);
          expect(z.slots).toBeLessThanOrEqual(2 * z.events + 65 * z.guests);
          maxSlots = Math.max(maxSlots, z.slots);
          if (t % 7 === 0) d.sweep(t);
        }
        d.check();
        d.sweep(t + 60_001);
        expect(d.size()).toEqual({ guests: 0, events: 0, slots: 0 });
        expect(maxSlots).toBeLessThanOrEqual(2 * limits.events + 65 * limits.guests);
      }),
      { numRuns: 300 },
    );
  });

  it('property: without caps, the window counts equal a recount of the events in the last window', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ g: fc.nat(3), dst: fc.nat(10), port: fc.nat(15), dt: fc.nat(9000) }), {
          maxLength: 300,
        }),
        (steps) => {
          const d = detectors({}, {}, 30_000);
          const all: { g: number; dst: number; port: number; t: number }[] = [];
          let t = 0;
          for (const s of steps) {
            t += s.dt;
            all.push({ ...s, t });
            d.observe(tcp(`10.20.0.${10 + s.g}`, `10.99.0.${s.dst}`, 1000 + s.port), t);
          }
          for (const f of d.figures(t)) {
            const g = Number(f.ip.split('.')[3]) - 10;
            const mine = all.filter((e) => e.g === g && e.t > t - 30_000);
            expect(f.connections).toBe(mine.length);
            expect(f.ports).toBe(new Set(mine.map((e) => e.port)).size);
            expect(f.hosts).toBe(new Set(mine.map((e) => e.dst)).size);
          }
          d.check();
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('config', () => {
  const facts = (over: Partial<GatewayFacts> = {}): GatewayFacts => {
    const guest: Network = {
      name: 'guest',
      role: 'guest',
      device: 'br-guest',
      address: '10.20.0.1',
      prefix: 24,
      subnet: '10.20.0.0/24',
      captive: true,
    };
    const lan: Network = {
      ...guest,
      name: 'lan',
      role: 'lan',
      device: 'br-lan',
      address: '10.10.0.1',
      subnet: '10.10.0.0/24',
      captive: false,
    };
    return {
      networks: [lan, guest],
      served: [lan, guest],
      captive: [guest],
      upstreamDns: [],
      stateDir: '/tmp',
      commandPrefix: ['ip', 'netns', 'exec', 'r'],
      enabled: new Set(['portal', 'extrusion']),
      portal: { address: '10.20.0.1', port: 8080 },
      ...over,
    };
  };
  const fromSection = (s: Record<string, unknown>, f = facts()) =>
    extrusionApp.parse(extrusionApp.fromGateway(f, extrusionApp.section.parse(s) as Record<string, unknown>));

  it('a section of {} watches the captive networks with the defaults, acting through the portal', () => {
    const c = fromSection({});
    expect(c.captive).toEqual([{ name: 'guest', device: 'br-guest', subnet: '10.20.0.0/24' }]);
    expect(c.exclude).toEqual(['10.10.0.1', '10.20.0.1']);
    expect(c.commandPrefix).toEqual(['ip', 'netns', 'exec', 'r']);
    expect(c.portal).toBe('portal');
    expect(c).toMatchObject({
      name: '/extrusion',
      window: 60,
      portScan: { enabled: true, ports: 100, hosts: 250, action: 'log' },
      smtpBurst: { count: 20, ports: [25, 465, 587], action: 'log' },
      flood: { count: 1000, action: 'log' },
      blocklist: { prefixes: [], count: 1, action: 'log' },
      limits: { perGuest: 4096, guests: 4096, events: 131_072, sample: 10 },
      events: 'conntrack',
    });
  });

  it('names every bad field', () => {
    expect(() => extrusionApp.section.parse({ portScan: { action: 'nuke' } })).toThrow();
    expect(() => extrusionApp.section.parse({ bogus: 1 })).toThrow();
    const bad = ExtrusionConfigSchema.safeParse({
      captive: [{ name: 'g', device: 'br', subnet: '10.20.0.1/24' }],
      flood: { count: 5000 },
      blocklist: { prefixes: ['1.2.3.4/33'], action: 'deauth' },
    });
    expect(bad.success).toBe(false);
    const paths = bad.error!.issues.map((i) => i.path.join('.'));
    expect(paths).toEqual(expect.arrayContaining(['captive.0.subnet', 'blocklist.prefixes.0']));
    expect(() =>
      parseExtrusionConfig({
        captive: [{ name: 'g', device: 'br', subnet: '10.20.0.0/24' }],
        flood: { count: 5000 },
      }),
    ).toThrow(/flood\.count: 5000 is above limits\.perGuest/);
    expect(() =>
      parseExtrusionConfig({
        captive: [{ name: 'g', device: 'br', subnet: '10.20.0.0/24' }],
        portScan: { action: 'deauth' },
      }),
    ).toThrow(/portScan\.action: deauth needs the portal/);
    expect(() => fromSection({}, facts({ captive: [] }))).toThrow(/no captive network to watch/);
  });
});

describe('docs/apps/extrusion.md', () => {
  it('has a section for every mailbox, naming each tuple, and lists every config field', () => {
    const doc = readFileSync(new URL('../../../docs/apps/extrusion.md', import.meta.url), 'utf8');
    for (const spec of extrusionTable) {
      const at = doc.indexOf(`### \`/extrusion${spec.suffix}\``);
      expect(at, `mailbox /extrusion${spec.suffix}`).toBeGreaterThanOrEqual(0);
      const end = doc.indexOf('\n### ', at + 1);
      const section = doc.slice(at, end < 0 ? undefined : end);
      for (const t of spec.tuples) expect(section, `${spec.suffix} ${t.tag}`).toContain(`\`${t.tag}\``);
    }
    for (const key of Object.keys(ExtrusionConfigSchema.shape)) expect(doc, key).toContain(`\`${key}\``);
    for (const key of Object.keys(sectionShape)) expect(doc, key).toContain(`\`${key}\``);
  });
});

describe('the app on a bus, events from /extrusion/event, a stand-in portal on the same bus', () => {
  let bus: Bus | undefined;
  let handle: AppHandle | undefined;
  afterEach(async () => {
    await handle?.close();
    await bus?.close(50);
    handle = undefined;
    bus = undefined;
  });

  /** A bus named `portal` (so `portal:/…` is local) with stand-ins for the portal's verbs. */
  async function setup(section: Record<string, unknown>, verbs: { block?: boolean; shaper?: boolean } = {}) {
    const b = new Bus({ name: 'portal', logger: silentLogger });
    bus = b;
    const calls: [string, Record<string, unknown>][] = [];
    const verb = (path: string, answer: Record<string, string | boolean>) =>
      b.listen(path, async (m, ctx) => {
        calls.push([path, m.without('reply-to').toObject()]);
        if (ctx.replyTo) await ctx.reply(answer);
        return STOP;
      });
    verb('/portal/logout', { ip: 'x', removed: true });
    if (verbs.block) verb('/portal/block', { mac: 'x', ok: true });
    if (verbs.shaper) verb('/system/shaper/set', { ip: 'x', class: '1:10' });
    const config = parseExtrusionConfig({
      captive: [{ name: 'guest', device: 'br-guest', subnet: '10.20.0.0/24' }],
      portal: 'portal',
      events: 'mailbox',
      ...section,
    });
    handle = await startExtrusion(b, config);
    const seen = { detected: [] as Message[], acted: [] as Message[], errors: [] as Message[] };
    b.listen('/extrusion/detected', (m) => void seen.detected.push(m));
    b.listen('/extrusion/acted', (m) => void seen.acted.push(m));
    b.listen('/extrusion/error', (m) => void seen.errors.push(m));
    const scan = async (ip: string, ports: number) => {
      for (let p = 1; p <= ports; p++)
        await b.request('/extrusion/event', { src: ip, dst: '10.99.0.1', proto: 6, dport: p });
    };
    const acted = () => b.wait('/extrusion/acted', { timeout: 2000 });
    return { b, calls, seen, scan, acted };
  }

  it('deauth: /detected with the evidence, then /portal/logout {ip, reason: blocked}, then /acted', async () => {
    const { calls, seen, scan, acted } = await setup({ portScan: { action: 'deauth' } });
    const done = acted();
    await scan(G, 100);
    const a = await done;
    expect(seen.detected).toHaveLength(1);
    expect(seen.detected[0]!.toObject()).toMatchObject({
      ip: G,
      network: 'guest',
      rule: 'port-scan',
      measure: 'ports',
      count: 100,
      threshold: 100,
      window: 60,
      action: 'deauth',
    });
    expect(seen.detected[0]!.all('dst')).toHaveLength(10);
    expect(calls).toEqual([['/portal/logout', { ip: G, reason: 'blocked' }]]);
    expect(a.toObject()).toMatchObject({
      ip: G,
      rule: 'port-scan',
      action: 'deauth',
      performed: 'deauth',
      outcome: 'done',
    });
    const stats = await bus!.request('/extrusion/stats', {});
    expect(stats.int('detections')).toBe(1);
    expect(stats.int('held')).toBe(100);
    const g = await bus!.request('/extrusion/guests', { ip: G });
    expect((g.list('guest').toObject() as Record<string, unknown>).ports).toBe(100);
  });

  it('a prepended listener vetoes the action: nothing done, /acted says vetoed and by whom', async () => {
    const { b, calls, scan, acted } = await setup({ portScan: { action: 'deauth' } });
    b.listen('/extrusion/action', (m) => (m.str('ip') === G ? STOP : undefined), {
      position: 'prepend',
      identity: { hook: 'trusted-guests' },
    });
    const done = acted();
    await scan(G, 100);
    expect((await done).toObject()).toMatchObject({ outcome: 'vetoed', performed: 'none' });
    expect((await done).str('detail')).toContain('hook=trusted-guests');
    expect(calls).toEqual([]);
  });

  it('block: /portal/block {mac} when the portal has the verb; without it (or a MAC), deauth instead', async () => {
    const { b, calls, seen, acted } = await setup({
      blocklist: { prefixes: ['198.51.100.0/24'], action: 'block' },
    });
    // No MAC for a 10.20.0.x address in this machine's ARP table: deauth, said so.
    let done = acted();
    await b.request('/extrusion/event', { src: G, dst: '198.51.100.1', proto: 6, dport: 443 });
    expect((await done).toObject()).toMatchObject({ action: 'block', performed: 'deauth', outcome: 'done' });
    expect((await done).str('detail')).toMatch(/no MAC known/);
    expect(calls.map((c) => c[0])).toEqual(['/portal/logout']);
    // The stock listener, with a MAC given (a hook could add one): no /portal/block verb here.
    done = acted();
    await b.send('/extrusion/action', {
      ip: '10.20.0.50',
      mac: '02:00:00:00:00:50',
      rule: 'blocklist',
      action: 'block',
    });
    expect((await done).toObject()).toMatchObject({ performed: 'deauth', outcome: 'done' });
    expect((await done).str('detail')).toMatch(/no \/portal\/block/);
    expect(seen.errors.map((e) => e.str('code'))).toContain('ENOVERB');
  });

  it('block with the verb, rate-limit through the shaper, and the same action not twice in a window', async () => {
    const { b, calls, acted } = await setup(
      { smtpBurst: { action: 'rate-limit' }, rateLimit: { up: 64_000, down: 128_000 } },
      { block: true, shaper: true },
    );
    let done = acted();
    await b.send('/extrusion/action', {
      ip: '10.20.0.50',
      mac: '02:00:00:00:00:50',
      rule: 'blocklist',
      action: 'block',
    });
    expect((await done).toObject()).toMatchObject({ performed: 'block', outcome: 'done' });
    expect(calls.at(-1)).toEqual(['/portal/block', { mac: '02:00:00:00:00:50' }]);
    done = acted();
    for (let i = 0; i < 20; i++)
      await b.request('/extrusion/event', { src: G, dst: '192.0.2.25', proto: 6, dport: 25 });
    expect((await done).toObject()).toMatchObject({
      rule: 'smtp-burst',
      performed: 'rate-limit',
      outcome: 'done',
    });
    expect(calls.at(-1)).toEqual(['/system/shaper/set', { ip: G, 'rate-up': 64_000, 'rate-down': 128_000 }]);
    done = acted();
    await b.send('/extrusion/action', { ip: G, mac: '', rule: 'flood', action: 'rate-limit' });
    expect((await done).toObject()).toMatchObject({ outcome: 'skipped', performed: 'none' });
  });

  it('a failed action is reported on /acted and /extrusion/error', async () => {
    const { b, seen, acted } = await setup({ flood: { count: 20, action: 'rate-limit' } }); // no shaper
    const done = acted();
    for (let i = 0; i < 20; i++)
      await b.request('/extrusion/event', { src: G, dst: '10.99.0.1', proto: 17, dport: 53 });
    expect((await done).toObject()).toMatchObject({ rule: 'flood', outcome: 'failed', performed: 'none' });
    expect(seen.errors.length).toBeGreaterThan(0);
  });
});
