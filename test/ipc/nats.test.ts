import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import { isMetanetError } from '../../src/core/errors.js';
import { STOP } from '../../src/core/listener.js';
import { typed } from '../../src/core/message.js';
import { attachNats } from '../../src/ipc/nats/attach.js';
import { unpack } from '../../src/ipc/nats/frames.js';
import { F, fromWire } from '../../src/ipc/wire.js';
import { have } from '../support/env.js';
import { freePort, type NatsServer, startNats } from '../support/nats.js';

const ok = have(['nats-server']);

let nats: NatsServer;
const buses: Bus[] = [];

/** A bus on "machine" `host`, on NATS. */
async function machine(host: string, name: string): Promise<Bus> {
  const b = new Bus({ name });
  buses.push(b);
  await attachNats(b, { servers: nats.url, host, connection: { reconnectTimeWait: 50, reconnectJitter: 0 } });
  return b;
}

/** Two machines: m1 (daemon d1) and m2.lan (daemon d2: /echo, /count, /chain with a stock listener). */
async function pair(): Promise<{ b1: Bus; b2: Bus; count: () => number }> {
  const b1 = await machine('m1', 'd1');
  const b2 = await machine('m2.lan', 'd2');
  let n = 0;
  b2.append('/echo', function echo(m, ctx) {
    if (ctx.replyTo) void ctx.reply(m.without('reply-to').with({ from: 'd2' }));
  });
  b2.append('/count', function count() {
    n++;
  });
  b2.append(
    '/chain',
    function stock(_m, ctx) {
      if (ctx.replyTo) void ctx.reply({ from: 'stock' });
    },
    { stock: true },
  );
  return { b1, b2, count: () => n };
}

describe.skipIf(!ok)('NATS: two machines in one process', () => {
  beforeAll(async () => {
    nats = await startNats();
  });
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((b) => b.close(100)));
  });
  afterAll(async () => {
    await nats?.stop();
  });

  it('request/reply keeps every tuple type, and the reply-to is rewritten to host/daemon', async () => {
    const { b1, b2 } = await pair();
    let seen = '';
    b2.prepend('/echo', (_m, ctx) => {
      seen = ctx.replyTo ?? '';
    });
    const r = await b1.request('m2.lan/d2:/echo', {
      s: 'hi',
      i: 5,
      big: 2n ** 60n,
      wide: 2 ** 40,
      neg: -3,
      f: typed.float(2),
      ok: false,
      b: Buffer.from([0, 255]),
      z: null,
      l: { a: 1, inner: { x: 'y' } },
    });
    expect(seen).toMatch(/^m1\/d1:\/system\/reply\/\d+$/);
    expect(r.str('from')).toBe('d2');
    expect(r.str('s')).toBe('hi');
    expect(r.int('i')).toBe(5);
    expect(r.bigint('big')).toBe(2n ** 60n);
    expect(r.int('wide')).toBe(2 ** 40);
    expect(r.int('neg')).toBe(-3);
    expect(r.get('f')).toEqual({ tag: 'f', type: 'float', value: 2 });
    expect(r.bool('ok')).toBe(false);
    expect(Buffer.from(r.bytes('b'))).toEqual(Buffer.from([0, 255]));
    expect(r.isNull('z')).toBe(true);
    expect(r.list('l').list('inner').str('x')).toBe('y');
  });

  it('send reports the remote chain: delivered, and undelivered when nobody listens', async () => {
    const { b1, count } = await pair();
    expect(await b1.send('m2.lan/d2:/count', { n: 1 })).toMatchObject({
      delivered: true,
      listeners: 1,
      stopped: false,
    });
    expect(count()).toBe(1);
    expect(await b1.send('m2.lan/d2:/nobody')).toMatchObject({ delivered: false, listeners: 0 });
    // an address naming this bus's own host and daemon stays local
    b1.append('/here', () => STOP);
    expect(await b1.send('m1/d1:/here')).toMatchObject({ delivered: true, stopped: true });
  });

  it('an unknown host or daemon fails at once with ENODAEMON naming both', async () => {
    const { b1 } = await pair();
    const t0 = performance.now();
    const e = await b1.send('ghost/d2:/echo').catch((x: unknown) => x);
    const ms = performance.now() - t0;
    expect(isMetanetError(e, 'ENODAEMON')).toBe(true);
    expect(String(e)).toContain('daemon "d2" on host "ghost"');
    expect(ms).toBeLessThan(500);
    const e2 = await b1.request('m2.lan/nope:/echo').catch((x: unknown) => x);
    expect(isMetanetError(e2, 'ENODAEMON')).toBe(true);
    const h = b1.prepend('m2.lan/nope:/x', () => STOP);
    await expect(h.ready).rejects.toMatchObject({ code: 'ENODAEMON' });
  });

  it('a remote listener stands in the chain where asked and stops it', async () => {
    const { b1, b2 } = await pair();
    const h = b1.prepend('m2.lan/d2:/chain', async function guard(m, ctx) {
      if (m.has('let-through')) return;
      if (ctx.replyTo) await ctx.reply({ from: 'guard', mailbox: ctx.mailbox });
      return STOP;
    });
    await h.ready;
    const chain = b2.mailbox('/chain')!.listeners;
    expect(chain.map((l) => l.name)).toEqual(['guard', 'stock']);
    expect(chain[0]!.remote).toMatch(/^m1\/d1\[pid \d+\]$/);
    const r = await b1.request('m2.lan/d2:/chain', {});
    expect(r.str('from')).toBe('guard');
    expect(r.str('mailbox')).toBe('/chain');
    expect(await b2.send('/chain', {})).toMatchObject({ stopped: true, listeners: 1 });
    expect(await b2.send('/chain', { 'let-through': true })).toMatchObject({ stopped: false, listeners: 2 });
    // after/before another listener by identity
    const h2 = b1.listen('m2.lan/d2:/chain', function late() {}, { position: { after: { stock: true } } });
    await h2.ready;
    expect(b2.mailbox('/chain')!.listeners.map((l) => l.name)).toEqual(['guard', 'stock', 'late']);
    h.remove();
    h2.remove();
    await expect
      .poll(() => b2.mailbox('/chain')!.listeners.map((l) => l.name), { timeout: 2000 })
      .toEqual(['stock']);
  });

  it('a remote listener that does not answer in time: fail-open goes on, fail-closed stops', async () => {
    const { b1, b2 } = await pair();
    const never = (): Promise<undefined> => new Promise(() => {});
    const open = b1.listen('m2.lan/d2:/chain', never, { position: 'prepend', timeout: 150 });
    await open.ready;
    const t0 = performance.now();
    const r = await b2.send('/chain', {});
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
    expect(r).toMatchObject({ stopped: false, listeners: 2 });
    expect(r.timedOut).toHaveLength(1);
    open.remove();
    const closed = b1.listen('m2.lan/d2:/chain', never, {
      position: 'prepend',
      timeout: 150,
      onTimeout: 'stop',
    });
    await closed.ready;
    await expect.poll(() => b2.mailbox('/chain')!.listeners.length, { timeout: 2000 }).toBe(2);
    expect(await b2.send('/chain', {})).toMatchObject({ stopped: true, listeners: 1 });
  });

  it('a remote listener whose process left is dropped at the next message (no responders)', async () => {
    const { b1, b2 } = await pair();
    const b3 = await machine('m3', 'd3');
    await b3.prepend('m2.lan/d2:/chain', () => STOP).ready;
    expect(b2.mailbox('/chain')!.listeners).toHaveLength(2);
    await b3.close(100);
    const r = await b1.send('m2.lan/d2:/chain', {});
    expect(r).toMatchObject({ stopped: false });
    expect(b2.mailbox('/chain')!.listeners.map((l) => l.name)).toEqual(['stock']);
  });

  it('a listener error on the remote machine is reported in the result, the chain goes on', async () => {
    const { b1, b2 } = await pair();
    await b1.prepend('m2.lan/d2:/chain', function broken() {
      throw new Error('boom');
    }).ready;
    const r = await b2.send('/chain', {});
    expect(r.stopped).toBe(false);
    expect(r.errors.map((e) => e.error).join()).toContain('boom');
    const viaNats = await b1.send('m2.lan/d2:/chain', {});
    expect(viaNats.errors[0]!.error).toContain('boom');
  });

  it('a reply-to naming another daemon of the sending machine is relayed through the sender', async () => {
    const { b1, b2 } = await pair();
    let seen = '';
    b2.prepend('/echo', (_m, ctx) => {
      seen = ctx.replyTo ?? '';
    });
    await b1.send('m2.lan/d2:/echo', { 'reply-to': 'other:/inbox' });
    expect(seen).toBe('m1/d1:/system/relay/other/inbox');
  });

  it('a message larger than the NATS max_payload fails its send clearly', async () => {
    const { b1 } = await pair();
    const e = await b1.send('m2.lan/d2:/echo', { b: Buffer.alloc(2 * 1024 * 1024) }).catch((x: unknown) => x);
    expect(isMetanetError(e, 'EUNREACHABLE')).toBe(true);
    expect(String(e)).toMatch(/cannot reach m2\.lan\/d2:\/echo over NATS: .*payload/i);
    expect((await b1.request('m2.lan/d2:/echo', { after: 'big' })).str('after')).toBe('big');
  });

  it('attachNats refuses a nameless bus, a bad host, and says when no NATS server answers', async () => {
    await expect(attachNats(new Bus(), { servers: nats.url })).rejects.toMatchObject({ code: 'ECONFIG' });
    const b = new Bus({ name: 'x' });
    buses.push(b);
    await expect(attachNats(b, { servers: nats.url, host: 'a/b' })).rejects.toThrow(/bad host name "a\/b"/);
    await expect(attachNats(b, { servers: nats.url, host: 'h', prefix: 'a b' })).rejects.toMatchObject({
      code: 'ECONFIG',
    });
    const port = await freePort();
    const t0 = performance.now();
    await expect(attachNats(b, { servers: `nats://127.0.0.1:${port}`, host: 'h' })).rejects.toThrow(
      new RegExp(`cannot connect to NATS at nats://127.0.0.1:${port}`),
    );
    expect(performance.now() - t0).toBeLessThan(2000);
    await expect(b.send('h2/y:/z')).rejects.toMatchObject({ code: 'ENOREMOTE' });
  });

  it('bad payloads get an EPROTO answer and the daemon keeps serving', async () => {
    const { b1 } = await pair();
    const nc: NatsConnection = await connect({ servers: nats.url });
    try {
      for (const bad of [new Uint8Array([0xc1]), new Uint8Array([0x93, 1, 2, 3]), new Uint8Array()]) {
        const r = await nc.request('metanet.m2~lan.d2.send', bad, { timeout: 1000 });
        const f = unpack(r.data, [F.ERROR]);
        expect(f[2]).toBe('EPROTO');
      }
      const r = await nc.request('metanet.m2~lan.d2.listen', new Uint8Array([0x92, 3, 0]), { timeout: 1000 });
      expect(unpack(r.data, [F.ERROR])[3]).toMatch(/field path must be a string/);
      const badPath = await nc.request(
        'metanet.m2~lan.d2.send',
        new Uint8Array([0x94, 1, 0, 0xa3, 0x61, 0x2f, 0x62, 0x90]), // [SEND, 0, "a/b", []]
        { timeout: 1000 },
      );
      expect(unpack(badPath.data, [F.ERROR])[2]).toBe('EBADPATH');
      expect(fromWire([], 'x').tuples).toEqual([]);
    } finally {
      await nc.close();
    }
    expect((await b1.request('m2.lan/d2:/echo', { still: 'here' })).str('still')).toBe('here');
  });
});
