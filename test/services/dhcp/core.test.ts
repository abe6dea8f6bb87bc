import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { STOP } from '../../../src/core/listener.js';
import type { Message } from '../../../src/core/message.js';
import type { Inbound } from '../../../src/services/dhcp/core.js';
import { getOption, optionToValue } from '../../../src/services/dhcp/options.js';
import { type DhcpPacket, decodePacket } from '../../../src/services/dhcp/packet.js';
import { encodeReply } from '../../../src/services/dhcp/reply.js';
import { clientPacket, MessageType, type Rig, rig, tmp, typeOf } from './helpers.js';

const MAC = '02:00:00:00:00:01';
const MAC2 = '02:00:00:00:00:02';
const from = { address: '0.0.0.0', port: 68 };
const inb = (packet: DhcpPacket, f = from): Inbound => ({ packet, from: f });
const opt = (p: DhcpPacket, code: number): unknown => {
  const d = getOption(p, code);
  return d === undefined ? undefined : optionToValue(code, d);
};

describe('DHCP core (RFC 2131 state machine, no sockets)', () => {
  let t: ReturnType<typeof tmp>;
  let r: Rig;
  beforeEach(async () => {
    t = tmp();
    r = await rig(join(t.dir, 'leases.jsonl'));
  });
  afterEach(async () => {
    await r.close();
    t.cleanup();
  });

  async function lease(mac: string, prl?: number[]): Promise<string> {
    const offer = await r.core.handle(inb(clientPacket(MessageType.DISCOVER, mac, { prl })));
    expect(offer && typeOf(offer.packet)).toBe(MessageType.OFFER);
    const ip = offer!.packet.yiaddr;
    const ack = await r.core.handle(
      inb(clientPacket(MessageType.REQUEST, mac, { requested: ip, serverId: '10.77.0.1' })),
    );
    expect(ack && typeOf(ack.packet)).toBe(MessageType.ACK);
    expect(ack!.packet.yiaddr).toBe(ip);
    return ip;
  }

  it('DISCOVER → OFFER from the pool, broadcast, options in parameter-request order', async () => {
    const out = await r.core.handle(
      inb(clientPacket(MessageType.DISCOVER, MAC, { prl: [114, 6, 3, 1, 15, 28] })),
    );
    expect(out).toBeDefined();
    const p = out!.packet;
    expect(typeOf(p)).toBe(MessageType.OFFER);
    expect(p.yiaddr).toBe('10.77.0.100');
    expect(out!.to).toEqual({ address: '255.255.255.255', port: 68 });
    expect(out!.broadcast).toBe(true);
    expect(out!.via).toBe('10.77.0.1');
    expect(p.options.map((o) => o.code)).toEqual([53, 54, 51, 58, 59, 114, 6, 3, 1, 15, 28]);
    expect(opt(p, 54)).toBe('10.77.0.1');
    expect(opt(p, 51)).toBe(600);
    expect(opt(p, 58)).toBe(300);
    expect(opt(p, 59)).toBe(525);
    expect(opt(p, 6)).toEqual(['10.77.0.1', '10.77.1.2']);
    expect(opt(p, 114)).toBe('https://portal.lab.test/api');
    expect(opt(p, 1)).toBe('255.255.255.0');
    // the offer is held: another client gets another address
    const out2 = await r.core.handle(inb(clientPacket(MessageType.DISCOVER, MAC2)));
    expect(out2!.packet.yiaddr).toBe('10.77.0.101');
  });

  it('REQUEST (selecting) → ACK after the lease is on disk; committed is announced', async () => {
    const committed: Message[] = [];
    r.bus.append('/dhcpd/lease/committed', (m) => {
      committed.push(m);
    });
    const ip = await lease(MAC);
    expect(r.store.ofMac(MAC)).toMatchObject({ ip, state: 'bound' });
    await r.bus.settled();
    expect(committed[0]?.toObject()).toMatchObject({
      mac: MAC,
      ip,
      'lease-time': 600,
      subnet: '10.77.0.0/24',
    });
  });

  it('REQUEST naming another server: silent, and our offer is dropped', async () => {
    const offer = await r.core.handle(inb(clientPacket(MessageType.DISCOVER, MAC)));
    const out = await r.core.handle(
      inb(
        clientPacket(MessageType.REQUEST, MAC, { requested: offer!.packet.yiaddr, serverId: '10.77.0.254' }),
      ),
    );
    expect(out).toBeUndefined();
    expect(r.pool.offeredTo(MAC)).toBeUndefined();
  });

  it('INIT-REBOOT: wrong network → NAK (broadcast); a known client asking for another’s address → NAK; own → ACK', async () => {
    const ip = await lease(MAC);
    const moved = await r.core.handle(inb(clientPacket(MessageType.REQUEST, MAC, { ciaddr: '192.168.1.5' })));
    expect(typeOf(moved!.packet)).toBe(MessageType.NAK); // REBINDING from a network we do not serve
    expect(
      await r.core.handle(inb(clientPacket(MessageType.INFORM, MAC, { ciaddr: '192.168.1.5' }))),
    ).toBeUndefined();
    const wrong = await r.core.handle(
      inb(clientPacket(MessageType.REQUEST, MAC, { requested: '192.168.1.5' })),
    );
    expect(typeOf(wrong!.packet)).toBe(MessageType.NAK);
    expect(wrong!.to.address).toBe('255.255.255.255');
    expect(wrong!.packet.yiaddr).toBe('0.0.0.0');
    // MAC2 has a lease of its own: we have a record of it, and it asks for MAC's address
    await lease(MAC2);
    const theirs = await r.core.handle(inb(clientPacket(MessageType.REQUEST, MAC2, { requested: ip })));
    expect(typeOf(theirs!.packet)).toBe(MessageType.NAK);
    const own = await r.core.handle(inb(clientPacket(MessageType.REQUEST, MAC, { requested: ip })));
    expect(typeOf(own!.packet)).toBe(MessageType.ACK);
  });

  it('INIT-REBOOT from a client we have no record of: silent (RFC 2131 4.3.2), for a free or a taken address', async () => {
    const free = await r.core.handle(
      inb(clientPacket(MessageType.REQUEST, MAC, { requested: '10.77.0.105' })),
    );
    expect(free).toBeUndefined();
    const ip = await lease(MAC2);
    const taken = await r.core.handle(inb(clientPacket(MessageType.REQUEST, MAC, { requested: ip })));
    expect(taken).toBeUndefined();
    expect(r.store.ofMac(MAC)).toBeUndefined();
    expect(r.core.counters).toMatchObject({ acks: 1, naks: 0, dropped: 2 });
    // wrong network still gets a NAK, record or not (the client must start over)
    const moved = await r.core.handle(
      inb(clientPacket(MessageType.REQUEST, MAC, { requested: '10.99.0.5' })),
    );
    expect(typeOf(moved!.packet)).toBe(MessageType.NAK);
  });

  it('INIT-REBOOT: a record is a lease (bound or free), a static entry, or a lookup listener’s answer', async () => {
    const ip = await lease(MAC);
    await r.core.handle(inb(clientPacket(MessageType.RELEASE, MAC, { ciaddr: ip, serverId: '10.77.0.1' })));
    expect(r.store.ofMac(MAC)?.state).toBe('free');
    const back = await r.core.handle(inb(clientPacket(MessageType.REQUEST, MAC, { requested: ip })));
    expect(typeOf(back!.packet)).toBe(MessageType.ACK);
    const st = await r.core.handle(
      inb(clientPacket(MessageType.REQUEST, '02:00:00:00:00:aa', { requested: '10.77.0.50' })),
    );
    expect(typeOf(st!.packet)).toBe(MessageType.ACK);
    const h = r.bus.prepend('/dhcpd/lookup', async (m, ctx) => {
      if (m.str('mac') !== MAC2) return;
      await ctx.reply({ ip: '10.77.0.201', source: 'ldap' });
      return STOP;
    });
    const hooked = await r.core.handle(
      inb(clientPacket(MessageType.REQUEST, MAC2, { requested: '10.77.0.201' })),
    );
    expect(typeOf(hooked!.packet)).toBe(MessageType.ACK);
    const other = await r.core.handle(
      inb(clientPacket(MessageType.REQUEST, '02:00:00:00:00:03', { requested: '10.77.0.106' })),
    );
    expect(other).toBeUndefined(); // the hook passed, the pool answered: no record
    h.remove();
  });

  it('RENEWING (ciaddr, unicast) → ACK to ciaddr:68 with a new expiry; REBINDING the same', async () => {
    const ip = await lease(MAC);
    const first = r.store.ofMac(MAC)!.expires;
    r.clock.t += 300_000;
    const renew = await r.core.handle(
      inb(clientPacket(MessageType.REQUEST, MAC, { ciaddr: ip }), { address: ip, port: 68 }),
    );
    expect(typeOf(renew!.packet)).toBe(MessageType.ACK);
    expect(renew!.to).toEqual({ address: ip, port: 68 });
    expect(renew!.packet.ciaddr).toBe(ip);
    expect(r.store.ofMac(MAC)!.expires).toBe(first + 300_000);
    const rebind = await r.core.handle(
      inb(clientPacket(MessageType.REQUEST, MAC, { ciaddr: ip, flags: 0x8000 })),
    );
    expect(typeOf(rebind!.packet)).toBe(MessageType.ACK);
    // renewing an address that belongs to someone else: NAK
    const bad = await r.core.handle(inb(clientPacket(MessageType.REQUEST, MAC2, { ciaddr: ip })));
    expect(typeOf(bad!.packet)).toBe(MessageType.NAK);
  });

  it('RELEASE frees the lease and is announced; the client gets the same address back', async () => {
    const released: Message[] = [];
    r.bus.append('/dhcpd/lease/released', (m) => {
      released.push(m);
    });
    const ip = await lease(MAC);
    expect(
      await r.core.handle(inb(clientPacket(MessageType.RELEASE, MAC, { ciaddr: ip, serverId: '10.77.0.1' }))),
    ).toBeUndefined();
    expect(r.store.ofMac(MAC)?.state).toBe('free');
    await r.bus.settled();
    expect(released[0]?.toObject()).toEqual({ mac: MAC, ip, reason: 'release' });
    expect(await lease(MAC)).toBe(ip);
  });

  it('DECLINE quarantines the address; the next DISCOVER gets another', async () => {
    const ip = await lease(MAC);
    await r.core.handle(
      inb(clientPacket(MessageType.DECLINE, MAC, { requested: ip, serverId: '10.77.0.1' })),
    );
    expect(r.store.declinedUntil(ip)).toBeGreaterThan(r.clock.t);
    const next = await lease(MAC);
    expect(next).not.toBe(ip);
    r.clock.t += 601_000;
    await r.core.expire();
    expect(r.store.declinedUntil(ip)).toBe(0);
  });

  it('INFORM → ACK without yiaddr or lease times, unicast to ciaddr', async () => {
    const out = await r.core.handle(
      inb(clientPacket(MessageType.INFORM, MAC, { ciaddr: '10.77.0.7', prl: [3, 6, 51] })),
    );
    expect(typeOf(out!.packet)).toBe(MessageType.ACK);
    expect(out!.packet.yiaddr).toBe('0.0.0.0');
    expect(getOption(out!.packet, 51)).toBeUndefined();
    expect(getOption(out!.packet, 58)).toBeUndefined();
    expect(opt(out!.packet, 3)).toEqual(['10.77.0.1']);
    expect(out!.to).toEqual({ address: '10.77.0.7', port: 68 });
  });

  it('a static host gets its fixed address, host name and options', async () => {
    const out = await r.core.handle(inb(clientPacket(MessageType.DISCOVER, '02:00:00:00:00:aa')));
    expect(out!.packet.yiaddr).toBe('10.77.0.50');
    expect(opt(out!.packet, 12)).toBe('printer');
    expect(opt(out!.packet, 42)).toEqual(['10.77.0.1']);
    // nobody else can have it
    expect(r.pool.refusal('10.77.0.50', MAC, r.config.subnets[0]!)).toMatch(/static host/);
    // a client that held it before the host was made static is NAKed at renewal
    await r.store.commit({ mac: MAC, ip: '10.77.0.50', expires: r.clock.t - 1 });
    await r.store.free(MAC, '10.77.0.50', 'expired');
    const renew = await r.core.handle(inb(clientPacket(MessageType.REQUEST, MAC, { ciaddr: '10.77.0.50' })));
    expect(typeOf(renew!.packet)).toBe(MessageType.NAK);
  });

  it('relayed: subnet chosen by giaddr, reply to giaddr:67, option 82 echoed last, NAK gets broadcast bit', async () => {
    const relayInfo = { code: 82, data: Buffer.from([1, 3, 0x61, 0x62, 0x63]) };
    const out = await r.core.handle(
      inb(clientPacket(MessageType.DISCOVER, MAC, { giaddr: '10.88.0.1', extra: [relayInfo] }), {
        address: '10.88.0.1',
        port: 67,
      }),
    );
    expect(out!.packet.yiaddr).toBe('10.88.0.10');
    expect(out!.to).toEqual({ address: '10.88.0.1', port: 67 });
    expect(out!.packet.giaddr).toBe('10.88.0.1');
    expect(out!.packet.options.at(-1)).toEqual(relayInfo);
    expect(opt(out!.packet, 51)).toBe(1200);
    const nak = await r.core.handle(
      inb(clientPacket(MessageType.REQUEST, MAC, { giaddr: '10.88.0.1', requested: '10.77.0.100' })),
    );
    expect(typeOf(nak!.packet)).toBe(MessageType.NAK);
    expect(nak!.packet.flags & 0x8000).toBe(0x8000);
    expect(nak!.to).toEqual({ address: '10.88.0.1', port: 67 });
    // a relay on a subnet we do not serve: dropped
    expect(
      await r.core.handle(inb(clientPacket(MessageType.DISCOVER, MAC, { giaddr: '10.99.0.1' }))),
    ).toBeUndefined();
  });

  it('/dhcpd/lookup: a prepended async listener that replies and STOPs overrides the pool', async () => {
    const seen: Message[] = [];
    r.bus.prepend(
      '/dhcpd/lookup',
      async (m, ctx) => {
        seen.push(m);
        await new Promise((res) => setTimeout(res, 5));
        if (m.str('mac') !== MAC) return; // not ours: the pool answers
        await ctx.reply({
          ip: '10.77.0.200',
          'lease-time': 60,
          source: 'ldap',
          options: { 'ntp-server': ['10.77.0.9'] },
        });
        return STOP;
      },
      { app: 'ldap-glue' },
    );
    expect(await lease(MAC)).toBe('10.77.0.200');
    expect(await lease(MAC2)).toBe('10.77.0.100');
    expect(seen[0]?.toObject()).toMatchObject({ mac: MAC, type: 'discover', subnet: '10.77.0.0/24' });
    expect(seen[1]?.toObject()).toMatchObject({ mac: MAC, type: 'request', requested: '10.77.0.200' });
    const ack = await r.core.handle(inb(clientPacket(MessageType.REQUEST, MAC, { ciaddr: '10.77.0.200' })));
    expect(opt(ack!.packet, 51)).toBe(60);
    expect(opt(ack!.packet, 42)).toEqual(['10.77.0.9']);
    expect(r.core.counters.lookupsAnswered).toBeGreaterThan(0);
  });

  it('/dhcpd/lookup: with the pool alone no message is sent; a listener that passes sees every lookup', async () => {
    const seen: string[] = [];
    const untap = r.bus.tap((path, m) => {
      if (path === '/dhcpd/lookup') seen.push(m.str('type'));
    });
    const ip = await lease(MAC);
    expect(seen).toEqual([]); // asked the pool directly
    expect(r.core.counters.lookupsAnswered).toBe(2);
    const h = r.bus.prepend('/dhcpd/lookup', function pass() {});
    expect(await lease(MAC2)).not.toBe(ip);
    expect(seen).toEqual(['discover', 'request']);
    h.remove();
    untap();
    expect(r.core.counters.lookupsAnswered).toBe(4);
  });

  it('/dhcpd/lookup: an answer outside the subnet or taken by another client falls back to the pool', async () => {
    const ip2 = await lease(MAC2);
    let answer = '10.99.0.5';
    r.bus.prepend('/dhcpd/lookup', async (_m, ctx) => {
      await ctx.reply({ ip: answer });
      return STOP;
    });
    const out = await r.core.handle(inb(clientPacket(MessageType.DISCOVER, MAC)));
    expect(out!.packet.yiaddr).toBe('10.77.0.101');
    answer = ip2;
    const out2 = await r.core.handle(inb(clientPacket(MessageType.DISCOVER, MAC)));
    expect(out2!.packet.yiaddr).toBe('10.77.0.101');
    expect(r.core.counters.lookupsRejected).toBe(2);
  });

  it('/dhcpd/lookup: a listener that STOPs without replying → the pool decides after lookupTimeout', async () => {
    await r.close();
    r = await rig(join(t.dir, 'leases2.jsonl'), { lookupTimeout: 50 });
    r.bus.prepend('/dhcpd/lookup', () => STOP);
    const t0 = Date.now();
    const out = await r.core.handle(inb(clientPacket(MessageType.DISCOVER, MAC)));
    expect(out!.packet.yiaddr).toBe('10.77.0.100');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(45);
  });

  it('pool exhausted: no offer; addresses are never handed to two clients', async () => {
    const got = new Set<string>();
    for (let i = 0; i < 10; i++) got.add(await lease(`02:00:00:00:01:${i.toString(16).padStart(2, '0')}`));
    expect(got.size).toBe(10);
    expect(await r.core.handle(inb(clientPacket(MessageType.DISCOVER, MAC)))).toBeUndefined();
    // after expiry the oldest free address is reused
    const released: Message[] = [];
    r.bus.append('/dhcpd/lease/released', (m) => {
      released.push(m);
    });
    r.clock.t += 700_000;
    await r.core.expire();
    await r.bus.settled();
    expect(released.map((m) => m.str('reason'))).toEqual(Array(10).fill('expired'));
    expect(got.has(await lease(MAC))).toBe(true);
  });

  it('replies fit the client’s maximum message size (57): unrequested options are dropped first', async () => {
    await r.close();
    const big: Record<string, string> = {};
    for (let c = 200; c < 210; c++) big[String(c)] = `hex:${'ab'.repeat(200)}`;
    r = await rig(join(t.dir, 'leases3.jsonl'), { options: big });
    const out = await r.core.handle(
      inb(
        clientPacket(MessageType.DISCOVER, MAC, {
          prl: [1, 3, 6],
          extra: [{ code: 57, data: Buffer.from([0x02, 0x40]) }],
        }),
      ),
    );
    expect(out!.maxSize).toBe(576);
    const buf = encodeReply(out!.packet, out!.maxSize);
    expect(buf.length).toBeLessThanOrEqual(576 - 28);
    const back = decodePacket(buf);
    expect(back.options.map((o) => o.code).slice(0, 8)).toEqual([53, 54, 51, 58, 59, 1, 3, 6]);
  });

  it('ignores BOOTREPLYs and packets without a message type', async () => {
    const p = clientPacket(MessageType.DISCOVER, MAC);
    expect(await r.core.handle(inb({ ...p, op: 2 }))).toBeUndefined();
    expect(await r.core.handle(inb({ ...p, options: [] }))).toBeUndefined();
    expect(await r.core.handle(inb({ ...p, chaddr: Buffer.alloc(6) }))).toBeUndefined();
    expect(r.core.counters.dropped).toBe(3);
  });
});
