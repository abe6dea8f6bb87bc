import { createSocket, type Socket } from 'node:dgram';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Bus } from '../../../src/core/bus.js';
import { STOP } from '../../../src/core/listener.js';
import { silentLogger } from '../../../src/core/log.js';
import { parseConfig } from '../../../src/services/dhcp/config.js';
import { checkConfigOption } from '../../../src/services/dhcp/optionset.js';
import {
  type DhcpPacket,
  decodePacket,
  encodePacket,
  MessageType,
} from '../../../src/services/dhcp/packet.js';
import { type DhcpServer, startDhcpServer } from '../../../src/services/dhcp/server.js';
import { STATS, STATS_REPLY } from '../../../src/services/dhcp/table.js';
import { validate } from '../../../src/services/table.js';
import { until } from '../../support/wait.js';
import { clientPacket, tmp, typeOf } from './helpers.js';

/**
 * The server with its real sockets, in this process, on loopback: the test plays a relay agent
 * (giaddr = 127.0.0.1), so replies come back unicast to it. Ports are the OS's choice.
 */
async function freePort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('DHCP server sockets (in process, loopback relay)', () => {
  let t: ReturnType<typeof tmp>;
  let bus: Bus;
  let server: DhcpServer;
  let relay: Socket;
  const replies: DhcpPacket[] = [];

  beforeEach(async () => {
    t = tmp();
    bus = new Bus({ name: 'dhcpd', logger: silentLogger });
    relay = createSocket('udp4');
    await new Promise<void>((r) => relay.bind(0, '127.0.0.1', () => r()));
    relay.on('message', (b) => replies.push(decodePacket(b)));
    const config = parseConfig(
      {
        listen: [{ address: '127.0.0.1' }],
        subnets: [
          { subnet: '127.0.0.0/8', pool: { start: '127.0.0.100', end: '127.0.0.200' }, leaseTime: 120 },
        ],
        leaseFile: join(t.dir, 'leases.jsonl'),
      },
      checkConfigOption,
    );
    server = await startDhcpServer(bus, config, {
      port: await freePort(),
      relayPort: relay.address().port,
      wildcard: false,
      logger: silentLogger,
    });
  });

  afterEach(async () => {
    await server.close();
    await new Promise<void>((r) => relay.close(() => r()));
    await bus.close();
    replies.length = 0;
    t.cleanup();
  });

  /** Send and wait for the reply, retransmitting every 300 ms like a client (loopback may drop under a burst). */
  async function exchange(p: DhcpPacket): Promise<DhcpPacket> {
    const before = replies.length;
    const end = Date.now() + 3000;
    let next = 0;
    while (replies.length === before) {
      if (Date.now() > end) throw new Error('no reply within 3 s');
      if (Date.now() >= next) {
        relay.send(encodePacket(p), server.port, '127.0.0.1');
        next = Date.now() + 300;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    return replies[replies.length - 1]!;
  }

  async function lease(mac: string): Promise<string> {
    const offer = await exchange(clientPacket(MessageType.DISCOVER, mac, { giaddr: '127.0.0.1', xid: 1 }));
    expect(typeOf(offer)).toBe(MessageType.OFFER);
    const ack = await exchange(
      clientPacket(MessageType.REQUEST, mac, {
        giaddr: '127.0.0.1',
        xid: 2,
        requested: offer.yiaddr,
        serverId: '127.0.0.1',
      }),
    );
    expect(typeOf(ack)).toBe(MessageType.ACK);
    return ack.yiaddr;
  }

  it('relayed DISCOVER/REQUEST over real sockets; /dhcpd/leases answers', async () => {
    expect(await lease('02:00:00:00:00:01')).toBe('127.0.0.100');
    const m = await bus.request('/dhcpd/leases', {});
    expect(m.int('count')).toBe(1);
    expect(m.list('lease').str('mac')).toBe('02:00:00:00:00:01');
  });

  it('an in-process listener prepended on /dhcpd/lookup overrides the pool', async () => {
    bus.prepend(
      '/dhcpd/lookup',
      async (m, ctx) => {
        await ctx.reply({ ip: m.str('mac').endsWith('01') ? '127.0.0.77' : '10.0.0.1' });
        return STOP;
      },
      { app: 'glue' },
    );
    expect(await lease('02:00:00:00:00:01')).toBe('127.0.0.77');
    expect(await lease('02:00:00:00:00:02')).toBe('127.0.0.100'); // bad answer: the pool decides
  });

  it('/dhcpd/stats replies with every field of STATS_REPLY, each an int; a wrong option length is counted there', async () => {
    const p = clientPacket(MessageType.DISCOVER, '02:00:00:00:00:07', { giaddr: '127.0.0.1', xid: 7 });
    p.options.push({ code: 54, data: Buffer.from([127, 0]) });
    relay.send(encodePacket(p), server.port, '127.0.0.1');
    expect(await lease('02:00:00:00:00:08')).toBe('127.0.0.100'); // after the bad one, in order
    const s = await bus.request('/dhcpd/stats', {});
    const fields = [...s];
    expect(fields.map((t) => t.tag)).toEqual(STATS_REPLY.map((t) => t.tag));
    validate({ ...STATS, tuples: STATS_REPLY }, '/dhcpd/stats reply', s);
    expect(s.toObject()).toMatchObject({
      received: 3,
      'bad-option-length': 1,
      dropped: 1,
      offers: 1,
      acks: 1,
      leases: 1,
    });
    // `metanet ls` shows the mailbox's doc: it names every field
    const doc = bus.mailbox('/dhcpd/stats')!.tuples.str('doc');
    expect(doc).toMatch(/^request: replies with ints/);
    for (const t of STATS_REPLY) expect(doc).toContain(t.tag);
  });

  it('fuzz: random datagrams are counted as malformed and never stop it', async () => {
    let sent = 0;
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 700 }), async (bytes) => {
        await new Promise<void>((r) => relay.send(bytes, server.port, '127.0.0.1', () => r()));
        sent++;
      }),
      { numRuns: 300 },
    );
    expect(await lease('02:00:00:00:00:09')).toBe('127.0.0.100');
    const s = await bus.request('/dhcpd/stats', {});
    // the socket buffer may drop part of a burst sent from this same process; most must arrive
    expect(s.int('malformed')).toBeGreaterThan(sent / 2);
    expect(s.int('acks')).toBe(1);
  });
});

describe('DHCP server under overload (in process, loopback relay)', () => {
  it('a DISCOVER that waited past the intake`s staleMs is shed: counted in /dhcpd/stats, no OFFER', async () => {
    const t = tmp();
    const bus = new Bus({ name: 'dhcpd', logger: silentLogger });
    const relay = createSocket('udp4');
    await new Promise<void>((r) => relay.bind(0, '127.0.0.1', () => r()));
    const replies: DhcpPacket[] = [];
    relay.on('message', (b) => replies.push(decodePacket(b)));
    const config = parseConfig(
      {
        listen: [{ address: '127.0.0.1' }],
        subnets: [{ subnet: '127.0.0.0/8', pool: { start: '127.0.0.100', end: '127.0.0.200' } }],
        leaseFile: join(t.dir, 'leases.jsonl'),
      },
      checkConfigOption,
    );
    // staleMs 0: every DISCOVER has waited "too long" by its turn, as under a backlog of seconds.
    const server = await startDhcpServer(bus, config, {
      port: await freePort(),
      relayPort: relay.address().port,
      wildcard: false,
      logger: silentLogger,
      intake: { staleMs: 0 },
    });
    try {
      const p = clientPacket(MessageType.DISCOVER, '02:00:00:00:00:31', { giaddr: '127.0.0.1', xid: 31 });
      // Sent again on each poll (loopback may drop a datagram), until one has been shed.
      const s = (await until(async () => {
        relay.send(encodePacket(p), server.port, '127.0.0.1');
        const x = await bus.request('/dhcpd/stats', {});
        return x.int('shed') > 0 ? x : undefined;
      }, 'a DISCOVER shed'))!;
      expect(s.int('shed')).toBeGreaterThanOrEqual(1);
      expect(s.int('dropped')).toBeGreaterThanOrEqual(s.int('shed'));
      expect(s.int('offers')).toBe(0);
      expect(replies).toEqual([]);
    } finally {
      await server.close();
      await new Promise<void>((r) => relay.close(() => r()));
      await bus.close();
      t.cleanup();
    }
  });
});
