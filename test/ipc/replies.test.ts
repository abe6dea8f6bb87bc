/**
 * Replies come back the way the request went (docs/ipc.md, "Replies"): a request's reply
 * mailbox takes a reply only from a connection the request was sent over (or delivered over to
 * a remote listener), and a daemon relays a reply only for a peer it gave that reply-to. A peer
 * that knows another client's route name and reply number cannot answer its request.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import { STOP } from '../../src/core/listener.js';
import { attachClient, type Daemon, serveDaemon } from '../../src/ipc/daemon.js';
import { F } from '../../src/ipc/wire.js';
import { cleanup, startFixture, stopAll, tempDir } from '../support/daemons.js';
import { rawPeer } from './fixtures/raw.js';

let dir: string;
let hub: Bus;
let daemon: Daemon;
/** The reply-to of the last message on /ask, as the hub's listener saw it. */
let asked: (replyTo: string) => void = () => {};

beforeAll(async () => {
  dir = tempDir();
  await startFixture('other', dir);
  hub = new Bus({ name: 'hub' });
  // answers after 300 ms: time for an intruder to try first
  hub.append('/ask', async function ask(_m, ctx) {
    asked(ctx.replyTo ?? '');
    await new Promise((r) => setTimeout(r, 300));
    await ctx.reply({ from: 'hub' });
  });
  daemon = await serveDaemon(hub, { dir, signals: false, mode: 0o666 });
});
afterAll(async () => {
  await daemon.close();
  await hub.close(100);
  await stopAll();
  cleanup(dir);
});

/** The N of the /system/reply/N a request of `bus` waits at, once one does (N is one of the bus's ids). */
function waitingAt(bus: Bus): Promise<number> {
  return new Promise((resolve) => {
    const t = setInterval(() => {
      for (let n = 1; n < 100_000; n++)
        if (bus.awaitsReply(`/system/reply/${n}`)) {
          clearInterval(t);
          resolve(n);
          return;
        }
    }, 5);
  });
}

function client(name: string): Bus {
  const b = new Bus({ name });
  attachClient(b, { dir });
  return b;
}

describe('a reply is taken only from where the request went', () => {
  it("a peer of the daemon cannot relay a reply into another client's pending request", async () => {
    const asker = client('asker');
    try {
      const seen = new Promise<string>((r) => (asked = r));
      const answer = asker.request('hub:/ask', {}, { timeout: 3000 });
      const replyTo = await seen; // asker.PID:/system/reply/N — what an intruder could guess
      expect(replyTo).toMatch(new RegExp(`^asker\\.${process.pid}:/system/reply/\\d+$`));
      const [route, path] = [replyTo.slice(0, replyTo.indexOf(':')), replyTo.slice(replyTo.indexOf(':') + 1)];
      const intruder = await rawPeer(daemon.path, { hello: 'intruder' });
      const forged = [F.SEND, 1, `/system/relay/${route}${path}`, [['from', 0, 'intruder']]];
      intruder.send(forged);
      const err = await intruder.next((f) => f[0] === F.ERROR, 'ERROR for the forged reply');
      expect(err.slice(0, 3)).toEqual([F.ERROR, 1, 'EDENIED']);
      expect((await answer).str('from')).toBe('hub');
      // the connection stays; one-way, the forged reply is dropped the same way
      intruder.send([F.SEND, 0, `/system/relay/${route}${path}`, [['from', 0, 'intruder']]]);
      intruder.sock.destroy();
    } finally {
      await asker.close(100);
    }
  });

  it("a peer that connects to the asking daemon cannot answer the daemon's own pending request", async () => {
    // the hub asks another daemon; other's /slow answers after 300 ms
    const answer = hub.request('other:/slow', { ms: 300 }, { timeout: 3000 });
    const n = await waitingAt(hub);
    const intruder = await rawPeer(daemon.path, { hello: 'other' });
    intruder.send([F.SEND, 1, `/system/reply/${n}`, [['slept', 1, 0]]]);
    const err = await intruder.next((f) => f[0] === F.ERROR, 'ERROR for the forged reply');
    expect(err.slice(0, 3)).toEqual([F.ERROR, 1, 'EDENIED']);
    expect((await answer).int('slept')).toBe(300);
    // a reply to a mailbox that is gone (late, or a second one) goes nowhere, as before: no error
    intruder.send([F.SEND, 2, `/system/reply/${n}`, [['slept', 1, 0]]]);
    const r = await intruder.next((f) => f[1] === 2, 'RESULT for the late reply');
    expect(r.slice(0, 3)).toEqual([F.RESULT, 2, false]);
    intruder.sock.destroy();
  });

  it('a reply from another process is seen by a tap and by a waiter on the reply path, as a local one', async () => {
    const seen: string[] = [];
    const untap = hub.tap((path, m) => {
      if (path.startsWith('/system/reply/')) seen.push(`${path} ${m.int('slept')}`);
    });
    try {
      const answer = hub.request('other:/slow', { ms: 200 }, { timeout: 3000 });
      const n = await waitingAt(hub);
      const waiter = hub.wait(`/system/reply/${n}`, { timeout: 3000 });
      expect((await answer).int('slept')).toBe(200);
      expect((await waiter).int('slept')).toBe(200);
      expect(seen).toEqual([`/system/reply/${n} 200`]);
    } finally {
      untap();
    }
    // with nobody watching, the reply is handed to the request directly: the same answer
    expect((await hub.request('other:/slow', { ms: 1 }, { timeout: 3000 })).int('slept')).toBe(1);
  });

  it('a third process answering through the daemon (relayed) still reaches the asker', async () => {
    const helper = client('helper');
    const asker = client('asker');
    try {
      const h = helper.prepend('hub:/ask', async function answerFirst(_m, ctx) {
        await ctx.reply({ from: 'helper' });
        return STOP;
      });
      await h.ready;
      const r = await asker.request('hub:/ask', {}, { timeout: 3000 });
      expect(r.str('from')).toBe('helper');
      h.remove();
    } finally {
      await asker.close(100);
      await helper.close(100);
    }
  });
});
