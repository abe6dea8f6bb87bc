import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../../src/core/bus.js';
import { STOP } from '../../../src/core/listener.js';
import { silentLogger } from '../../../src/core/log.js';
import type { Message } from '../../../src/core/message.js';
import { attachClient } from '../../../src/ipc/daemon.js';
import { have } from '../../support/env.js';
import { Lab } from '../../support/lab.js';
import { until, waitForLine } from '../../support/wait.js';

/**
 * The portal daemon (src/apps/portal/main.ts) in the lab's router namespace, driving real nft and
 * conntrack there; a real web server ("REAL-SITE") in the inet namespace; curl and a headless
 * Chromium (driven by playwright-core through a wrapper that execs it inside the client namespace,
 * CDP over its pipe) as the client. The test process reaches the portal's mailboxes over its daemon
 * socket, as another process would.
 */
const ok = have(['nft', 'conntrack', 'ip', 'chromium', 'curl'], { root: true });
const PORT = 8080;
const REAL = `<!doctype html><html><body><h1 id="real">REAL-SITE</h1></body></html>`;

describe.skipIf(!ok)('captive portal: real nft, curl and headless Chromium in a lab', () => {
  let lab: Lab;
  let bus: Bus;
  let browser: Browser;
  let portal: ChildProcess;
  let config: string;
  let sockDir: string;
  let mac: string;
  let ip: string;
  let portalUrl: string;
  let inetUrl: string;

  const startPortal = async (): Promise<void> => {
    portal = lab.nodeScript(lab.router, 'src/apps/portal/main.ts', ['--config', config, '--dir', sockDir], {
      env: { ...process.env, METANET_LOG: 'warn' },
    });
    portal.stderr?.on('data', (d: Buffer) => process.stderr.write(`portal: ${d}`));
    await waitForLine(portal, /^portal ready$/, 20000);
  };
  const stopPortal = async (): Promise<void> => {
    const gone = new Promise((r) => portal.once('exit', r));
    const t0 = performance.now();
    portal.kill('SIGTERM');
    await gone;
    process.stderr.write(`portal stopped in ${(performance.now() - t0).toFixed(0)} ms\n`);
  };
  /** curl from the client: status, Location, Content-Type and body. */
  const curl = async (
    url: string,
    extra: string[] = [],
  ): Promise<{ code: number; location: string; type: string; body: string }> => {
    const r = await lab.exec(lab.client, 'curl', [
      '-s',
      '--connect-timeout',
      '2',
      '-m',
      '4',
      '-w',
      '\n%{http_code}\t%{content_type}\t%{redirect_url}',
      ...extra,
      url,
    ]);
    if (r.code !== 0) return { code: -r.code, location: '', type: '', body: r.stderr };
    const nl = r.stdout.lastIndexOf('\n');
    const [code = '0', type = '', location = ''] = r.stdout.slice(nl + 1).split('\t');
    return { code: Number(code), type, location, body: r.stdout.slice(0, nl) };
  };
  const api = async (): Promise<Record<string, unknown>> => {
    const r = await curl(`${portalUrl}api`);
    expect(r.type).toBe('application/captive+json');
    return JSON.parse(r.body) as Record<string, unknown>;
  };
  const clients = async (): Promise<Message[]> =>
    (await bus.request('portal:/portal/clients', {})).all('client').map((t) => t.value as Message);
  const tokenOf = (html: string): string => /name="csrf" value="([^"]+)"/.exec(html)?.[1] ?? '';

  beforeAll(async () => {
    lab = await Lab.create({ addr: true });
    ip = lab.clientIp(0);
    mac = await lab.mac(lab.client, 'c0');
    portalUrl = `http://${lab.routerLanIp}:${PORT}/`;
    inetUrl = `http://${lab.inetIp}/`;
    sockDir = join(lab.dir, 'sock');
    const real = lab.file(
      'real.mjs',
      `import http from 'node:http';
http.createServer((q, s) => {
  if (q.url === '/generate_204') { s.writeHead(204); s.end(); return; }
  s.writeHead(200, { 'Content-Type': 'text/html' }); s.end(${JSON.stringify(REAL)});
}).listen(80, () => console.log('real ready'));`,
    );
    const server = lab.spawn(lab.inet, process.execPath, [real]);
    const wrapper = lab.file(
      'chromium.sh',
      `#!/bin/sh\nexec ip netns exec ${lab.client} /usr/bin/chromium "$@"\n`,
      0o755,
    );
    config = lab.file(
      'portal.json',
      JSON.stringify({
        address: lab.routerLanIp,
        port: PORT,
        lan: 'r0',
        sessionSeconds: 600,
        stateFile: join(lab.dir, 'portal-state.json'),
        firewallStateFile: join(lab.dir, 'firewall-state.json'),
        title: 'Lab <Network>',
      }),
    );
    const [, , b] = await Promise.all([
      waitForLine(server, /^real ready$/, 10000),
      startPortal(),
      chromium.launch({
        executablePath: wrapper,
        args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking'],
      }),
    ]);
    browser = b;
    bus = new Bus({ name: `portaltest${process.pid}`, logger: silentLogger });
    attachClient(bus, { dir: sockDir });
  }, 45000);

  afterAll(async () => {
    await browser?.close().catch(() => {});
    await bus?.close(100);
    await lab?.close();
  });

  it('(1) redirects an unauthorised client to the portal, original URL encoded, body escaped', async () => {
    const r = await curl(`${inetUrl}news?a=1&b=2`);
    expect(r.code).toBe(302);
    expect(r.location).toBe(`${portalUrl}?url=${encodeURIComponent(`${inetUrl}news?a=1&b=2`)}`);
    // Android's probe, any host: the redirect too (so the OS opens its login window).
    const probe = await curl(`${inetUrl}generate_204`, ['-H', 'Host: connectivitycheck.gstatic.com']);
    expect(probe.code).toBe(302);
    expect(probe.location).toContain(encodeURIComponent('http://connectivitycheck.gstatic.com/generate_204'));
    const evil = await curl(inetUrl, ['-H', 'Host: x"><script>alert(1)</script>']);
    expect(evil.code).toBe(302);
    expect(evil.body).not.toContain('<script>');
    expect(evil.body).toContain('&lt;script&gt;');
    expect(await api()).toEqual({ captive: true, 'user-portal-url': portalUrl, 'can-extend-session': false });
  });

  it('(5) CSRF: a POST without a valid token is 403; no open redirect; login and logout by curl', async () => {
    expect((await curl(`${portalUrl}accept`, ['-d', `url=${encodeURIComponent(inetUrl)}`])).code).toBe(403);
    expect((await curl(`${portalUrl}accept`, ['-d', 'csrf=forged&url='])).code).toBe(403);
    expect((await curl(inetUrl)).code).toBe(302); // still captive
    const page = await curl(`${portalUrl}?url=${encodeURIComponent('javascript:alert(1)')}`);
    expect(page.code).toBe(200);
    expect(page.body).not.toMatch(/javascript:/i);
    expect(page.body).toContain('Lab &lt;Network&gt;');
    const token = tokenOf(page.body);
    expect(token).toMatch(/^[\w-]{22}$/);
    const form = ['-d', `csrf=${token}&url=${encodeURIComponent('javascript:alert(1)')}`];
    const login = await curl(`${portalUrl}accept`, form);
    expect(login.code).toBe(303);
    expect(login.location).toBe(portalUrl); // not the javascript: URL
    expect((await curl(inetUrl)).body).toBe(REAL);
    expect((await curl(`${portalUrl}accept`, form)).code).toBe(403); // a token is used once
    const out = await bus.request('portal:/portal/logout', { ip });
    expect(out.bool('removed')).toBe(true);
    expect((await curl(inetUrl)).code).toBe(302);
  });

  it('(4) a prepended /portal/auth listener that refuses: the browser gets the refusal, stays captive', async () => {
    const seen: Message[] = [];
    const refuse = bus.prepend(
      'portal:/portal/auth',
      async (m, ctx) => {
        seen.push(m);
        await ctx.reply({ ok: false, reason: 'voucher <expired>' });
        return STOP;
      },
      { app: 'test-refuser' },
    );
    await refuse.ready;
    const ctx = await browser.newContext();
    try {
      const page = await ctx.newPage();
      await page.goto(inetUrl);
      expect(page.url().startsWith(portalUrl)).toBe(true);
      const [answer] = await Promise.all([page.waitForNavigation(), page.click('#accept')]);
      expect(answer?.status()).toBe(403);
      expect(await page.textContent('#refused')).toBe('Refused: voucher <expired>');
      expect(seen[0]?.str('ip')).toBe(ip);
      expect(seen[0]?.str('mac')).toBe(mac);
      expect(seen[0]?.str('url')).toBe(inetUrl);
    } finally {
      await ctx.close();
      refuse.remove();
    }
    expect((await curl(inetUrl)).code).toBe(302);
    expect((await api()).captive).toBe(true);
  });

  it('(2) headless Chromium: the original page → portal → "I accept" → REAL-SITE', async () => {
    const ctx = await browser.newContext();
    try {
      const page = await ctx.newPage();
      const t0 = performance.now();
      await page.goto(inetUrl);
      expect(page.url().startsWith(`${portalUrl}?url=`)).toBe(true);
      const t1 = performance.now();
      expect(await page.textContent('h2')).toBe('Usage policy');
      await Promise.all([page.waitForURL(inetUrl), page.click('#accept')]);
      expect(await page.textContent('#real')).toBe('REAL-SITE');
      const t2 = performance.now();
      process.stderr.write(
        `browser: original page → splash ${(t1 - t0).toFixed(0)} ms, "I accept" → REAL-SITE ${(t2 - t1).toFixed(0)} ms\n`,
      );
    } finally {
      await ctx.close();
    }
  });

  it('(3) after login: curl reaches REAL-SITE, the probe reaches the real server, /api says captive:false', async () => {
    expect((await curl(inetUrl)).body).toBe(REAL);
    expect((await curl(`${inetUrl}generate_204`)).code).toBe(204);
    const a = await api();
    expect(a.captive).toBe(false);
    expect(a['seconds-remaining']).toBeGreaterThan(590);
    expect(a['seconds-remaining']).toBeLessThanOrEqual(600);
    const [c, ...more] = await clients();
    expect(more).toEqual([]);
    expect(c!.str('ip')).toBe(ip);
    expect(c!.str('mac')).toBe(mac);
    expect(c!.int('expires') - c!.int('since')).toBe(600);
    expect(c!.int('bytes')).toBeGreaterThan(0);
  });

  it('(6) a restarted portal with the same state file: the client is still logged in', async () => {
    await stopPortal();
    expect((await curl(inetUrl)).body).toBe(REAL); // the table stays while the portal is down
    await startPortal();
    expect((await curl(inetUrl)).body).toBe(REAL);
    expect((await api()).captive).toBe(false);
    expect((await clients()).map((c) => c.str('mac'))).toEqual([mac]);
  });

  it('(7) the session limit: the firewall cuts the client off and the portal record agrees', async () => {
    await bus.request('portal:/portal/logout', { ip });
    await stopPortal();
    const cfg = JSON.parse(readFileSync(config, 'utf8')) as Record<string, unknown>;
    writeFileSync(config, JSON.stringify({ ...cfg, sessionSeconds: 2 }));
    await startPortal();
    const token = tokenOf((await curl(portalUrl)).body);
    const t0 = performance.now();
    const login = await curl(`${portalUrl}accept`, [
      '-d',
      `csrf=${token}&url=${encodeURIComponent(inetUrl)}`,
    ]);
    process.stderr.write(
      `login POST → 303 (curl, in-namespace): ${(performance.now() - t0).toFixed(0)} ms\n`,
    );
    expect(login.code).toBe(303);
    expect(login.location).toBe(inetUrl);
    expect((await curl(inetUrl)).body).toBe(REAL);
    expect((await api())['seconds-remaining']).toBeLessThanOrEqual(2);
    await until(
      async () => (await curl(inetUrl)).code === 302,
      'the firewall to cut the client off',
      5000,
      200,
    );
    expect((await api()).captive).toBe(true);
    expect(await clients()).toEqual([]);
  });
});
