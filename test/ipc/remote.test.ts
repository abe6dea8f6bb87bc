import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import { isMetanetError } from '../../src/core/errors.js';
import { STOP } from '../../src/core/listener.js';
import { typed } from '../../src/core/message.js';
import { attachClient } from '../../src/ipc/daemon.js';
import { cleanup, ROOT, runTs, startFixture, stopAll, tempDir } from '../support/daemons.js';
import { until, waitForLine } from '../support/wait.js';

let dir: string;

const buses: Bus[] = [];

function client(name = `t${buses.length}-${process.pid}`): Bus {
  const b = new Bus({ name });
  attachClient(b, { dir });
  buses.push(b);
  return b;
}

beforeAll(async () => {
  dir = tempDir();
  await startFixture('fx', dir);
});
afterEach(async () => {
  await Promise.all(buses.splice(0).map((b) => b.close(100)));
});
afterAll(async () => {
  await stopAll();
  cleanup(dir);
});

describe('remote mailboxes', () => {
  it('request/reply across processes keeps every tuple type', async () => {
    const b = client();
    const r = await b.request('fx:/echo', {
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
    expect(r.str('from')).toBe('fx');
    expect(r.bigint('big')).toBe(2n ** 60n);
    expect(r.int('wide')).toBe(2 ** 40);
    expect(r.get('f')).toEqual({ tag: 'f', type: 'float', value: 2 });
    expect(Buffer.from(r.bytes('b'))).toEqual(Buffer.from([0, 255]));
    expect(r.isNull('z')).toBe(true);
    expect(r.list('l').list('inner').str('x')).toBe('y');
  });

  it('replies read into the reused read buffer stay intact: big ones across reads, many at once, bytes kept', async () => {
    const b = client();
    // a reply of ~600 KB arrives over many reads into the one 64 KB buffer; its bytes must be a copy
    const big = Buffer.alloc(600_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 0xff;
    const r = await b.request('fx:/echo', { blob: big, s: 'é'.repeat(3000) });
    expect(Buffer.compare(Buffer.from(r.bytes('blob')), big)).toBe(0);
    expect(r.str('s')).toBe('é'.repeat(3000));
    // 300 requests at once: their replies come many to a read; each keeps its own bytes
    const replies = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        b.request('fx:/echo', { i, b: Buffer.from([i & 0xff, i >> 8, 7]) }),
      ),
    );
    // later reads reused the buffer: every earlier reply still holds what was sent
    replies.forEach((x, i) => {
      expect(x.int('i')).toBe(i);
      expect([...x.bytes('b')]).toEqual([i & 0xff, i >> 8, 7]);
    });
  });

  it('send reports delivery, and undelivered for a mailbox nobody listens to', async () => {
    const b = client();
    const ok = await b.send('fx:/count', { n: 1 });
    expect(ok).toMatchObject({ delivered: true, listeners: 1, stopped: false });
    const none = await b.send('fx:/nobody/here', { n: 1 });
    expect(none).toMatchObject({ delivered: false, listeners: 0 });
  });

  it('an unknown daemon is a clear error naming the daemon and the directory', async () => {
    const b = client();
    const e = await b.send('ghost:/x', {}).catch((x: unknown) => x);
    expect(isMetanetError(e, 'ENODAEMON')).toBe(true);
    expect(String(e)).toContain('"ghost"');
    expect(String(e)).toContain(dir);
  });

  it('a bad path is refused by the daemon with EBADPATH and the connection stays usable', async () => {
    const b = client();
    const t = b as unknown as {
      transports: { link(n: string): Promise<{ send(p: string, m: unknown): Promise<unknown> }> }[];
    };
    const link = await t.transports[0]!.link('fx');
    const e = await link
      .send('no-slash', (await import('../../src/core/message.js')).msg({}))
      .catch((x: unknown) => x);
    expect(isMetanetError(e, 'EBADPATH')).toBe(true);
    expect((await b.request('fx:/echo', { x: 1 })).int('x')).toBe(1);
  });

  it('wait() on a remote mailbox sees a message another process sends there', async () => {
    const a = client();
    const b = client();
    const w = a.wait('fx:/echo', { match: { k: 'v' }, timeout: 5000 });
    await until(async () => {
      await b.send('fx:/echo', { k: 'v' });
      return Promise.race([w.then(() => true), new Promise((r) => setTimeout(() => r(false), 50))]);
    }, 'the remote wait to see the message');
    expect((await w).str('k')).toBe('v');
  });
});

describe('remote listeners', () => {
  it('a prepended remote listener stops the chain and its reply wins; removal restores the stock answer', async () => {
    const glue = client();
    const other = client();
    const h = glue.prepend(
      'fx:/chain',
      async function ldap(_m, ctx) {
        if (ctx.replyTo) await ctx.reply({ from: 'glue' });
        return STOP;
      },
      { app: 'glue' },
    );
    await h.ready;
    expect((await other.request('fx:/chain', {})).str('from')).toBe('glue');
    const r = await other.send('fx:/chain', {});
    expect(r.stopped).toBe(true);
    expect(r.stoppedBy?.identity.str('app')).toBe('glue');
    h.remove();
    await until(async () => (await other.request('fx:/chain', {})).str('from') === 'stock', 'stock answer');
  });

  it('placed before/after another listener by identity', async () => {
    const a = client();
    const order: string[] = [];
    const h1 = a.listen('fx:/chain', () => void order.push('after-stock'), {
      position: { after: { stock: true } },
      identity: { me: 1 },
    });
    const h2 = a.listen('fx:/chain', () => void order.push('before-stock'), {
      position: { before: { stock: true } },
      identity: { me: 2 },
    });
    await Promise.all([h1.ready, h2.ready]);
    await a.send('fx:/chain', {});
    expect(order).toEqual(['before-stock', 'after-stock']);
    h1.remove();
    h2.remove();
  });

  it('a remote listener that misses its timeout: fail-open goes on, fail-closed stops', async () => {
    const a = client();
    const slow = async (): Promise<typeof STOP> => {
      await new Promise((r) => setTimeout(r, 400));
      return STOP;
    };
    const open = a.listen('fx:/chain', slow, {
      position: 'prepend',
      timeout: 100,
      identity: { slow: 'open' },
    });
    await open.ready;
    let r = await a.send('fx:/chain', {});
    expect(r).toMatchObject({ stopped: false, listeners: 2 });
    expect(r.timedOut).toHaveLength(1);
    open.remove();
    const closed = a.listen('fx:/chain', slow, {
      position: 'prepend',
      timeout: 100,
      onTimeout: 'stop',
      identity: { slow: 'closed' },
    });
    await closed.ready;
    r = await a.send('fx:/chain', {});
    expect(r).toMatchObject({ stopped: true, listeners: 1 });
    closed.remove();
  });

  it('a remote listener that throws is skipped and reported', async () => {
    const a = client();
    const h = a.prepend('fx:/chain', function broken() {
      throw new Error('LDAP down');
    });
    await h.ready;
    const r = await a.send('fx:/chain', {});
    expect(r.stopped).toBe(false);
    expect(r.errors[0]?.error).toContain('LDAP down');
    h.remove();
  });

  it('a listener process killed with SIGKILL mid-dispatch costs no other peer a message', async () => {
    const hang = runTs(`${ROOT}/test/ipc/fixtures/interceptor.ts`, [dir, 'fx', 'hang']);
    await waitForLine(hang, /^attached$/, 15000);
    const other = client();
    const pending = other.request('fx:/chain', {}, { timeout: 5000 });
    await waitForLine(hang, /^delivered$/);
    hang.kill('SIGKILL');
    expect((await pending).str('from')).toBe('stock');
    const ls = await other.send('fx:/count', {});
    expect(ls.delivered).toBe(true);
  });

  it('listeners are re-attached by their process after the target daemon restarts', async () => {
    const d2 = await startFixture('fx2', dir);
    const icpt = runTs(`${ROOT}/test/ipc/fixtures/interceptor.ts`, [dir, 'fx2', 'stop']);
    try {
      await waitForLine(icpt, /^attached$/, 15000);
      const b = client();
      expect((await b.request('fx2:/chain', {})).str('from')).toBe('interceptor');
      await d2.kill('SIGKILL');
      const d3 = await startFixture('fx2', dir); // stale socket removed, same name
      await until(
        async () => (await b.request('fx2:/chain', {}, { timeout: 500 })).str('from') === 'interceptor',
        'the interceptor to re-attach',
        10000,
        100,
      );
      await d3.kill();
    } finally {
      icpt.kill('SIGKILL');
    }
  });
});
