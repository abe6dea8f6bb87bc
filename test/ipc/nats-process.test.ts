import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import { isMetanetError } from '../../src/core/errors.js';
import { STOP } from '../../src/core/listener.js';
import type { Message } from '../../src/core/message.js';
import { typed } from '../../src/core/message.js';
import { attachNats } from '../../src/ipc/nats/attach.js';
import { ROOT, runTs, stop } from '../support/daemons.js';
import { have } from '../support/env.js';
import { type NatsServer, startNats } from '../support/nats.js';
import { until, waitForLine } from '../support/wait.js';

const FIXTURE = join(ROOT, 'test/ipc/fixtures/nats-daemon.ts');
const ok = have(['nats-server']);

let nats: NatsServer;
let b1: Bus;
let fx: ChildProcess | undefined;

/** The other machine: daemon fxd on host p2, in its own process, guarding m1/d1:/guarded. */
async function startOther(): Promise<ChildProcess> {
  const c = runTs(FIXTURE, [nats.url, 'p2', 'fxd', 'm1/d1:/guarded']);
  fx = c;
  // One wait for the last line only: the fixture prints `attached` after `ready p2/fxd`, and the two
  // lines can reach us in one chunk (a busy machine), where a second waitForLine would never see
  // `attached` (waitForLine drops what follows its match). On failure the tail shows how far it got.
  await waitForLine(c, /^attached$/, 30000);
  return c;
}

function quiet(p: Promise<Message>): Promise<Message | undefined> {
  return p.catch(() => undefined);
}

describe.skipIf(!ok)('NATS: a daemon in another process', () => {
  beforeAll(async () => {
    nats = await startNats();
    b1 = new Bus({ name: 'd1' });
    await attachNats(b1, {
      servers: nats.url,
      host: 'm1',
      connection: { reconnectTimeWait: 50, reconnectJitter: 0 },
    });
    b1.append('/guarded', function stock(_m, ctx) {
      if (ctx.replyTo) void ctx.reply({ from: 'stock' });
    });
    await startOther();
  });
  afterAll(async () => {
    await b1?.close(100);
    if (fx) await stop(fx, 'SIGKILL');
    await nats?.stop();
  });

  it('request/reply and send results cross the process boundary with every tuple type', async () => {
    const r = await b1.request('p2/fxd:/echo', {
      s: 'hi',
      big: 2n ** 60n,
      f: typed.float(1.5),
      ok: true,
      b: Buffer.from([1, 2]),
      z: null,
      l: { x: 'y' },
    });
    expect(r.str('from')).toBe('fxd');
    expect(r.bigint('big')).toBe(2n ** 60n);
    expect(r.float('f')).toBe(1.5);
    expect(r.bool('ok')).toBe(true);
    expect([...r.bytes('b')]).toEqual([1, 2]);
    expect(r.isNull('z')).toBe(true);
    expect(r.list('l').str('x')).toBe('y');
    expect(await b1.send('p2/fxd:/echo', { no: 'reply' })).toMatchObject({ delivered: true, listeners: 1 });
  });

  it("the other process's listener stands first in this bus's chain and stops it", async () => {
    const chain = b1.mailbox('/guarded')!.listeners;
    expect(chain.map((l) => l.name)).toEqual(['guardian', 'stock']);
    expect(chain[0]!.remote).toMatch(/^p2\/fxd\[pid \d+\]$/);
    expect((await b1.request('/guarded', {})).str('from')).toBe('fxd');
    expect(await b1.send('/guarded', {})).toMatchObject({ stopped: true, listeners: 1 });
  });

  it('the process killed: ENODAEMON at once, its listener dropped; restarted: listeners come back', async () => {
    const h = b1.prepend('p2/fxd:/chain', async function guard(_m, ctx) {
      if (ctx.replyTo) await ctx.reply({ from: 'guard-m1' });
      return STOP;
    });
    await h.ready;
    expect((await b1.request('p2/fxd:/chain', {})).str('from')).toBe('guard-m1');
    await stop(fx!, 'SIGKILL');
    // The process is gone, but on a busy machine nats-server may not have dropped its connection yet:
    // until it has, a send is routed to the dead subscription and times out instead of failing at once.
    const gone = await until(
      async () =>
        isMetanetError(
          await b1.request('p2/fxd:/echo', {}, { timeout: 300 }).catch((x: unknown) => x),
          'ENODAEMON',
        ),
      'ENODAEMON from p2/fxd once nats-server has dropped the killed connection',
      5000,
    );
    expect(gone).toBe(true);
    const e = await b1.send('p2/fxd:/echo', {}).catch((x: unknown) => x);
    expect(isMetanetError(e, 'ENODAEMON')).toBe(true);
    expect(await b1.send('/guarded', {})).toMatchObject({ stopped: false });
    expect(b1.mailbox('/guarded')!.listeners.map((l) => l.name)).toEqual(['stock']);
    await startOther();
    // the new process announced itself: this bus re-attached its listener there
    const back = await until(
      async () =>
        (await quiet(b1.request('p2/fxd:/chain', {}, { timeout: 500 })))?.str('from') === 'guard-m1',
      'listener re-attached in the restarted process',
      5000,
    );
    expect(back).toBe(true);
    h.remove();
  });

  it('nats-server restarted: both sides reconnect, requests and remote listeners work again', async () => {
    const h = b1.prepend('p2/fxd:/chain', async function guard2(_m, ctx) {
      if (ctx.replyTo) await ctx.reply({ from: 'guard2' });
      return STOP;
    });
    await h.ready;
    await nats.restart();
    const t0 = performance.now();
    await until(
      async () =>
        (await quiet(b1.request('p2/fxd:/echo', { n: 1 }, { timeout: 500 })))?.str('from') === 'fxd',
      'p2/fxd reachable after the NATS restart',
      10000,
    );
    const ms = performance.now() - t0;
    process.stderr.write(`nats-process: reachable again ${ms.toFixed(0)} ms after nats-server restarted\n`);
    await until(
      async () => (await quiet(b1.request('p2/fxd:/chain', {}, { timeout: 500 })))?.str('from') === 'guard2',
      'our listener in p2/fxd after the restart',
      5000,
    );
    await until(
      async () => (await quiet(b1.request('/guarded', {}, { timeout: 500 })))?.str('from') === 'fxd',
      "p2/fxd's listener in our chain after the restart",
      5000,
    );
    h.remove();
  });
});
