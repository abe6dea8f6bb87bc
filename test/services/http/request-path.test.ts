import { afterEach, describe, expect, it } from 'vitest';
import type { Message } from '../../../src/core/index.js';
import { until } from '../../support/wait.js';
import { type Fixture, fixture, newServer, raw, send } from './support.js';

/**
 * The lean request path (docs/services/http.md, Performance): tuples shared by the requests of one
 * connection, the waiting requests kept in arrival order, per-request listeners. What it must not
 * change: each request's own tuples, 504 for exactly the unanswered ones, nothing left behind.
 */
let f: Fixture | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
});

const clientBoxes = (): string[] =>
  f!.bus
    .mailboxes()
    .map((b) => b.path)
    .filter((p) => /\/client\/\d/.test(p));

describe('HTTP request path', () => {
  it('gives each request on a kept-alive connection its own Host, method and query, and the connection its addresses', async () => {
    f = fixture();
    const port = await newServer(f.bus, '/t/web');
    const seen: Message[] = [];
    f.bus.append('/t/web/request', (m) => {
      seen.push(m);
      f!.bus.post(`${m.str('clientname')}/response`, { code: 200, data: m.str('hostname') });
    });
    const reqs = [
      'GET /a HTTP/1.1\r\nHost: Example.ORG:8080\r\n\r\n',
      'GET /a HTTP/1.1\r\nHost: Example.ORG:8080\r\n\r\n',
      'POST /b?x=1 HTTP/1.1\r\nHost: [::1]:80\r\nContent-Length: 2\r\n\r\nhi',
      'GET /c HTTP/1.1\r\nHost: other.test\r\n\r\n',
      'GET /d HTTP/1.0\r\n\r\n',
    ];
    const out = await raw(port, reqs.join(''), 2000);
    expect(out.match(/HTTP\/1\.1 200 OK/g)?.length).toBe(5);
    // (a request with a body is sent once its body has arrived: maybe after the pipelined ones behind it)
    seen.sort((a, b) => (a.str('path') < b.str('path') ? -1 : 1));
    expect(
      seen.map((m) => [m.str('method'), m.str('Host'), m.str('hostname'), m.str('path'), m.str('query')]),
    ).toEqual([
      ['GET', 'Example.ORG:8080', 'example.org', '/a', ''],
      ['GET', 'Example.ORG:8080', 'example.org', '/a', ''],
      ['POST', '[::1]:80', '::1', '/b', 'x=1'],
      ['GET', 'other.test', 'other.test', '/c', ''],
      ['GET', '', '', '/d', ''],
    ]);
    expect(Buffer.from(seen[2]!.bytes('body')).toString()).toBe('hi');
    expect(seen[0]!.bytes('body').length).toBe(0);
    for (const m of seen) {
      expect([m.str('sockhost'), m.int('sockport'), m.str('peerhost')]).toEqual([
        '127.0.0.1',
        port,
        '127.0.0.1',
      ]);
      expect(m.int('peerport')).toBe(seen[0]!.int('peerport'));
    }
    expect(new Set(seen.map((m) => m.str('clientname'))).size).toBe(5);
  });

  it('504 for exactly the requests nobody answered, whatever order the others were answered in', async () => {
    f = fixture();
    const port = await newServer(f.bus, '/t/web', { timeout: 200 });
    const held = new Map<string, string>();
    f.bus.append('/t/web/request', (m) => {
      held.set(m.str('path'), m.str('clientname'));
    });
    const paths = ['/1', '/2', '/3', '/4', '/5'];
    const answers = Promise.all(paths.map((path) => send(port, { path })));
    await until(() => held.size === 5, 'five requests held');
    // answer the middle one, then the last, then the first: the waiting list loses any of its places
    for (const p of ['/3', '/5', '/1'])
      f.bus.post(`${held.get(p)}/response`, { code: 200, data: `answer ${p}` });
    const res = await answers;
    expect(res.map((r) => r.status)).toEqual([200, 504, 200, 504, 200]);
    expect(res[2]!.body.toString()).toBe('answer /3');
    await until(() => clientBoxes().length === 0, 'no per-request mailbox left');
    // a late answer to an expired request lands nowhere and breaks nothing
    f.bus.post(`${held.get('/2')}/response`, { code: 200, data: 'late' });
    expect((await Promise.all([send(port, { path: '/6' })]))[0]!.status).toBe(504);
  });

  it('<name>/close drops waiting requests and stops serving their mailboxes', async () => {
    f = fixture();
    const port = await newServer(f.bus, '/t/web');
    const names: string[] = [];
    f.bus.append('/t/web/request', (m) => {
      names.push(m.str('clientname'));
    });
    const waiting = Promise.allSettled([send(port), send(port), send(port)]);
    await until(() => names.length === 3, 'three requests');
    // the requests' mailboxes are one route, not a mailbox each
    expect(clientBoxes()).toEqual([]);
    expect(f.bus.routeInfos().map((b) => b.path)).toContain('/t/web/client/*');
    const r = await f.bus.request('/t/web/close', {});
    expect(r.bool('closed')).toBe(true);
    expect((await waiting).every((x) => x.status === 'rejected')).toBe(true);
    expect(clientBoxes()).toEqual([]);
    expect(f.bus.routeInfos().map((b) => b.path)).not.toContain('/t/web/client/*');
    for (const name of names)
      expect((await f.bus.send(`${name}/response`, { code: 200 })).delivered).toBe(false);
  });
});
