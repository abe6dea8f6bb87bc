import { describe, expect, it } from 'vitest';
import { ERRORS, isMetanetError, type Message, STOP, UNDELIVERED } from '../../src/core/index.js';
import { freshBuses } from '../support/bus.js';

/**
 * bus.route(): a family of paths under a prefix served by one handler, with no mailbox per path
 * (docs/core.md, Routes). What it must keep: the delivery contract (queued, never re-entrant, in
 * order), undelivered/errors as for mailboxes, and a mailbox someone makes at such a path.
 */
const fresh = freshBuses();

describe('bus.route', () => {
  it('hands posts and sends under the prefix to the handler, queued and in order with other mailboxes', async () => {
    const b = fresh();
    const seen: string[] = [];
    b.route('/web/client', (path, m) => {
      seen.push(`${path} ${m.int('n')}`);
      return true;
    });
    b.listen('/other', (m) => {
      seen.push(`/other ${m.int('n')}`);
    });
    b.post('/web/client/1/response', { n: 1 });
    b.post('/other', { n: 2 });
    b.post('/web/client/2/close', { n: 3 });
    expect(seen).toEqual([]); // queued: nothing runs before post() returns
    const r = await b.send('/web/client/3/response', { n: 4 });
    expect(r.delivered).toBe(true);
    expect(r.listeners).toBe(1);
    expect(seen).toEqual([
      '/web/client/1/response 1',
      '/other 2',
      '/web/client/2/close 3',
      '/web/client/3/response 4',
    ]);
    expect(b.has('/web/client/1/response')).toBe(false); // no mailbox per path
  });

  it('is never re-entrant: a post from the handler is delivered after it returns', async () => {
    const b = fresh();
    const log: string[] = [];
    b.route('/r', (path) => {
      log.push(`in ${path}`);
      if (path === '/r/a') b.post('/r/b', {});
      log.push(`out ${path}`);
      return true;
    });
    b.post('/r/a', {});
    await b.settled();
    expect(log).toEqual(['in /r/a', 'out /r/a', 'in /r/b', 'out /r/b']);
  });

  it('counts a path the handler does not serve as undelivered, and reports a throw as a listener error', async () => {
    const b = fresh();
    const undelivered: string[] = [];
    const errors: Message[] = [];
    b.listen(UNDELIVERED, (m) => {
      undelivered.push(m.str('mailbox'));
    });
    b.listen(ERRORS, (m) => {
      errors.push(m);
    });
    b.route('/r', (path) => {
      if (path === '/r/boom') throw new Error('boom');
      return path === '/r/mine';
    });
    expect((await b.send('/r/not-mine', {})).delivered).toBe(false);
    b.post('/r/also-not', {});
    const r = await b.send('/r/boom', {});
    expect(r.errors.map((e) => e.error)).toEqual(['boom']);
    b.post('/r/boom', {});
    expect((await b.send('/r/mine', {})).delivered).toBe(true);
    await b.settled();
    expect(undelivered).toEqual(['/r/not-mine', '/r/also-not']);
    expect(errors.map((m) => m.str('error'))).toEqual(['boom', 'boom']);
  });

  it('checks the path of a post under it (EBADPATH reported, nothing delivered)', async () => {
    const b = fresh();
    const errors: string[] = [];
    b.listen(ERRORS, (m) => {
      errors.push(m.str('error'));
    });
    const seen: string[] = [];
    b.route('/r', (path) => seen.push(path) > 0);
    b.post('/r/x/', {});
    b.post('/r//x', {});
    await b.settled();
    expect(seen).toEqual([]);
    expect(errors.length).toBe(2);
  });

  it('keeps a mailbox someone makes under it: the route first in its chain, listeners around it as for any listener', async () => {
    const b = fresh();
    const log: string[] = [];
    const route = b.route('/r', (path, m) => {
      log.push(`route ${path} ${m.str('x')}`);
      return true;
    });
    const after = b.listen('/r/1/response', (m) => {
      log.push(`after ${m.str('x')}`);
    });
    expect(route.mailboxes).toBe(1);
    expect(b.mailbox('/r/1/response')!.listeners.map((l) => l.id)).toEqual([route.id, after.id]);
    b.post('/r/1/response', { x: 'a' });
    await b.settled();
    expect(log).toEqual(['route /r/1/response a', 'after a']);
    // a prepended listener that stops the chain hides the message from the route, as from any listener
    b.listen('/r/1/response', () => STOP, { position: 'prepend' });
    b.post('/r/1/response', { x: 'b' });
    // another path under the route is not affected
    b.post('/r/2/response', { x: 'c' });
    await b.settled();
    expect(log).toEqual(['route /r/1/response a', 'after a', 'route /r/2/response c']);
    // removing the mailbox: the route serves the path again
    expect(b.remove('/r/1/response')).toBe(true);
    expect(route.mailboxes).toBe(0);
    b.post('/r/1/response', { x: 'd' });
    await b.settled();
    expect(log.at(-1)).toBe('route /r/1/response d');
  });

  it('drops a mailbox left with only its listener, even while a message walks its chain (a wait() on the path)', async () => {
    const b = fresh();
    const got: string[] = [];
    const route = b.route('/r', (path, m) => got.push(`${path} ${m.str('x')}`) > 0);
    const waited = b.wait('/r/1/response'); // prepended before the route's listener
    expect(route.mailboxes).toBe(1);
    b.post('/r/1/response', { x: 'a' });
    expect((await waited).str('x')).toBe('a');
    await b.settled();
    expect(got).toEqual(['/r/1/response a']); // the waiter removed itself mid-chain: the route still ran
    expect(b.has('/r/1/response')).toBe(false);
    expect(route.mailboxes).toBe(0);
    const h = b.listen('/r/2/close', () => {});
    expect(b.unlisten('/r/2/close', h)).toBe(1);
    expect(b.has('/r/2/close')).toBe(false);
    // a mailbox with tuples of its own stays
    b.create('/r/3/response', { tuples: { about: 'kept' } });
    const h3 = b.listen('/r/3/response', () => {});
    h3.remove();
    expect(b.mailbox('/r/3/response')!.listeners.map((l) => l.id)).toEqual([route.id]);
  });

  it('takes in mailboxes that exist when it is made, and leaves them when removed', async () => {
    const b = fresh();
    const log: string[] = [];
    b.listen('/r/a', () => {
      log.push('own');
    });
    const route = b.route('/r', (path) => log.push(`route ${path}`) > 0);
    expect(route.mailboxes).toBe(1);
    b.post('/r/a', {});
    await b.settled();
    expect(log).toEqual(['own', 'route /r/a']);
    route.remove();
    route.remove(); // idempotent
    b.post('/r/a', {});
    expect((await b.send('/r/b', {})).delivered).toBe(false);
    expect(log).toEqual(['own', 'route /r/a', 'own']);
    expect(b.mailbox('/r/a')!.listeners.length).toBe(1);
    expect(b.mailboxes().map((m) => m.path)).toEqual(['/r/a']);
  });

  it('shows in routeInfos() (not mailboxes()) as <prefix>/* with its listener, and taps see its traffic as listened', async () => {
    const b = fresh();
    const route = b.route('/web/client', function requests() {
      return true;
    });
    expect(b.mailboxes().map((m) => m.path)).toEqual([]); // mailboxes() (and LS) list real mailboxes only
    const info = b.routeInfos().find((m) => m.path === '/web/client/*')!;
    expect(info.listeners.map((l) => [l.id, l.name])).toEqual([[route.id, 'requests']]);
    const tapped: [string, boolean][] = [];
    b.tap((path, _m, listened) => tapped.push([path, listened]));
    b.post('/web/client/7/response', {});
    await b.send('/web/client/8/response', {});
    expect(tapped).toEqual([
      ['/web/client/7/response', true],
      ['/web/client/8/response', true],
    ]);
  });

  it('refuses a route that overlaps another (EEXIST), and accepts it again once removed', () => {
    const b = fresh();
    const r = b.route('/a/b', () => true);
    for (const p of ['/a/b', '/a', '/a/b/c'])
      expect(() => b.route(p, () => true)).toThrow(expect.objectContaining({ code: 'EEXIST' }));
    expect(
      isMetanetError(
        catchIt(() => b.route('/a', () => true)),
        'EEXIST',
      ),
    ).toBe(true);
    b.route('/a/bc', () => true); // a sibling, not under /a/b
    r.remove();
    b.route('/a/b/c', () => true);
  });
});

function catchIt(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
}
