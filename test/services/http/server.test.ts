import { Agent } from 'node:http';
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type Message, STOP } from '../../../src/core/index.js';
import { until } from '../../support/wait.js';
import { answerAll, type Fixture, fixture, newServer, raw, send } from './support.js';

let f: Fixture | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
});

describe('/system/http/server/new', () => {
  it('creates a server on an OS-chosen port and replies {name, port, host}', async () => {
    f = fixture();
    const r = await f.bus.request('/system/http/server/new', { name: '/t/web', port: 0 });
    expect(r.str('name')).toBe('/t/web');
    expect(r.str('host')).toBe('127.0.0.1');
    expect(r.int('port')).toBeGreaterThan(0);
    answerAll(f.bus, '/t/web', 'hello');
    const res = await fetch(`http://127.0.0.1:${r.int('port')}/`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('hello');
  });

  it('answers bad requests with {error, code} naming what is wrong', async () => {
    f = fixture();
    const noName = await f.bus.request('/system/http/server/new', { port: 0 });
    expect(noName.str('code')).toBe('EBADTUPLE');
    expect(noName.str('error')).toMatch(/missing tuple "name"/);
    const badType = await f.bus.request('/system/http/server/new', { name: '/t/a', port: 'eighty' });
    expect(badType.str('error')).toMatch(/tuple "port" is str, expected int/);
    const badPort = await f.bus.request('/system/http/server/new', { name: '/t/a', port: 70000 });
    expect(badPort.str('error')).toMatch(/"port" is 70000, expected 0 to 65535/);
    const badPath = await f.bus.request('/system/http/server/new', { name: 'web' });
    expect(badPath.str('code')).toBe('EBADPATH');
    await newServer(f.bus, '/t/a');
    const dup = await f.bus.request('/system/http/server/new', { name: '/t/a', port: 0 });
    expect(dup.str('code')).toBe('EEXIST');
  });

  it('reports a port in use as EADDRINUSE', async () => {
    f = fixture();
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    try {
      const port = (blocker.address() as { port: number }).port;
      const errors: Message[] = [];
      f.bus.append('/system/http/server/error', (m) => {
        errors.push(m);
      });
      const r = await f.bus.request('/system/http/server/new', { name: '/t/busy', port });
      expect(r.str('code')).toBe('EADDRINUSE');
      expect(r.str('name')).toBe('/t/busy');
      await until(() => errors.length === 1, 'error message');
      // the name is free again after the failure
      expect(await newServer(f.bus, '/t/busy')).toBeGreaterThan(0);
    } finally {
      blocker.close();
    }
  });
});

describe('requests and responses', () => {
  it('carries every documented tuple and sends code, repeated headers and data back', async () => {
    f = fixture();
    const port = await newServer(f.bus, '/t/web');
    let seen: Message | undefined;
    f.bus.append('/t/web/request', (m) => {
      seen = m;
      f!.bus.post(`${m.str('clientname')}/response`, {
        code: 201,
        headers: { 'X-Test': 'a', 'Set-Cookie': ['a=1', 'b=2'] },
        data: 'créé',
      });
    });
    const res = await send(port, {
      path: '/some/p%20ath?x=1&y=%3C',
      headers: { Host: 'Example.ORG:8080', 'X-Twice': ['1', '2'] },
    });
    expect(res.status).toBe(201);
    expect(res.body.toString()).toBe('créé');
    expect(res.headers['content-length']).toBe(String(Buffer.byteLength('créé')));
    expect(res.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    expect(res.headers['x-test']).toBe('a');
    const m = seen!;
    expect(m.str('clientname')).toMatch(/^\/t\/web\/client\/\d+$/);
    expect(m.str('method')).toBe('GET');
    expect(m.str('Host')).toBe('Example.ORG:8080');
    expect(m.str('hostname')).toBe('example.org');
    expect(m.str('path')).toBe('/some/p%20ath');
    expect(m.str('query')).toBe('x=1&y=%3C');
    expect(
      m
        .list('headers')
        .all('x-twice')
        .map((t) => t.value),
    ).toEqual(['1', '2']);
    expect(m.list('headers').str('host')).toBe('Example.ORG:8080');
    expect(m.bytes('body').length).toBe(0);
    expect(m.str('sockhost')).toBe('127.0.0.1');
    expect(m.int('sockport')).toBe(port);
    expect(m.str('peerhost')).toBe('127.0.0.1');
    expect(m.int('peerport')).toBeGreaterThan(0);
  });

  it('gives each request its own clientname and bytes bodies through unchanged', async () => {
    f = fixture();
    const port = await newServer(f.bus, '/t/web');
    const names = new Set<string>();
    f.bus.append('/t/web/request', (m) => {
      names.add(m.str('clientname'));
      f!.bus.post(`${m.str('clientname')}/response`, { code: 200, data: m.bytes('body') });
    });
    const payload = Buffer.from(Array.from({ length: 70000 }, (_, i) => i % 251));
    const fixed = await send(port, {
      method: 'POST',
      body: [payload],
      headers: { 'Content-Length': '70000' },
    });
    expect(fixed.body.equals(payload)).toBe(true);
    // no Content-Length: node:http sends it chunked; the service de-chunks it
    const chunked = await send(port, { method: 'PUT', body: ['abc', Buffer.from([0, 255]), 'def'] });
    expect(chunked.body).toEqual(Buffer.from([97, 98, 99, 0, 255, 100, 101, 102]));
    expect(names.size).toBe(2);
  });

  it('keeps connections alive across requests', async () => {
    f = fixture();
    const port = await newServer(f.bus, '/t/web');
    const seen = answerAll(f.bus, '/t/web');
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let i = 0; i < 3; i++) expect((await send(port, { agent })).status).toBe(200);
      const ports = new Set(seen.map((m) => m.int('peerport')));
      expect(ports.size).toBe(1);
    } finally {
      agent.destroy();
    }
  });

  it('answers HEAD and 204 without a body', async () => {
    f = fixture();
    const port = await newServer(f.bus, '/t/web');
    f.bus.append('/t/web/request', (m) => {
      const code = m.str('path') === '/none' ? 204 : 200;
      f!.bus.post(`${m.str('clientname')}/response`, { code, data: 'body' });
    });
    const head = await send(port, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe('4');
    expect(head.body.length).toBe(0);
    const none = await send(port, { path: '/none' });
    expect(none.status).toBe(204);
    expect(none.headers['content-length']).toBeUndefined();
  });

  it('lets an async listener answer later, and keeps the first of two responses', async () => {
    f = fixture();
    const port = await newServer(f.bus, '/t/web');
    f.bus.append('/t/web/request', async (m) => {
      await new Promise((r) => setTimeout(r, 20));
      f!.bus.post(`${m.str('clientname')}/response`, { code: 200, data: 'first' });
      f!.bus.post(`${m.str('clientname')}/response`, { code: 500, data: 'second' });
    });
    const res = await send(port);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('first');
  });

  it('lets anyone listen on <clientname>/response: they see the response after the service, and their mailbox goes with the request', async () => {
    f = fixture();
    const port = await newServer(f.bus, '/t/web');
    const watched: string[] = [];
    f.bus.append('/t/web/request', (m) => {
      const name = m.str('clientname');
      // a listener of someone else's (a tap, `metanet listen`), made while the request waits
      f!.bus.listen(`${name}/response`, (r) => {
        watched.push(r.str('data'));
      });
      expect(f!.bus.mailbox(`${name}/response`)!.listeners.map((l) => l.name)).toEqual([
        'requests',
        'anonymous',
      ]);
      void f!.bus.send(`${name}/response`, { code: 200, data: 'seen' }).then((r) => {
        watched.push(`delivered ${r.delivered} listeners ${r.listeners}`);
      });
    });
    const res = await send(port);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('seen');
    await until(() => watched.length === 2, 'both listeners');
    expect(watched).toEqual(['seen', 'delivered true listeners 2']);
    await until(() => !f!.bus.mailboxes().some((b) => /\/client\/\d/.test(b.path)), 'cleanup');
  });

  it('a prepended listener that stops <clientname>/response keeps it from the service (504)', async () => {
    f = fixture();
    const port = await newServer(f.bus, '/t/web', { timeout: 200 });
    f.bus.append('/t/web/request', (m) => {
      const name = m.str('clientname');
      f!.bus.prepend(`${name}/response`, () => STOP);
      f!.bus.post(`${name}/response`, { code: 200, data: 'hidden' });
    });
    expect((await send(port)).status).toBe(504);
    await until(() => !f!.bus.mailboxes().some((b) => /\/client\/\d/.test(b.path)), 'cleanup');
  });
});

describe('status codes the service gives by itself', () => {
  it('413 for a body over the limit, declared or chunked', async () => {
    f = fixture();
    const port = await newServer(f.bus, '/t/web', { bodyLimit: 1000 });
    const seen = answerAll(f.bus, '/t/web');
    const declared = await send(port, {
      method: 'POST',
      headers: { 'Content-Length': '1001' },
      body: ['x'.repeat(1001)],
    });
    expect(declared.status).toBe(413);
    const chunked = await send(port, { method: 'POST', body: ['x'.repeat(600), 'y'.repeat(600)] }).catch(
      (e: NodeJS.ErrnoException) => e,
    );
    // the server answers 413 and closes; a client still writing may see the reset instead
    if ('status' in chunked) expect(chunked.status).toBe(413);
    else expect(chunked.code).toMatch(/ECONNRESET|EPIPE/);
    const ok = await send(port, { method: 'POST', body: ['x'.repeat(1000)] });
    expect(ok.status).toBe(200);
    expect(seen.length).toBe(1);
  });

  it('survives a client that goes away in the middle of its body or before its answer', async () => {
    f = fixture();
    const port = await newServer(f.bus, '/t/web');
    const seen: Message[] = [];
    f.bus.append('/t/web/request', async (m) => {
      seen.push(m);
      await new Promise((r) => setTimeout(r, 50)); // the client is gone by now
      f!.bus.post(`${m.str('clientname')}/response`, { code: 200, data: 'late' });
    });
    await raw(port, 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly this', 100);
    await raw(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', 10);
    await until(() => seen.length === 1, 'the complete request');
    await until(() => !f!.bus.mailboxes().some((b) => /\/client\/\d/.test(b.path)), 'cleanup');
    const res = await send(port);
    expect(res.body.toString()).toBe('late');
  });

  it('503 at once when nobody listens on <name>/request', async () => {
    f = fixture();
    const port = await newServer(f.bus, '/t/web');
    const t0 = Date.now();
    const res = await send(port);
    expect(res.status).toBe(503);
    expect(res.body.toString()).toMatch(/nobody listens on \/t\/web\/request/);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it('504 when a listener takes the request but nobody answers in time', async () => {
    f = fixture();
    const port = await newServer(f.bus, '/t/web', { timeout: 150 });
    f.bus.append('/t/web/request', () => {});
    const t0 = Date.now();
    const [a, b] = await Promise.all([send(port), send(port)]);
    expect(a.status).toBe(504);
    expect(b.status).toBe(504);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
  });

  it('400 for malformed HTTP, reported on <name>/error, and the server keeps serving', async () => {
    f = fixture();
    const port = await newServer(f.bus, '/t/web');
    answerAll(f.bus, '/t/web');
    const errors: Message[] = [];
    f.bus.append('/t/web/error', (m) => {
      errors.push(m);
    });
    const out = await raw(port, 'GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n');
    expect(out).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    const garbage = await raw(port, '\x00\x01\x02 nonsense\r\n\r\n');
    expect(garbage).toMatch(/^HTTP\/1\.1 400 /);
    await until(() => errors.length >= 2, 'two parse errors on /t/web/error');
    expect(errors[0]!.str('code')).toMatch(/^HPE_/);
    expect(errors[0]!.str('peerhost')).toBe('127.0.0.1');
    expect((await send(port)).status).toBe(200);
  });

  it('a response refused for one bad header leaves nothing of itself in the 500 (framing, keep-alive)', async () => {
    f = fixture();
    const port = await newServer(f.bus, '/t/web');
    const bad = { 'X-Bad': 'a\r\nInjected: yes' };
    f.bus.append('/t/web/request', (m) => {
      const c = m.str('clientname');
      const path = m.str('path');
      if (path === '/chunked')
        f!.bus.post(`${c}/response`, { code: 200, headers: { 'Transfer-Encoding': 'chunked', ...bad } });
      else if (path === '/204') f!.bus.post(`${c}/response`, { code: 204, headers: bad });
      else if (path === '/close')
        f!.bus.post(`${c}/response`, { code: 200, headers: { Connection: 'close', ...bad } });
      else
        f!.bus.post(`${c}/response`, { code: 200, headers: { 'Content-Type': 'text/plain' }, data: 'next' });
    });
    for (const first of ['/chunked', '/204', '/close']) {
      // two requests on one connection: the 500, then a good answer read right after it
      const out = await raw(
        port,
        `GET ${first} HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
      );
      const head = out.slice(0, out.indexOf('\r\n\r\n'));
      expect(head, first).toMatch(/^HTTP\/1\.1 500 Internal Server Error\r\n/);
      expect(head, first).not.toMatch(/chunked|Injected/i);
      const length = Number(/content-length: (\d+)/i.exec(head)?.[1]);
      const rest = out.slice(head.length + 4 + length);
      expect(rest, first).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nnext$/);
    }
  });

  it('500 for a bad response message, naming the tuple, on <name>/error', async () => {
    f = fixture();
    const port = await newServer(f.bus, '/t/web');
    const errors: Message[] = [];
    f.bus.append('/t/web/error', (m) => {
      errors.push(m);
    });
    f.bus.append('/t/web/request', (m) => {
      const c = m.str('clientname');
      if (m.str('path') === '/code') f!.bus.post(`${c}/response`, { code: 'ok' });
      else if (m.str('path') === '/twice') f!.bus.post(`${c}/response`, { code: [200, 201] });
      else f!.bus.post(`${c}/response`, { code: 307, headers: { 'X-Bad': 'a\r\nInjected: yes' } });
    });
    const a = await send(port, { path: '/code' });
    expect(a.status).toBe(500);
    expect((await send(port, { path: '/twice' })).status).toBe(500);
    const b = await send(port, { path: '/header' });
    expect(b.status).toBe(500);
    expect(b.statusMessage).toBe('Internal Server Error'); // not the refused response's phrase
    expect(b.headers.injected).toBeUndefined();
    await until(() => errors.length === 3, 'three errors');
    expect(errors[0]!.str('error')).toMatch(/tuple "code" is str, expected int/);
    expect(errors[0]!.str('clientname')).toMatch(/^\/t\/web\/client\/\d+$/);
    expect(errors[1]!.str('error')).toMatch(/tuple "code" given 2 times, expected once/);
    expect(errors[2]!.str('error')).toMatch(/header "X-Bad"/);
  });
});

describe('closing', () => {
  it('<clientname>/close without a response cuts the connection; after one, closes it once flushed', async () => {
    f = fixture();
    const port = await newServer(f.bus, '/t/web');
    f.bus.append('/t/web/request', (m) => {
      const c = m.str('clientname');
      if (m.str('path') === '/answer') f!.bus.post(`${c}/response`, { code: 200, data: 'bye' });
      f!.bus.post(`${c}/close`);
    });
    await expect(send(port, { path: '/drop' })).rejects.toThrow(/socket hang up|ECONNRESET/);
    const out = await raw(port, 'GET /answer HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(out).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nbye$/);
  });

  it('<name>/close stops the server and replies', async () => {
    f = fixture();
    const port = await newServer(f.bus, '/t/web');
    answerAll(f.bus, '/t/web');
    expect((await send(port)).status).toBe(200);
    const r = await f.bus.request('/t/web/close', {});
    expect(r.bool('closed')).toBe(true);
    await expect(send(port)).rejects.toThrow(/ECONNREFUSED/);
    // the name can be used again
    expect(await newServer(f.bus, '/t/web')).toBeGreaterThan(0);
  });

  it('removes per-request mailboxes: bus.mailboxes() does not grow', async () => {
    f = fixture();
    const port = await newServer(f.bus, '/t/web');
    answerAll(f.bus, '/t/web');
    f.bus.append('/t/web/request', () => {}); // a second listener: the chain runs on
    const agent = new Agent({ keepAlive: true, maxSockets: 8 });
    try {
      await Promise.all(Array.from({ length: 20 }, () => send(port, { agent })));
      await until(() => !f!.bus.mailboxes().some((b) => /\/client\/\d/.test(b.path)), 'cleanup');
      const before = f.bus.mailboxes().length;
      await Promise.all(Array.from({ length: 300 }, () => send(port, { agent })));
      await until(() => !f!.bus.mailboxes().some((b) => /\/client\/\d/.test(b.path)), 'cleanup');
      expect(f.bus.mailboxes().length).toBe(before);
    } finally {
      agent.destroy();
    }
  });

  it('service.close() closes every server it made', async () => {
    f = fixture();
    const a = await newServer(f.bus, '/t/a');
    const b = await newServer(f.bus, '/t/b');
    await f.service.close();
    await expect(send(a)).rejects.toThrow(/ECONNREFUSED/);
    await expect(send(b)).rejects.toThrow(/ECONNREFUSED/);
  });
});
