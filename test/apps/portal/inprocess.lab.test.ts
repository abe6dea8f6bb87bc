import { request } from 'node:http';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CaptivePortal, startCaptivePortal } from '../../../src/apps/portal/portal.js';
import { Bus } from '../../../src/core/bus.js';
import { silentLogger } from '../../../src/core/log.js';
import type { Message } from '../../../src/core/message.js';
import { have } from '../../support/env.js';
import { Lab } from '../../support/lab.js';
import { waitForLine } from '../../support/wait.js';

/**
 * `startCaptivePortal` in the test process with `commandPrefix` = `ip netns exec ROUTER`: nft and
 * conntrack run in the router namespace, the HTTP server listens here (on 127.0.0.1, so only the
 * test reaches it). Checks the API entry and the restore path without the firewall's own state
 * file: a session from the portal's state file is re-allowed in nft at start.
 */
const ok = have(['nft', 'conntrack', 'ip', 'curl'], { root: true });

const freePort = (): Promise<number> =>
  new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

/** A request to the in-process portal with any Host header. */
const get = (
  port: number,
  path: string,
  host: string,
): Promise<{ code: number; headers: Record<string, unknown>; body: string }> =>
  new Promise((resolve, reject) => {
    const q = request({ host: '127.0.0.1', port, path, headers: { Host: host } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => {
        body += d.toString();
      });
      res.on('end', () => resolve({ code: res.statusCode ?? 0, headers: res.headers, body }));
    });
    q.on('error', reject);
    q.end();
  });

describe.skipIf(!ok)('startCaptivePortal in this process, nft in the router namespace', () => {
  let lab: Lab;
  let bus: Bus;
  let portal: CaptivePortal;
  let port: number;
  let mac: string;
  let ip: string;

  beforeAll(async () => {
    lab = await Lab.create({ addr: true });
    ip = lab.clientIp(0);
    mac = await lab.mac(lab.client, 'c0');
    const real = lab.file(
      'real.mjs',
      `import http from 'node:http';
http.createServer((q, s) => s.end('REAL-SITE')).listen(80, () => console.log('real ready'));`,
    );
    await waitForLine(lab.spawn(lab.inet, process.execPath, [real]), /^real ready$/, 10000);
    const now = Date.now();
    const stateFile = lab.file(
      'portal.json',
      JSON.stringify({ version: 1, sessions: [{ ip, mac, since: now, expires: now + 60_000 }] }),
    );
    port = await freePort();
    bus = new Bus({ name: 'portal-inproc', logger: silentLogger });
    portal = await startCaptivePortal(bus, {
      address: '127.0.0.1',
      port,
      lan: 'r0',
      stateFile,
      commandPrefix: ['ip', 'netns', 'exec', lab.router],
    });
  }, 30000);

  afterAll(async () => {
    await portal?.close();
    await bus?.close(100);
    await lab?.close();
  });

  it('serves the splash for its own Host, redirects others, answers the RFC 8908 API', async () => {
    const self = `127.0.0.1:${port}`;
    expect(portal.url).toBe(`http://${self}/`);
    const splash = await get(port, '/', self);
    expect(splash.code).toBe(200);
    expect(splash.body).toContain('name="csrf"');
    const away = await get(port, '/x?y=1', 'example.org');
    expect(away.code).toBe(302);
    expect(away.headers.location).toBe(
      `http://${self}/?url=${encodeURIComponent('http://example.org/x?y=1')}`,
    );
    expect(away.headers.connection).toBe('close');
    const api = await get(port, '/api', self);
    expect(api.headers['content-type']).toBe('application/captive+json');
    expect(JSON.parse(api.body)).toMatchObject({ captive: true });
  });

  it('re-allows a session from its state file in nft (no firewall state file) and logs it out', async () => {
    const listed = (await bus.request('/portal/clients', {})).all('client').map((t) => t.value as Message);
    expect(listed.map((c) => [c.str('ip'), c.str('mac')])).toEqual([[ip, mac]]);
    const curl = (): Promise<string> =>
      lab
        .exec(lab.client, 'curl', ['-s', '--connect-timeout', '1', '-m', '2', `http://${lab.inetIp}/`])
        .then((r) => (r.code === 0 ? r.stdout : `ERR${r.code}`));
    expect(await curl()).toBe('REAL-SITE');
    const out = await bus.request('/portal/logout', { ip });
    expect(out.bool('removed')).toBe(true);
    expect(await curl()).not.toBe('REAL-SITE');
    expect((await bus.request('/portal/clients', {})).int('count')).toBe(0);
    const bad = await bus.request('/portal/logout', {});
    expect(bad.str('code')).toBe('EBADTUPLE');
  });
});
