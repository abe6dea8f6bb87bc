import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Message } from '../../../src/core/message.js';
import type { Inbound } from '../../../src/services/dhcp/core.js';
import { FIXED_LENGTHS } from '../../../src/services/dhcp/options.js';
import { type DhcpPacket, decodePacket, encodePacket } from '../../../src/services/dhcp/packet.js';
import { SummaryLog } from '../../../src/services/dhcp/summarylog.js';
import { clientPacket, MessageType, type Rig, recordingLogger, rig, tmp, typeOf } from './helpers.js';

/**
 * dhcpd against odd clients and storms, without sockets (docs/services/dhcp.md, "Bad input" and
 * "Storms"): option lengths, held offers reclaimed when the pool runs dry, the limit on new
 * clients, and logs that stay short. The lab test (test/apps/dhcpd/storm.lab.test.ts) does the
 * same with real packets and real clients.
 */

const SERVER = '10.77.0.1';
const from = { address: '0.0.0.0', port: 68 };
const inb = (packet: DhcpPacket, iface?: string): Inbound =>
  iface === undefined ? { packet, from } : { packet, from, interface: iface };
const macOf = (n: number): string =>
  `02:${[(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255, 0x5a].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;

/** The whole LAN /24 as the pool (.2–.254), as in the storm of the issue. */
const SLASH24 = {
  subnets: [
    {
      subnet: '10.77.0.0/24',
      pool: { start: '10.77.0.2', end: '10.77.0.254' },
      router: SERVER,
      leaseTime: 600,
    },
    { subnet: '10.88.0.0/24', pool: { start: '10.88.0.10', end: '10.88.0.20' }, router: '10.88.0.1' },
  ],
};

describe('dhcpd hardening (no sockets)', () => {
  let t: ReturnType<typeof tmp>;
  let r: Rig;
  let n = 0;
  beforeEach(() => {
    t = tmp();
  });
  afterEach(async () => {
    await r?.close();
    t.cleanup();
  });
  const open = async (
    extra: Parameters<typeof rig>[1] = {},
    opts: Parameters<typeof rig>[2] = {},
  ): Promise<Rig> => {
    r = await rig(join(t.dir, `leases-${n++}.jsonl`), extra, opts);
    return r;
  };

  /** DISCOVER then REQUEST; the address, or why not. */
  async function dora(mac: string, iface?: string): Promise<string> {
    const offer = await r.core.handle(inb(clientPacket(MessageType.DISCOVER, mac), iface));
    if (!offer) return 'no offer';
    const ack = await r.core.handle(
      inb(
        clientPacket(MessageType.REQUEST, mac, { requested: offer.packet.yiaddr, serverId: SERVER }),
        iface,
      ),
    );
    if (!ack) return 'no answer to the request';
    return typeOf(ack.packet) === MessageType.ACK ? ack.packet.yiaddr : 'NAK';
  }

  describe('option lengths', () => {
    it('a server-id (54) of 2 bytes is dropped and counted, not ACKed; so are 50, 51, 53, 57, 58 of the wrong length', async () => {
      await open();
      const packets: Message[] = [];
      r.bus.append('/dhcpd/packet', (m) => {
        packets.push(m);
      });
      const mac = '02:00:00:00:00:01';
      const offer = await r.core.handle(inb(clientPacket(MessageType.DISCOVER, mac)));
      const ip = offer!.packet.yiaddr;
      const bad = (code: number, data: number[]): DhcpPacket => {
        const p = clientPacket(MessageType.REQUEST, mac, { requested: ip, serverId: SERVER });
        p.options = [...p.options.filter((o) => o.code !== code), { code, data: Buffer.from(data) }];
        return p;
      };
      const cases: [number, number[]][] = [
        [54, [10, 77]],
        [54, [10, 77, 0, 1, 0]],
        [50, [10, 77, 0]],
        [51, [0, 0]],
        [53, [3, 0]],
        [57, [2]],
        [58, [0, 0, 1, 0, 0]],
      ];
      for (const [code, data] of cases)
        expect(await r.core.handle(inb(bad(code, data))), `option ${code}`).toBeUndefined();
      expect(r.core.counters).toMatchObject({ badOptionLength: cases.length, acks: 0, naks: 0 });
      expect(r.store.ofMac(mac)).toBeUndefined();
      await r.bus.settled();
      expect(packets.map((m) => m.str('type'))).toEqual(['discover']); // dropped before /dhcpd/packet
      // the same request with the right lengths is ACKed
      const ok = await r.core.handle(
        inb(clientPacket(MessageType.REQUEST, mac, { requested: ip, serverId: SERVER })),
      );
      expect(typeOf(ok!.packet)).toBe(MessageType.ACK);
    });

    it('fuzz: any mix of fixed-length options over the wire codec is answered iff every length is right', async () => {
      await open({ newClients: { perSecond: 0 } });
      const codes = [...FIXED_LENGTHS.keys()].filter((c) => c !== 53);
      const option = fc.record({
        code: fc.constantFrom(...codes),
        data: fc.oneof(
          // the right length half of the time
          fc.constant(undefined),
          fc.uint8Array({ maxLength: 9 }),
        ),
        fill: fc.uint8Array({ minLength: 9, maxLength: 9 }),
      });
      let run = 0;
      await fc.assert(
        fc.asyncProperty(fc.uniqueArray(option, { selector: (o) => o.code, maxLength: 6 }), async (opts) => {
          const extra = opts.map((o) => ({
            code: o.code,
            data: Buffer.from(o.data ?? o.fill.subarray(0, FIXED_LENGTHS.get(o.code))),
          }));
          const p = clientPacket(MessageType.DISCOVER, macOf(run++), { extra });
          const wrong = extra.some((o) => o.data.length !== FIXED_LENGTHS.get(o.code));
          const before = r.core.counters.badOptionLength;
          const out = await r.core.handle(inb(decodePacket(encodePacket(p))));
          expect(r.core.counters.badOptionLength - before).toBe(wrong ? 1 : 0);
          if (wrong) expect(out).toBeUndefined();
          else expect(out && typeOf(out.packet)).toBe(MessageType.OFFER);
        }),
        { numRuns: 400 },
      );
    });
  });

  describe('DISCOVER storms', () => {
    it('the pool running dry reclaims the oldest held offer; a client re-DISCOVERing refreshes its own; leases are never reclaimed', async () => {
      await open({ newClients: { perSecond: 0 } }); // the pool alone: 10.77.0.100–109
      const storm = Array.from({ length: 10 }, (_, i) => macOf(1000 + i));
      const held: string[] = [];
      for (const mac of storm) {
        held.push((await r.core.handle(inb(clientPacket(MessageType.DISCOVER, mac))))!.packet.yiaddr);
        r.clock.t += 10;
      }
      expect(new Set(held).size).toBe(10);
      // storm[1] asks again: its offer is held anew (now the youngest)
      await r.core.handle(inb(clientPacket(MessageType.DISCOVER, storm[1]!)));
      const a = await r.core.handle(inb(clientPacket(MessageType.DISCOVER, macOf(1))));
      expect(a!.packet.yiaddr).toBe(held[0]);
      const b = await r.core.handle(inb(clientPacket(MessageType.DISCOVER, macOf(2))));
      expect(b!.packet.yiaddr).toBe(held[2]); // not held[1]: refreshed
      expect(r.core.counters.offersReclaimed).toBe(2);
      expect(r.pool.offeredTo(storm[0]!)).toBeUndefined();
      // the client whose offer was taken asks for it after all (slow, or queued behind the storm):
      // an offer binds nobody, the first REQUEST wins; the one it was given to is NAKed
      const late = await r.core.handle(
        inb(clientPacket(MessageType.REQUEST, storm[0]!, { requested: held[0], serverId: SERVER })),
      );
      expect(typeOf(late!.packet)).toBe(MessageType.ACK);
      expect(late!.packet.yiaddr).toBe(held[0]);
      const second = await r.core.handle(
        inb(clientPacket(MessageType.REQUEST, macOf(1), { requested: held[0], serverId: SERVER })),
      );
      expect(typeOf(second!.packet)).toBe(MessageType.NAK);
      expect(await dora(macOf(1))).toBe(held[3]); // starts over: the oldest offer left is reclaimed
      // the other way round: leased first, then the late REQUEST is NAKed and the lease stays whole
      const tooLate = await r.core.handle(
        inb(clientPacket(MessageType.REQUEST, storm[3]!, { requested: held[3], serverId: SERVER })),
      );
      expect(typeOf(tooLate!.packet)).toBe(MessageType.NAK);
      const renew = await r.core.handle(
        inb(clientPacket(MessageType.REQUEST, macOf(1), { ciaddr: held[3] })),
      );
      expect(typeOf(renew!.packet)).toBe(MessageType.ACK);
      // fill the pool with leases: none of them is ever reclaimed
      for (let i = 3; i < 20 && r.store.active().length < 10; i++) await dora(macOf(i));
      expect(r.store.active()).toHaveLength(10);
      expect(await r.core.handle(inb(clientPacket(MessageType.DISCOVER, macOf(99))))).toBeUndefined();
      expect(r.core.counters.noAddress).toBe(1);
    });

    it('a dry pool is scanned once a second at most; offers that expired meanwhile are simply free (not counted as reclaimed)', async () => {
      await open({ newClients: { perSecond: 0 }, offerTime: 1 });
      for (let i = 0; i < 10; i++) await r.core.handle(inb(clientPacket(MessageType.DISCOVER, macOf(i))));
      r.clock.t += 900;
      const a = await r.core.handle(inb(clientPacket(MessageType.DISCOVER, macOf(100)))); // dry: reclaims
      expect(a!.packet.yiaddr).toBe('10.77.0.100');
      expect(r.core.counters.offersReclaimed).toBe(1);
      r.clock.t += 150; // the first offers have expired; no sweep has run; the pool is not rescanned yet
      const b = await r.core.handle(inb(clientPacket(MessageType.DISCOVER, macOf(101))));
      expect(b!.packet.yiaddr).toBe('10.77.0.101');
      expect(r.core.counters.offersReclaimed).toBe(1);
      expect(r.pool.offeredTo(macOf(1))).toBeUndefined();
    });

    it('new clients are limited per link; a MAC that comes back ≥ 0.5 s later is let in; known clients never wait', async () => {
      await open({ newClients: { perSecond: 0.5, burst: 2 } });
      const known = await dora('02:00:00:00:00:01', 'r0'); // takes one token
      expect(known).toMatch(/^10\.77\.0\./);
      expect(await dora(macOf(1), 'r0')).toMatch(/^10\.77\.0\./); // the second token
      expect(await dora(macOf(2), 'r0')).toBe('no offer');
      expect(r.core.counters.rateLimited).toBe(1);
      r.clock.t += 200;
      expect(await dora(macOf(2), 'r0')).toBe('no offer'); // too soon to be a retransmission
      r.clock.t += 800;
      expect(await dora(macOf(2), 'r0')).toMatch(/^10\.77\.0\./); // came back: let in
      // a known client (lease, static host) is never limited
      for (let i = 0; i < 5; i++) expect(await dora('02:00:00:00:00:01', 'r0')).toBe(known);
      expect(await dora('02:00:00:00:00:aa', 'r0')).toBe('10.77.0.50');
      // another link (a relayed subnet) has its own bucket
      const relayed = await r.core.handle(
        inb(clientPacket(MessageType.DISCOVER, macOf(3), { giaddr: '10.88.0.1' }), 'r0'),
      );
      expect(relayed!.packet.yiaddr).toBe('10.88.0.10');
      // an INIT-REBOOT or a REQUEST for another server from a new client takes no token
      expect(
        await r.core.handle(
          inb(clientPacket(MessageType.REQUEST, macOf(4), { requested: '10.77.0.104' }), 'r0'),
        ),
      ).toBeUndefined();
      expect(r.core.counters.rateLimited).toBe(2);
      r.clock.t += 2000; // one token back
      expect(await dora(macOf(5), 'r0')).toMatch(/^10\.77\.0\./);
    });

    it('2,000 DISCOVERs from random MACs in 2 s on a /24: a client asking every 100 ms never fails, new clients lease within 5 s, the logs stay short', async () => {
      const log = recordingLogger();
      await open(SLASH24, { log });
      const t0 = r.clock.t;
      const steady = '02:00:00:00:00:01';
      const failures: string[] = [];
      let steadyIp: string | undefined;
      let steadyRuns = 0;
      /** New clients (fresh MACs) starting every 250 ms, retransmitting every 1 s like udhcpc -T 1. */
      const fresh = Array.from({ length: 28 }, (_, i) => ({
        mac: macOf(0xc000 + i),
        start: i * 250,
        next: i * 250,
        leasedAfter: undefined as number | undefined,
      }));
      let x = 7;
      const rand = Array.from({ length: 2000 }, () => {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        return x >>> 0;
      });
      expect(new Set(rand).size).toBe(2000); // random MACs, none twice
      for (let ms = 0; ms <= 7000; ms++) {
        r.clock.t = t0 + ms;
        if (ms < 2000) await r.core.handle(inb(clientPacket(MessageType.DISCOVER, macOf(rand[ms]!)), 'r0'));
        if (ms % 100 === 0) {
          steadyRuns++;
          const got = await dora(steady, 'r0');
          if (steadyIp === undefined) steadyIp = got;
          if (got !== steadyIp) failures.push(`${ms} ms: ${got}`);
        }
        for (const c of fresh) {
          if (c.leasedAfter !== undefined || c.next !== ms) continue;
          const got = await dora(c.mac, 'r0');
          if (/^10\./.test(got)) c.leasedAfter = ms - c.start;
          else c.next = ms + 1000;
        }
        if (ms % 1000 === 0) r.core.tick();
      }
      expect(failures).toEqual([]);
      expect(steadyRuns).toBe(71);
      expect(fresh.map((c) => c.leasedAfter ?? Infinity).filter((ms) => ms > 5000)).toEqual([]);
      // ...and in fact within one retransmission
      expect(Math.max(...fresh.map((c) => c.leasedAfter!))).toBeLessThanOrEqual(1000);
      const c = r.core.counters;
      expect(c.rateLimited).toBeGreaterThan(1500);
      expect(c.offersReclaimed).toBeGreaterThan(0);
      // the logs: one line per kind at most every 5 s, not one per packet
      const byKind = new Map<string, number>();
      for (const l of log.lines)
        byKind.set(String(l.fields.kind), (byKind.get(String(l.fields.kind)) ?? 0) + 1);
      expect(byKind.get('rateLimited')).toBeLessThanOrEqual(3);
      // (debug has a line per lease, as before: not per storm packet)
      const shown = log.lines.filter((l) => l.level !== 'debug');
      expect(shown.length, shown.map((l) => l.msg).join('\n')).toBeLessThanOrEqual(6);
      const summary = log.lines.find(
        (l) => l.fields.kind === 'rateLimited' && typeof l.fields.count === 'number',
      );
      expect(summary?.msg).toMatch(
        /new client over the newClients limit of its link: \d+ more in the last \d+ s/,
      );
    }, 30_000);
  });

  it('/dhcpd/packet carries the arrival interface when the server knows it', async () => {
    await open();
    const seen: Message[] = [];
    r.bus.append('/dhcpd/packet', (m) => {
      seen.push(m);
    });
    await r.core.handle(inb(clientPacket(MessageType.DISCOVER, macOf(1)), 'r0'));
    await r.core.handle(inb(clientPacket(MessageType.DISCOVER, macOf(2))));
    await r.bus.settled();
    expect(seen.map((m) => m.str('interface', '-'))).toEqual(['r0', '-']);
  });
});

describe('SummaryLog', () => {
  it('the first event of a kind at once; then one summary line per kind per interval, with the count', () => {
    const log = recordingLogger();
    const clock = { t: 0 };
    const s = new SummaryLog(log, () => clock.t, 5000);
    for (let i = 0; i < 1000; i++) {
      clock.t = i * 2; // 1,000 in 2 s
      s.note('malformed', 'warn', 'malformed packet', { i });
      s.note('rate', 'warn', 'over the limit', { i });
    }
    s.tick();
    expect(log.lines.map((l) => l.msg)).toEqual(['dhcp: malformed packet', 'dhcp: over the limit']);
    clock.t = 5000;
    s.tick();
    expect(
      log.lines.slice(2).map((l) => [l.msg, l.fields.count, (l.fields.last as { i: number }).i]),
    ).toEqual([
      ['dhcp: malformed packet: 999 more in the last 5 s', 999, 999],
      ['dhcp: over the limit: 999 more in the last 5 s', 999, 999],
    ]);
    // quiet for an interval: the next one is logged at once again
    clock.t = 11_000;
    s.tick();
    s.note('malformed', 'warn', 'malformed packet', { i: -1 });
    expect(log.lines).toHaveLength(5);
    s.note('malformed', 'warn', 'malformed packet', { i: -2 });
    s.flush();
    expect(log.lines.at(-1)?.msg).toBe('dhcp: malformed packet: 1 more in the last 1 s');
  });
});
