/**
 * Mailboxes made only for remote listeners go away with them (docs/ipc.md, "Remote
 * listeners"): a peer that listens on thousands of new paths and leaves leaves nothing behind.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import { attachClient, serveDaemon } from '../../src/ipc/daemon.js';
import { F } from '../../src/ipc/wire.js';
import { cleanup, tempDir } from '../support/daemons.js';
import { until } from '../support/wait.js';
import { rawPeer } from './fixtures/raw.js';

let dir: string;
let bus: Bus;
let close: () => Promise<void>;

beforeAll(async () => {
  dir = tempDir();
  bus = new Bus({ name: 'boxes' });
  bus.create('/kept', { tuples: { doc: 'made by the daemon' } });
  bus.append('/local', function local() {});
  const d = await serveDaemon(bus, { dir, signals: false });
  close = async () => {
    await d.close();
    await bus.close();
  };
});
afterAll(async () => {
  await close();
  cleanup(dir);
});

const under = (prefix: string): number => bus.mailboxes().filter((b) => b.path.startsWith(prefix)).length;

describe('mailboxes made for remote listeners', () => {
  it('5,000 LISTENs on new paths, then disconnect: no mailbox is left', async () => {
    const before = bus.mailboxes().length;
    const p = await rawPeer(`${dir}/boxes.sock`, { hello: 'listener' });
    const frames: unknown[][] = [];
    for (let i = 1; i <= 5000; i++)
      frames.push([F.LISTEN, i, `/leak/${i}`, i, [], 'append', 0, 'continue', 'l']);
    p.send(...frames);
    await p.next((f) => f[0] === F.OK && f[1] === 5000, 'the 5,000th OK', 20000);
    expect(under('/leak/')).toBe(5000);
    p.sock.destroy();
    await until(() => under('/leak/') === 0, 'the mailboxes to go');
    expect(bus.mailboxes().length).toBe(before);
  });

  it('UNLISTEN removes the mailbox; the last of several remote listeners takes it along', async () => {
    const a = await rawPeer(`${dir}/boxes.sock`, { hello: 'a' });
    const b = await rawPeer(`${dir}/boxes.sock`, { hello: 'b' });
    a.send(
      [F.LISTEN, 1, '/shared', 1, [], 'append', 0, 'continue', 'a'],
      [F.LISTEN, 2, '/alone', 2, [], 'append', 0, 'continue', 'a'],
    );
    await a.next((f) => f[0] === F.OK && f[1] === 2, 'OK');
    b.send([F.LISTEN, 1, '/shared', 1, [], 'append', 0, 'continue', 'b']);
    await b.next((f) => f[0] === F.OK && f[1] === 1, 'OK');
    a.send([F.UNLISTEN, 3, 2]);
    await a.next((f) => f[0] === F.OK && f[1] === 3, 'OK');
    expect(bus.has('/alone')).toBe(false);
    a.sock.destroy();
    await a.closed;
    await new Promise((r) => setTimeout(r, 50));
    expect(bus.mailbox('/shared')?.listeners).toHaveLength(1);
    b.sock.destroy();
    await until(() => !bus.has('/shared'), '/shared to go with its last listener');
  });

  it('mailboxes that existed before, or have a listener of this process, stay', async () => {
    const c = new Bus({ name: 'c' });
    attachClient(c, { dir });
    const h1 = c.append('boxes:/kept', function k() {});
    const h2 = c.append('boxes:/local', function l() {});
    await Promise.all([h1.ready, h2.ready]);
    await c.close(100);
    await until(() => bus.mailbox('/local')?.listeners.length === 1, 'the remote listener to go');
    expect(bus.mailbox('/kept')?.tuples.str('doc')).toBe('made by the daemon');
  });

  it('a LISTEN refused (before a listener that is not there) leaves no mailbox', async () => {
    const p = await rawPeer(`${dir}/boxes.sock`, { hello: 'refused' });
    p.send([F.LISTEN, 1, '/never', 1, [], ['before', [['x', 0, 'y']]], 0, 'continue', 'n']);
    const err = await p.next((f) => f[0] === F.ERROR, 'ERROR');
    expect(err[2]).toBe('ENOLISTENER');
    expect(bus.has('/never')).toBe(false);
    p.sock.destroy();
  });
});
