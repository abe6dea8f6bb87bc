/**
 * Names cannot be squatted (docs/ipc.md, "Names"): a daemon routes each connection by a name
 * it makes from the HELLO name and the peer's kernel pid, and rewrites reply-tos to it. So a
 * name claimed in advance blocks nobody, and a client cannot pose as a daemon.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import { isMetanetError } from '../../src/core/errors.js';
import { attachClient, serveDaemon } from '../../src/ipc/daemon.js';
import { F } from '../../src/ipc/wire.js';
import { cleanup, startFixture, stopAll, tempDir } from '../support/daemons.js';
import { rawPeer } from './fixtures/raw.js';

let dir: string;
const buses: Bus[] = [];
function client(name: string): Bus {
  const b = new Bus({ name });
  attachClient(b, { dir });
  buses.push(b);
  return b;
}

beforeAll(async () => {
  dir = tempDir();
  await startFixture('fx', dir);
  await startFixture('other', dir);
});
afterEach(async () => {
  await Promise.all(buses.splice(0).map((b) => b.close(100)));
});
afterAll(async () => {
  await stopAll();
  cleanup(dir);
});

describe('client names cannot be squatted', () => {
  it('a name claimed in advance by another connection does not stop the process that uses it', async () => {
    // what a hostile user did: claim the CLI names of the next PIDs, and keep the connections open
    const squatters = await Promise.all(
      ['metanet-999990', 'metanet-999991'].map((n) => rawPeer(`${dir}/fx.sock`, { hello: n })),
    );
    const victim = client('metanet-999990');
    expect((await victim.request('fx:/echo', { n: 1 })).int('n')).toBe(1);
    expect((await victim.send('fx:/count', {})).delivered).toBe(true);
    // the squatter saw none of the victim's replies
    await new Promise((r) => setTimeout(r, 100));
    expect(squatters[0]!.frames.filter((f) => f[0] === F.SEND)).toEqual([]);
    for (const s of squatters) s.sock.destroy();
  });

  it('two live connections with the same name each get their own replies', async () => {
    const a = client('twin');
    const b = client('twin');
    const [ra, rb] = await Promise.all(
      Array.from({ length: 20 }, (_, i) => i).map(async (i) => {
        const [x, y] = await Promise.all([
          a.request('fx:/echo', { who: 'a', i }),
          b.request('fx:/echo', { who: 'b', i }),
        ]);
        return [x.str('who'), y.str('who')];
      }),
    ).then((pairs) => [pairs.map((p) => p[0]), pairs.map((p) => p[1])]);
    expect(new Set(ra)).toEqual(new Set(['a']));
    expect(new Set(rb)).toEqual(new Set(['b']));
  });

  it('a listener sees the reply-to under the name the daemon gave the connection (NAME.PID)', async () => {
    const d = tempDir();
    const bus = new Bus({ name: 'hub' });
    let seen = '';
    bus.append('/ask', function ask(_m, ctx) {
      seen = ctx.replyTo ?? '';
      void ctx.reply({ ok: true });
    });
    const daemon = await serveDaemon(bus, { dir: d, signals: false });
    const c = new Bus({ name: 'asker' });
    attachClient(c, { dir: d });
    expect((await c.request('hub:/ask', {})).bool('ok')).toBe(true);
    expect(seen).toMatch(new RegExp(`^asker\\.${process.pid}:/system/reply/\\d+$`));
    await c.close(100);
    await daemon.close();
    await bus.close();
    cleanup(d);
  });
});

describe('a client cannot pose as a daemon', () => {
  it('a connection that says HELLO "other" gets nothing meant for the daemon "other"', async () => {
    const d = dir;
    const bus = new Bus({ name: 'hub2' });
    const daemon = await serveDaemon(bus, { dir: d, signals: false });
    try {
      const fake = await rawPeer(daemon.path, { hello: 'other' });
      await new Promise((r) => setTimeout(r, 100)); // its HELLO is read
      const r = await bus.request('other:/echo', { q: 1 }, { timeout: 3000 });
      expect(r.str('from')).toBe('other'); // the real daemon, reached through its socket
      expect(fake.frames.filter((f) => f[0] === F.SEND)).toEqual([]);
      fake.sock.destroy();
    } finally {
      await daemon.close();
      await bus.close();
    }
  });

  it('a daemon name may not end in .DIGITS (the form of the names daemons give connections)', async () => {
    const e = await serveDaemon(new Bus({ name: 'cli.4242' }), { dir, signals: false }).catch(
      (x: unknown) => x,
    );
    expect(isMetanetError(e, 'ECONFIG')).toBe(true);
  });

  it('a HELLO name that is not a valid name is a connection error', async () => {
    const p = await rawPeer(`${dir}/fx.sock`, { hello: '../etc' });
    await p.closed;
    const err = p.frames.find((f) => f[0] === F.ERROR);
    expect(err?.slice(0, 3)).toEqual([F.ERROR, 0, 'EPROTO']);
    expect(String(err?.[3])).toMatch(/^HELLO frame: bad name "\.\.\/etc"/);
  });
});
