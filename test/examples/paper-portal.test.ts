import { execFile, execFileSync, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Portal, startPortal } from '../../examples/paper-portal.js';
import { raw, send } from '../services/http/support.js';
import { have } from '../support/env.js';
import { until, waitForLine } from '../support/wait.js';

const run = promisify(execFile);
let portal: Portal;
let base: string;

beforeAll(async () => {
  portal = await startPortal({ port: 0, host: '127.0.0.1' });
  base = `http://127.0.0.1:${portal.port}`;
});
afterAll(async () => {
  await portal?.close();
});

const portalUrl = (asked: string): string => `${base}/?url=${encodeURIComponent(asked)}`;

/**
 * A command-line HTTP client: curl when installed, else busybox wget (scripts/setup.sh installs
 * busybox; `have` fails hard under CI if it is missing). TEST_HTTP_CLIENT=busybox forces the fallback.
 */
const installed = (tool: string): boolean => {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
const curl = ((): 'curl' | 'busybox' | undefined => {
  if (process.env.TEST_HTTP_CLIENT !== 'busybox' && installed('curl')) return 'curl';
  return have(['busybox']) ? 'busybox' : undefined;
})();

describe('paper portal (§9) with real HTTP clients', () => {
  it('redirects a foreign Host to the portal with a 307 and the original URL in `url` (node:http)', async () => {
    const res = await send(portal.port, { path: '/news/today?a=1&b=2', headers: { Host: 'example.org' } });
    expect(res.status).toBe(307);
    const want = portalUrl('http://example.org/news/today?a=1&b=2');
    expect(res.headers.location).toBe(want);
    expect(res.headers.refresh).toBe(`1;URL=${want}`);
    expect(res.body.toString()).toContain(`<a href="${want.replaceAll('&', '&amp;')}">moved</a>`);
  });

  it('escapes a Host with <script> and quotes in the body, and encodes it in Location', async () => {
    const evil = `ex<script>alert("x")</script>'.org`;
    const res = await send(portal.port, { path: '/"><img/src=x>', headers: { Host: evil } });
    expect(res.status).toBe(307);
    const body = res.body.toString();
    expect(body).not.toContain('<script>');
    expect(body).not.toContain('<img');
    expect(body).toContain('ex&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39;.org');
    expect(res.headers.location).toBe(portalUrl(`http://${evil}/"><img/src=x>`));
    expect(res.headers.location).not.toMatch(/[<>" ]/);
  });

  it('serves its splash page with the usage policy to its own Host (fetch)', async () => {
    const res = await fetch(`${base}/?url=${encodeURIComponent('http://example.org/"<b>')}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const page = await res.text();
    expect(page).toContain('Usage policy');
    expect(page).toContain('value="http://example.org/&quot;&lt;b&gt;"');
    expect((await fetch(`${base}/nothing-here`)).status).toBe(404);
  });

  it('follows the redirect from another Host name to the portal page (fetch)', async () => {
    // `localhost` is another Host than the portal's 127.0.0.1:<port>, on the same server
    const res = await fetch(`http://localhost:${portal.port}/page?q=1`);
    expect(res.redirected).toBe(true);
    expect(res.url).toBe(portalUrl(`http://localhost:${portal.port}/page?q=1`));
    expect(await res.text()).toContain(`You asked for http://localhost:${portal.port}/page?q=1.`);
  });

  it('accepts the policy with a POST and closes that connection (fetch)', async () => {
    const res = await fetch(`${base}/accept`, {
      method: 'POST',
      body: new URLSearchParams({ url: 'http://example.org/x' }),
    });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('<a href="http://example.org/x">Continue to http://example.org/x</a>');
    const js = await fetch(`${base}/accept`, { method: 'POST', body: 'url=javascript:alert(1)' });
    expect(await js.text()).not.toContain('href');
  });

  it.skipIf(!curl)(`redirects with a command-line client (${curl})`, async () => {
    if (curl === 'curl') {
      const { stdout } = await run('curl', ['-s', '-i', '-H', 'Host: example.org', `${base}/a?b=c`]);
      expect(stdout).toMatch(/^HTTP\/1\.1 307 Temporary Redirect\r\n/);
      expect(stdout).toContain(`Location: ${portalUrl('http://example.org/a?b=c')}\r\n`);
      const page = await run('curl', ['-s', `${base}/`]);
      expect(page.stdout).toContain('Usage policy');
    } else {
      // busybox wget follows redirects and keeps a custom Host on them (a loop): ask for `localhost`
      // (another Host than the portal's) and let it follow the 307 to the portal page
      const asked = `http://localhost:${portal.port}/a?b=c`;
      const { stdout, stderr } = await run('busybox', ['wget', '-S', '-O', '-', asked]);
      expect(stderr).toMatch(/HTTP\/1\.1 307/);
      expect(stderr).toContain(`Location: ${portalUrl(asked)}`);
      expect(stdout).toContain(`You asked for ${asked}.`);
    }
  });

  it('answers a malformed request on a raw TCP socket with 400 and keeps serving', async () => {
    const out = await raw(portal.port, 'GET /\x01 HTTP/1.1\r\nHost: example.org\r\n\r\n');
    expect(out).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    const next = await raw(portal.port, 'GET / HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n');
    expect(next).toMatch(/^HTTP\/1\.1 307 /);
  });
});

describe('examples/paper-portal.ts run as a script', () => {
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    it(`prints its address, logs messages as they flow, and stops on ${signal}`, async () => {
      const child = spawn('node_modules/.bin/tsx', ['examples/paper-portal.ts'], {
        env: { ...process.env, PORT: '0' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      try {
        const line = await waitForLine(child, /^portal listening on http:\/\/127\.0\.0\.1:\d+\/$/, 15000);
        const port = Number(/:(\d+)\/$/.exec(line)![1]);
        const flowing = waitForLine(child, /^-> \/captive\/server\/request clientname=/);
        const redirecting = waitForLine(child, /^redirecting browser to 'http:\/\/127\.0\.0\.1:\d+\/\?url=/);
        const res = await send(port, { headers: { Host: 'example.org' } });
        expect(res.status).toBe(307);
        await flowing;
        await redirecting;
        const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
        child.kill(signal);
        expect(await exited).toBe(0);
      } finally {
        if (child.exitCode === null) child.kill('SIGKILL');
        await until(() => child.exitCode !== null || child.signalCode !== null, 'the demo to exit');
      }
    });
});
