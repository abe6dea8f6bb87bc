import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { have } from '../../support/env.js';
import { answerAll, type Fixture, fixture } from './support.js';

/** HTTPS from the service: `cert` and `key` (PEM) in `/system/http/server/new` → node:https. */
const ok = have(['openssl']);

describe.skipIf(!ok)('HTTPS servers', () => {
  let dir: string;
  let cert: string;
  let key: string;
  let f: Fixture | undefined;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'http-tls-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '2',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
    key = readFileSync(join(dir, 'key.pem'), 'utf8');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(async () => {
    await f?.close();
    f = undefined;
  });

  const get = (port: number, ca: string): Promise<{ status: number; body: string; peer: string }> =>
    new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/x', ca, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body, peer: res.socket.remoteAddress ?? '' }),
        );
      });
      req.on('error', reject);
      req.end();
    });

  it('serves requests over TLS with cert and key given as str or bytes; replies tls: true', async () => {
    f = fixture();
    const r = await f.bus.request('/system/http/server/new', { name: '/t/tls', port: 0, cert, key });
    expect(r.has('error'), r.has('error') ? r.str('error') : '').toBe(false);
    expect(r.bool('tls')).toBe(true);
    answerAll(f.bus, '/t/tls', 'secret hello');
    const res = await get(r.int('port'), cert);
    expect(res.status).toBe(200);
    expect(res.body).toBe('secret hello');
    const b = await f.bus.request('/system/http/server/new', {
      name: '/t/tls2',
      port: 0,
      cert: Buffer.from(cert),
      key: Buffer.from(key),
    });
    expect(b.bool('tls')).toBe(true);
    answerAll(f.bus, '/t/tls2', 'bytes too');
    expect((await get(b.int('port'), cert)).body).toBe('bytes too');
    // A plain server says tls: false.
    const plain = await f.bus.request('/system/http/server/new', { name: '/t/plain', port: 0 });
    expect(plain.bool('tls')).toBe(false);
  });

  it('a client without the CA refuses the certificate; the server keeps serving', async () => {
    f = fixture();
    const r = await f.bus.request('/system/http/server/new', { name: '/t/tls', port: 0, cert, key });
    answerAll(f.bus, '/t/tls', 'ok');
    await expect(
      new Promise((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port: r.int('port'), agent: false }, resolve);
        req.on('error', reject);
        req.end();
      }),
    ).rejects.toThrow(/self[- ]signed/i);
    expect((await get(r.int('port'), cert)).body).toBe('ok');
  });

  it('refuses a lone cert, a lone key, and PEM that is not a certificate and its key (EBADTUPLE)', async () => {
    f = fixture();
    const lone = await f.bus.request('/system/http/server/new', { name: '/t/a', port: 0, cert });
    expect(lone.str('code')).toBe('EBADTUPLE');
    expect(lone.str('error')).toMatch(/needs both "cert" and "key"/);
    const loneKey = await f.bus.request('/system/http/server/new', { name: '/t/a', port: 0, key });
    expect(loneKey.str('code')).toBe('EBADTUPLE');
    const junk = await f.bus.request('/system/http/server/new', {
      name: '/t/a',
      port: 0,
      cert: 'not a certificate',
      key,
    });
    expect(junk.str('code')).toBe('EBADTUPLE');
    expect(junk.str('error')).toMatch(/not a PEM certificate and its key/);
    const swapped = await f.bus.request('/system/http/server/new', { name: '/t/a', port: 0, cert: key, key });
    expect(swapped.str('code')).toBe('EBADTUPLE');
    // The name is free after those failures.
    const good = await f.bus.request('/system/http/server/new', { name: '/t/a', port: 0, cert, key });
    expect(good.bool('tls')).toBe(true);
  });
});
