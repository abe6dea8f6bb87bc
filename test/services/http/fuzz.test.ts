import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Message, type Tuple } from '../../../src/core/index.js';
import { hostnameOf } from '../../../src/services/http/index.js';
import { readHead } from '../../../src/services/http/request.js';
import { until } from '../../support/wait.js';
import { type Fixture, fixture, newServer, raw, send } from './support.js';

let f: Fixture;
let port: number;
/** What the next request's listener posts as its response (set by each property run). */
let nextResponse: Message = Message.from({ code: 200, data: 'ok' });

beforeAll(async () => {
  f = fixture();
  port = await newServer(f.bus, '/fuzz/web', { timeout: 2000 });
  f.bus.append('/fuzz/web/request', (m) => {
    f.bus.post(`${m.str('clientname')}/response`, m.str('path') === '/fuzz' ? nextResponse : { code: 200 });
  });
});
afterAll(async () => {
  await f?.close();
});

const noClientMailboxes = (): boolean => !f.bus.mailboxes().some((b) => /\/client\/\d/.test(b.path));

describe('fuzz: the request decoder (node:http underneath) never takes the server down', () => {
  const token = fc.constantFrom(
    'GET',
    'POST',
    ' ',
    '/',
    '/a?b=c',
    'HTTP/1.1',
    'HTTP/1.0',
    'HTTP/9.9',
    '\r\n',
    '\n',
    ':',
    'Host',
    'Content-Length',
    'Transfer-Encoding',
    'chunked',
    '5',
    '-1',
    '0\r\n\r\n',
    'ffffffffffff',
    '\x00',
    '\xff',
    'é',
  );
  const httpish = fc.array(token, { maxLength: 30 }).map((ts) => ts.join(''));
  const bytes = fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b));

  it('answers any byte sequence with a status line or a close, and keeps serving', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(httpish, bytes), async (input) => {
        const out = await raw(port, input, 1500, true);
        if (out.length > 0) expect(out).toMatch(/^HTTP\/1\.1 \d{3} /);
      }),
      { numRuns: 120 },
    );
    expect((await send(port)).status).toBe(200);
    await until(noClientMailboxes, 'per-request mailboxes removed');
  });
});

describe('fuzz: the response encoder', () => {
  const header = fc.record({
    tag: fc.oneof(
      fc.constantFrom('X-A', 'Content-Type', 'Set-Cookie', 'bad name', 'X\r\nY'),
      fc.string({ minLength: 1, maxLength: 8 }),
    ),
    value: fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.constant('a\r\nInjected: 1')),
  });
  const response = fc.record({
    code: fc.oneof(fc.integer({ min: 100, max: 700 }), fc.constant('200'), fc.constant(1.5)),
    headers: fc.array(header, { maxLength: 4 }),
    data: fc.oneof(
      fc.string({ maxLength: 50 }),
      fc.uint8Array({ maxLength: 50 }),
      fc.integer(),
      fc.constant(undefined),
    ),
  });

  it('sends what the message says, or 500 naming the problem; never hangs, never injects a header', async () => {
    await fc.assert(
      fc.asyncProperty(response, async (r) => {
        const hs: Tuple[] = r.headers.map((h) =>
          typeof h.value === 'number'
            ? { tag: h.tag, type: 'int', value: h.value }
            : { tag: h.tag, type: 'str', value: h.value },
        );
        nextResponse = Message.from({
          code: typeof r.code === 'number' && !Number.isInteger(r.code) ? Message.empty : r.code,
          headers: new Message(hs),
          data: r.data,
        });
        const res = await send(port, { path: '/fuzz' });
        expect(res.headers.injected).toBeUndefined();
        const valid = typeof r.code === 'number' && r.code >= 200 && r.code <= 599;
        if (!valid) expect(res.status).toBe(500);
        else expect([r.code, 500]).toContain(res.status);
        if (res.status === r.code && typeof r.data === 'string' && r.code !== 204 && r.code !== 304)
          expect(res.body.toString()).toBe(r.data);
      }),
      { numRuns: 150 },
    );
    await until(noClientMailboxes, 'per-request mailboxes removed');
  });
});

describe('fuzz: head decoding', () => {
  it('readHead keeps every header in order, lower-cased, and finds the first Host', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom('Host', 'HOST', 'Accept', 'X-Y', 'Content-Length'), fc.string()), {
          maxLength: 10,
        }),
        (pairs) => {
          const head = readHead(pairs.flat());
          expect(head.headers.tuples.map((t) => [t.tag, t.value])).toEqual(
            pairs.map(([n, v]) => [n.toLowerCase(), v]),
          );
          expect(head.host).toBe(pairs.find(([n]) => n.toLowerCase() === 'host')?.[1] ?? '');
        },
      ),
    );
  });

  it('hostnameOf never throws, drops the port, and lower-cases', () => {
    fc.assert(
      fc.property(fc.string(), fc.option(fc.integer({ min: 0, max: 65535 })), (h, p) => {
        const name = h.replace(/[:[\]]/g, '');
        expect(hostnameOf(p === null ? name : `${name}:${p}`)).toBe(name.toLowerCase());
      }),
    );
    expect(hostnameOf('[::1]:8080')).toBe('::1');
    expect(hostnameOf('[FE80::1]')).toBe('fe80::1');
    expect(hostnameOf('')).toBe('');
  });
});
