import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket, { type DecodedPacket } from 'dns-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { type DnsForwarder, startDnsForwarder } from '../../../src/apps/dns/app.js';
import { parseDnsConfig } from '../../../src/apps/dns/config.js';
import { Upstream } from '../../../src/apps/dns/upstream.js';
import { Bus } from '../../../src/core/bus.js';
import { silentLogger } from '../../../src/core/log.js';
import { FakeUpstream, query, ZONE } from './fake.js';

/**
 * The sockets on loopback, in this process: the upstream client against scripted UDP/TCP servers
 * (ids, mismatched answers, truncation, failover, bounds), and the forwarder's own UDP and TCP
 * listeners (framing, several queries per connection, idle timeout).
 */

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

interface Scripted {
  readonly port: number;
  /** Every query received: its id and source port. */
  readonly seen: { id: number; port: number; proto: 'udp' | 'tcp' }[];
}

/**
 * A scripted upstream on 127.0.0.1: `udp(q)` returns the datagrams to send back for a query,
 * `tcp(q)` the frames (undefined: no TCP server).
 */
async function scripted(
  udp: (q: DecodedPacket) => Buffer[],
  tcp?: (q: DecodedPacket) => Buffer[],
): Promise<Scripted> {
  const seen: Scripted['seen'] = [];
  const u = dgram.createSocket('udp4');
  u.on('message', (buf, r) => {
    const q = dnsPacket.decode(buf);
    seen.push({ id: q.id ?? -1, port: r.port, proto: 'udp' });
    for (const out of udp(q)) u.send(out, r.port, r.address);
  });
  await new Promise<void>((r) => u.bind(0, '127.0.0.1', () => r()));
  const port = u.address().port;
  cleanups.push(() => new Promise<void>((r) => u.close(() => r())));
  if (tcp) {
    const s = net.createServer((c) => {
      let buf = Buffer.alloc(0);
      c.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
        const q = dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        seen.push({ id: q.id ?? -1, port: c.remotePort ?? 0, proto: 'tcp' });
        for (const out of tcp(q)) {
          const len = Buffer.alloc(2);
          len.writeUInt16BE(out.length);
          c.write(Buffer.concat([len, out]));
        }
      });
      c.on('error', () => {});
    });
    await new Promise<void>((r) => s.listen(port, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise<void>((r) => s.close(() => r())));
  }
  return { port, seen };
}

function reply(
  q: DecodedPacket,
  over: { id?: number; name?: string; tc?: boolean; rcode?: number; n?: number } = {},
): Buffer {
  const question = q.questions![0]!;
  const name = over.name ?? question.name;
  return dnsPacket.encode({
    id: over.id ?? q.id,
    type: 'response',
    flags: (over.tc ? dnsPacket.TRUNCATED_RESPONSE : 0) | dnsPacket.RECURSION_AVAILABLE | (over.rcode ?? 0),
    questions: [{ ...question, name }],
    answers: over.tc
      ? []
      : Array.from({ length: over.n ?? 1 }, (_, i) => ({
          name,
          type: 'A' as const,
          ttl: 60,
          data: `10.9.0.${i + 1}`,
        })),
  });
}

/** A port on 127.0.0.1 where nothing listens (ICMP port unreachable: ECONNREFUSED). */
async function closedPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('upstream client', () => {
  it('randomises ids and source ports; ignores answers with another id or question', async () => {
    const up = await scripted((q) => [
      reply(q, { id: ((q.id ?? 0) + 1) & 0xffff }),
      reply(q, { name: 'evil.test' }),
      reply(q),
    ]);
    const u = new Upstream([{ address: '127.0.0.1', port: up.port }], 1000);
    cleanups.push(() => u.close());
    for (let i = 0; i < 20; i++) {
      const r = await u.resolve('www.example.test', 'A', 'IN');
      expect(r.response.answers).toMatchObject([{ name: 'www.example.test', data: '10.9.0.1' }]);
      expect(r.tcp).toBe(false);
    }
    expect(u.counters.mismatched).toBe(40);
    expect(new Set(up.seen.map((s) => s.id)).size).toBeGreaterThan(15);
    expect(new Set(up.seen.map((s) => s.port)).size).toBeGreaterThan(15);
  });

  it('asks again over TCP when the UDP answer is truncated', async () => {
    const up = await scripted(
      (q) => [reply(q, { tc: true })],
      (q) => [reply(q, { n: 100 })],
    );
    const u = new Upstream([{ address: '127.0.0.1', port: up.port }], 1000);
    cleanups.push(() => u.close());
    const r = await u.resolve('big.example.test', 'A', 'IN');
    expect(r.tcp).toBe(true);
    expect(r.response.answers).toHaveLength(100);
    expect(up.seen.map((s) => s.proto)).toEqual(['udp', 'tcp']);
    expect(up.seen[0]!.id).not.toBe(up.seen[1]!.id);
    expect(u.counters).toMatchObject({ sent: 2, tcpRetries: 1 });
  });

  it('tries the next server on timeout, on refusal and on SERVFAIL/REFUSED; holds the silent one down', async () => {
    const silent = await scripted(() => []);
    const failing = await scripted((q) => [reply(q, { rcode: 2 })]);
    const good = await scripted((q) => [reply(q)]);
    const u = new Upstream(
      [
        { address: '127.0.0.1', port: silent.port },
        { address: '127.0.0.1', port: await closedPort() },
        { address: '127.0.0.1', port: failing.port },
        { address: '127.0.0.1', port: good.port },
      ],
      2000,
    );
    cleanups.push(() => u.close());
    const t0 = Date.now();
    const r = await u.resolve('www.example.test', 'A', 'IN');
    const ms = Date.now() - t0;
    expect(r.server).toBe(`127.0.0.1:${good.port}`);
    expect(ms).toBeGreaterThanOrEqual(450); // the silent server's share: 2000 / 4
    expect(ms).toBeLessThan(1500);
    // the silent and the refusing server are now asked last: the next question costs no wait
    const t1 = Date.now();
    expect((await u.resolve('other.example.test', 'A', 'IN')).server).toBe(`127.0.0.1:${good.port}`);
    expect(Date.now() - t1).toBeLessThan(300);
    expect(silent.seen).toHaveLength(1);
  });

  it('gives up within timeoutMs: a silent server (asked twice) or a refused port (at once)', async () => {
    const silent = await scripted(() => []);
    const u = new Upstream([{ address: '127.0.0.1', port: silent.port }], 600);
    cleanups.push(() => u.close());
    let t0 = Date.now();
    await expect(u.resolve('www.example.test', 'A', 'IN')).rejects.toThrow(/within 600 ms/);
    expect(Date.now() - t0).toBeLessThan(800);
    expect(silent.seen).toHaveLength(2);
    const refused = new Upstream([{ address: '127.0.0.1', port: await closedPort() }], 2000);
    t0 = Date.now();
    await expect(refused.resolve('www.example.test', 'A', 'IN')).rejects.toThrow(/ECONNREFUSED/);
    expect(Date.now() - t0).toBeLessThan(300);
  });
});

describe('listening sockets', () => {
  let dns: DnsForwarder;
  async function start(extra: Record<string, unknown> = {}): Promise<DnsForwarder> {
    const bus = new Bus({ name: 'dns', logger: silentLogger });
    dns = await startDnsForwarder(
      bus,
      parseDnsConfig({ listen: ['127.0.0.1'], port: 0, upstream: ['127.0.0.1:9'], ...extra }),
      { log: silentLogger, resolver: new FakeUpstream(ZONE) },
    );
    cleanups.push(() => bus.close());
    cleanups.push(() => dns.close());
    return dns;
  }

  function tcpClient(port: number): { sock: net.Socket; answers: DecodedPacket[]; closed: Promise<void> } {
    const sock = net.connect(port, '127.0.0.1');
    const answers: DecodedPacket[] = [];
    let buf = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        answers.push(dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0))));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
    });
    const closed = new Promise<void>((r) => sock.on('close', () => r()));
    cleanups.push(() => sock.destroy());
    return { sock, answers, closed };
  }
  const frame = (b: Buffer): Buffer => Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);

  it('answers UDP on the listen address', async () => {
    const d = await start();
    const c = dgram.createSocket('udp4');
    cleanups.push(() => c.close());
    const got = new Promise<Buffer>((r) => c.once('message', (m) => r(m)));
    c.send(query('www.example.test', 'A', { id: 321 }), d.addresses[0]!.port, '127.0.0.1');
    const p = dnsPacket.decode(await got);
    expect(p.id).toBe(321);
    expect(p.answers).toMatchObject([{ data: '10.77.1.80' }]);
  });

  it('TCP: several queries on one connection, in one write or a byte at a time', async () => {
    const d = await start();
    const { sock, answers } = tcpClient(d.addresses[0]!.port);
    await new Promise((r) => sock.once('connect', r));
    sock.write(
      Buffer.concat([
        frame(query('www.example.test', 'A', { id: 1 })),
        frame(query('nope.example.test', 'A', { id: 2 })),
        frame(query('safe.example.test', 'A', { id: 3 })),
      ]),
    );
    const slow = frame(query('www.example.test', 'A', { id: 4 }));
    for (const byte of slow) {
      sock.write(Buffer.from([byte]));
      await new Promise((r) => setTimeout(r, 1));
    }
    for (let i = 0; i < 100 && answers.length < 4; i++) await new Promise((r) => setTimeout(r, 10));
    expect(answers.map((p) => p.id).sort()).toEqual([1, 2, 3, 4]);
    const byId = new Map(answers.map((p) => [p.id, p]));
    expect((byId.get(2)!.flags ?? 0) & 0xf).toBe(3);
    expect(byId.get(3)!.answers).toMatchObject([{ data: '10.77.1.99' }]);
    expect(d.tcpClients()).toBe(1);
  });

  it('TCP: an idle connection is closed after tcpIdleMs; a malformed frame does not end it', async () => {
    const d = await start({ tcpIdleMs: 300 });
    const { sock, answers, closed } = tcpClient(d.addresses[0]!.port);
    await new Promise((r) => sock.once('connect', r));
    sock.write(frame(Buffer.from('garbage!')));
    sock.write(frame(query('www.example.test', 'A', { id: 9 })));
    const t0 = Date.now();
    await closed;
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(answers.map((p) => p.id)).toEqual([9]);
    expect(d.forwarder.counters.malformed).toBe(1);
  });
});
