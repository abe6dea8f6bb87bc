import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
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
 * What the guest sees, in a lab with real nft: the portal daemon in the router namespace with its
 * HTTPS server (a self-signed certificate made here with openssl, its own CA), headless Chromium
 * (through a wrapper that execs it inside the guest's namespace) and curl as the guest, a second
 * client namespace on the same LAN bridge as the spoofer. The test process hooks the portal's
 * mailboxes over its daemon socket.
 *
 * Screenshots: with METANET_SCREENSHOTS=DIR the browser cases save PNGs of the pages at phone
 * (375×812) and desktop (1280×800) size there (docs/apps/portal/ holds the committed ones).
 */
const ok = have(['nft', 'conntrack', 'ip', 'chromium', 'curl', 'openssl'], { root: true });
const PORT = 8080;
const HTTPS = 8443;
const REAL = `<!doctype html><html><body><h1 id="real">REAL-SITE</h1></body></html>`;
const SHOTS = process.env.METANET_SCREENSHOTS;
const PHONE = { viewport: { width: 375, height: 812 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
const DESKTOP = { viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 };

interface Curl {
  code: number;
  type: string;
  location: string;
  body: string;
  headers: string;
}

describe.skipIf(!ok)(
  'portal pages: status page, logout, themes, languages, credentials, HTTPS API, spoofer',
  () => {
    let lab: Lab;
    let bus: Bus;
    let browser: Browser;
    let portal: ChildProcess | undefined;
    let sockDir: string;
    let guestIp: string;
    let guestMac: string;
    let spoofer: string;
    let portalUrl: string;
    let httpsUrl: string;
    let inetUrl: string;
    let cert: string;
    const loggedOut: Message[] = [];

    const start = async (extra: Record<string, unknown> = {}): Promise<void> => {
      const config = lab.file(
        'portal.json',
        JSON.stringify({
          address: lab.routerLanIp,
          port: PORT,
          lan: 'r0',
          sessionSeconds: 7200,
          quotaTotal: 2_000_000_000,
          idleCheckSeconds: 1,
          stateFile: join(lab.dir, 'portal-state.json'),
          firewallStateFile: join(lab.dir, 'firewall-state.json'),
          title: 'Café Lab Wi-Fi',
          https: { port: HTTPS, cert, key: join(lab.dir, 'key.pem') },
          ...extra,
        }),
      );
      portal = lab.nodeScript(lab.router, 'src/apps/portal/main.ts', ['--config', config, '--dir', sockDir], {
        env: { ...process.env, METANET_LOG: 'warn' },
      });
      portal.stderr?.on('data', (d: Buffer) => process.stderr.write(`portal: ${d}`));
      await waitForLine(portal, /^portal ready$/, 20000);
      const h = bus.listen(
        'portal:/portal/logged-out',
        (m) => {
          loggedOut.push(m);
        },
        { identity: { test: 'pages' } },
      );
      await h.ready;
    };
    const stop = async (): Promise<void> => {
      const p = portal;
      if (!p || p.exitCode !== null) return;
      const gone = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await gone;
    };

    /** curl in a namespace: status, Content-Type, Location, body, response headers. */
    const curl = async (url: string, extra: string[] = [], ns = lab.client): Promise<Curl> => {
      const headers = join(lab.dir, `h-${performance.now()}`);
      const r = await lab.exec(ns, 'curl', [
        '-s',
        '--connect-timeout',
        '2',
        '-m',
        '4',
        '-D',
        headers,
        '-w',
        '\n%{http_code}\t%{content_type}\t%{redirect_url}',
        ...extra,
        url,
      ]);
      if (r.code !== 0) return { code: -r.code, type: '', location: '', body: r.stderr, headers: '' };
      const nl = r.stdout.lastIndexOf('\n');
      const [code = '0', type = '', location = ''] = r.stdout.slice(nl + 1).split('\t');
      const h = await lab.exec(ns, 'cat', [headers]);
      return { code: Number(code), type, location, body: r.stdout.slice(0, nl), headers: h.stdout };
    };
    const api = async (ns = lab.client, url = `${portalUrl}api`): Promise<Record<string, unknown>> => {
      const r = await curl(url, url.startsWith('https:') ? ['--cacert', cert] : [], ns);
      expect(r.type, r.body).toBe('application/captive+json');
      return JSON.parse(r.body) as Record<string, unknown>;
    };
    const clients = async (): Promise<Message[]> =>
      (await bus.request('portal:/portal/clients', {})).all('client').map((t) => t.value as Message);
    const tokenOf = (html: string): string => /name="csrf" value="([^"]+)"/.exec(html)?.[1] ?? '';
    const loginByCurl = async (ns = lab.client): Promise<void> => {
      const token = tokenOf((await curl(portalUrl, [], ns)).body);
      const r = await curl(`${portalUrl}accept`, ['-d', `csrf=${token}&url=`], ns);
      expect(r.code).toBe(303);
    };
    const logoutAll = async (): Promise<void> => {
      for (const c of await clients()) await bus.request('portal:/portal/logout', { ip: c.str('ip') });
    };
    const shot = async (page: Page, name: string): Promise<void> => {
      if (!SHOTS) return;
      mkdirSync(SHOTS, { recursive: true });
      await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: false });
    };
    const context = (size: typeof PHONE | typeof DESKTOP, locale = 'en-GB'): Promise<BrowserContext> =>
      browser.newContext({ ...size, locale });

    beforeAll(async () => {
      lab = await Lab.create({ clients: 2, addr: true });
      guestIp = lab.clientIp(0);
      guestMac = await lab.mac(lab.client, 'c0');
      spoofer = lab.clients[1]!;
      portalUrl = `http://${lab.routerLanIp}:${PORT}/`;
      httpsUrl = `https://${lab.routerLanIp}:${HTTPS}/`;
      inetUrl = `http://${lab.inetIp}/`;
      sockDir = join(lab.dir, 'sock');
      // The lab's certificate: self-signed for the portal's address; curl trusts it with --cacert.
      cert = join(lab.dir, 'cert.pem');
      const made = await lab.exec(lab.router, 'openssl', [
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
        `/CN=${lab.routerLanIp}`,
        '-addext',
        `subjectAltName=IP:${lab.routerLanIp}`,
        '-keyout',
        join(lab.dir, 'key.pem'),
        '-out',
        cert,
      ]);
      expect(made.code, made.stderr).toBe(0);
      const real = lab.file(
        'real.mjs',
        `import http from 'node:http';
http.createServer((q, s) => { s.writeHead(200, { 'Content-Type': 'text/html' }); s.end(${JSON.stringify(REAL)}); })
  .listen(80, () => console.log('real ready'));`,
      );
      const server = lab.spawn(lab.inet, process.execPath, [real]);
      const wrapper = lab.file(
        'chromium.sh',
        `#!/bin/sh\nexec ip netns exec ${lab.client} /usr/bin/chromium "$@"\n`,
        0o755,
      );
      bus = new Bus({ name: `pagestest${process.pid}`, logger: silentLogger });
      attachClient(bus, { dir: sockDir });
      const [, , b] = await Promise.all([
        waitForLine(server, /^real ready$/, 10000),
        start(),
        chromium.launch({
          executablePath: wrapper,
          args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking'],
        }),
      ]);
      browser = b;
    }, 60000);

    afterAll(async () => {
      await browser?.close().catch(() => {});
      await stop();
      await bus?.close(100);
      await lab?.close();
    });

    it('Chromium: splash → "I accept" → the real page; the status page shows time and data left; Logout → captive again', async () => {
      const ctx = await context(PHONE);
      try {
        const page = await ctx.newPage();
        await page.goto(inetUrl);
        expect(page.url().startsWith(`${portalUrl}?url=`)).toBe(true);
        expect(await page.textContent('h1')).toBe('Café Lab Wi-Fi');
        expect(await page.textContent('h2')).toBe('Usage policy');
        await shot(page, 'splash-phone');
        await Promise.all([page.waitForURL(inetUrl), page.click('#accept')]);
        expect(await page.textContent('#real')).toBe('REAL-SITE');

        const t0 = performance.now();
        await page.goto(portalUrl);
        const statusMs = performance.now() - t0;
        expect(await page.textContent('h1')).toBe('You are online');
        expect(await page.textContent('#time-left')).toMatch(/^1 h 59 min$|^2 h 00 min$/);
        expect(await page.textContent('#data-left')).toMatch(/^(1\.9|2) GB$/);
        await shot(page, 'status-phone');
        const desk = await ctx.browser()!.newContext({ ...DESKTOP, locale: 'en-GB' });
        try {
          const p2 = await desk.newPage();
          await p2.goto(portalUrl);
          expect(await p2.textContent('h1')).toBe('You are online');
          await shot(p2, 'status-desktop');
        } finally {
          await desk.close();
        }
        const a = await api();
        expect(a.captive).toBe(false);
        expect(a['user-portal-url']).toBe(httpsUrl); // https when the portal has it
        expect(a['seconds-remaining']).toBeGreaterThan(7100);
        expect(a['bytes-remaining']).toBeGreaterThan(1_999_000_000);
        expect(a['bytes-remaining']).toBeLessThanOrEqual(2_000_000_000);

        const from = loggedOut.length;
        const t1 = performance.now();
        await Promise.all([page.waitForURL(/[?&]bye=1/), page.click('#logout')]);
        const logoutMs = performance.now() - t1;
        expect(await page.textContent('#notice')).toBe('You are logged out. Log in again whenever you like.');
        expect(await page.isVisible('#accept')).toBe(true);
        const out = (await until(
          () => loggedOut.slice(from).find((m) => m.str('ip') === guestIp),
          'logged-out',
          5000,
        ))!;
        expect(out.str('reason')).toBe('guest');
        expect(out.str('mac')).toBe(guestMac);
        expect((await curl(inetUrl)).code).toBe(302);
        expect((await api()).captive).toBe(true);
        process.stderr.write(
          `pages: status page load ${statusMs.toFixed(0)} ms; Logout click → splash ${logoutMs.toFixed(0)} ms\n`,
        );
      } finally {
        await ctx.close();
      }
    });

    it('splash and pages at desktop size; GET /logout only asks; a forged logout token is 403', async () => {
      const ctx = await context(DESKTOP);
      try {
        const page = await ctx.newPage();
        await page.goto(`${portalUrl}?url=${encodeURIComponent('http://example.org/news')}`);
        expect(await page.textContent('#accept')).toBe('I accept');
        await shot(page, 'splash-desktop');
        await page.goto(`${portalUrl}logout`);
        expect(await page.textContent('h1')).toBe('Log out?');
        expect(await page.textContent('main')).toContain('You are not logged in.');
        await page.goto(`${portalUrl}nowhere`);
        expect(await page.textContent('h1')).toBe('Not found');
        await shot(page, 'error-desktop');
      } finally {
        await ctx.close();
      }
      await loginByCurl();
      const confirm = await curl(`${portalUrl}logout`);
      expect(confirm.code).toBe(200);
      expect(confirm.body).toContain('id="logout"');
      expect((await api()).captive).toBe(false); // GET never logs out
      const forged = await curl(`${portalUrl}logout`, ['-d', 'csrf=AAAAAAAAAAAAAAAAAAAAAA&lang=en']);
      expect(forged.code).toBe(403);
      expect((await api()).captive).toBe(false);
      const from = loggedOut.length;
      const real = await curl(`${portalUrl}logout`, ['-d', `csrf=${tokenOf(confirm.body)}`]);
      expect(real.code).toBe(303);
      expect(real.location).toBe(`${portalUrl}?bye=1&lang=en`);
      await until(() => loggedOut.slice(from).some((m) => m.str('reason') === 'guest'), 'logged-out guest');
      expect((await api()).captive).toBe(true);
      // The theme's files: CSS and logo, cacheable; nothing else.
      const css = await curl(`${portalUrl}theme/style.css`);
      expect([css.code, css.type]).toEqual([200, 'text/css; charset=utf-8']);
      expect((await curl(`${portalUrl}theme/logo.svg`)).type).toBe('image/svg+xml');
      expect((await curl(`${portalUrl}theme/..%2Fconfig.ts`)).code).toBe(404);
      expect((await curl(`${portalUrl}theme/messages/en.json`)).code).toBe(404);
    });

    it('French from Accept-Language (q-values), German by ?lang= (kept in a cookie), English otherwise', async () => {
      const fr = await curl(portalUrl, ['-H', 'Accept-Language: it;q=0.9, fr-CH, de;q=0.5']);
      expect(fr.body).toContain('<html lang="fr">');
      expect(fr.body).toContain('J&#39;accepte');
      expect(fr.body).toContain('Conditions d&#39;utilisation');
      expect(fr.headers).toMatch(/content-language: fr/i);
      const de = await curl(`${portalUrl}?lang=de`, ['-H', 'Accept-Language: fr']);
      expect(de.body).toContain('Ich stimme zu');
      expect(de.headers).toMatch(/set-cookie: portal_lang=de; Path=\/; Max-Age=31536000; SameSite=Lax/i);
      const cookie = await curl(portalUrl, ['-H', 'Accept-Language: fr', '-H', 'Cookie: portal_lang=de']);
      expect(cookie.body).toContain('<html lang="de">');
      expect((await curl(portalUrl, ['-H', 'Accept-Language: ja, zh;q=0.8'])).body).toContain(
        '<html lang="en">',
      );

      const ctx = await context(PHONE, 'fr-FR');
      try {
        const page = await ctx.newPage();
        await page.goto(inetUrl);
        expect(await page.textContent('#accept')).toBe("J'accepte");
        await shot(page, 'splash-phone-fr');
        await Promise.all([page.waitForURL(inetUrl), page.click('#accept')]);
        await page.goto(portalUrl);
        expect(await page.textContent('h1')).toBe('Vous êtes connecté');
        expect(await page.textContent('#data-left')).toMatch(/^(1,9|2) Go$/);
      } finally {
        await ctx.close();
      }
      await logoutAll();
    });

    it('the RFC 8908 API over HTTPS with the lab CA: captive true, then false with what is left; pages on https too', async () => {
      const before = await api(lab.client, `${httpsUrl}api`);
      expect(before).toEqual({ captive: true, 'user-portal-url': httpsUrl, 'can-extend-session': false });
      const untrusted = await curl(`${httpsUrl}api`);
      expect(untrusted.code).toBe(-60); // curl: the peer's certificate is not trusted
      const splash = await curl(httpsUrl, ['--cacert', cert]);
      expect(splash.code).toBe(200);
      // Log in over https: the form posts to the https server; the 303 stays on https.
      const r = await curl(`${httpsUrl}accept`, [
        '--cacert',
        cert,
        '-d',
        `csrf=${tokenOf(splash.body)}&url=`,
      ]);
      expect(r.code).toBe(303);
      expect(r.location).toBe(httpsUrl);
      const after = await api(lab.client, `${httpsUrl}api`);
      expect(after.captive).toBe(false);
      expect(after['seconds-remaining']).toBeGreaterThan(7100);
      expect(after['bytes-remaining']).toBeGreaterThan(1_999_000_000);
      const status = await curl(httpsUrl, ['--cacert', cert]);
      expect(status.body).toContain('id="time-left"');
      // Figures: one API request with curl (a new connection each, TLS handshake included).
      const timed = async (url: string): Promise<number[]> => {
        const ms: number[] = [];
        for (let i = 0; i < 5; i++) {
          const t = await lab.exec(lab.client, 'curl', [
            '-s',
            '-o',
            '/dev/null',
            '-w',
            '%{time_total}',
            '--cacert',
            cert,
            url,
          ]);
          ms.push(Math.round(Number(t.stdout) * 1000));
        }
        return ms.sort((a, b) => a - b);
      };
      process.stderr.write(
        `pages: API by curl, logged in, 5 runs: http ${(await timed(`${portalUrl}api`)).join('/')} ms, https ${(await timed(`${httpsUrl}api`)).join('/')} ms\n`,
      );
      // A foreign Host on the https port goes to the portal like on http.
      const away = await curl(httpsUrl, ['--cacert', cert, '-H', 'Host: example.org']);
      expect(away.code).toBe(302);
      expect(away.location).toBe(`${portalUrl}?url=${encodeURIComponent('https://example.org/')}`);
    });

    it('a spoofer on the guest’s address with another MAC sees captive:true and the splash, never its time', async () => {
      // The guest is logged in (previous case). The spoofer: the second client takes its address.
      expect((await clients()).map((c) => c.str('ip'))).toEqual([guestIp]);
      const spooferMac = await lab.mac(spoofer, 'c0');
      expect(spooferMac).not.toBe(guestMac);
      await lab.exec(lab.client, 'ip', ['link', 'set', 'c0', 'down']);
      for (const args of [
        ['addr', 'flush', 'dev', 'c0'],
        ['addr', 'add', `${guestIp}/24`, 'dev', 'c0'],
        ['route', 'replace', 'default', 'via', lab.routerLanIp],
      ])
        expect((await lab.exec(spoofer, 'ip', args)).code).toBe(0);
      try {
        await new Promise((r) => setTimeout(r, 1100)); // older than the portal's ARP cache (1 s)
        for (const url of [`${portalUrl}api`, `${httpsUrl}api`]) {
          const a = await api(spoofer, url);
          expect(a.captive).toBe(true);
          expect(a['seconds-remaining']).toBeUndefined();
          expect(a['bytes-remaining']).toBeUndefined();
        }
        const arp = await lab.exec(lab.router, 'ip', ['neigh', 'show', guestIp, 'dev', 'r0']);
        expect(arp.stdout).toContain(spooferMac); // the router now sees the spoofer at that address
        const page = await curl(portalUrl, [], spoofer);
        expect(page.body).toContain('id="accept"');
        expect(page.body).not.toContain('id="time-left"');
        expect((await curl(`${portalUrl}logout`, [], spoofer)).body).toContain('You are not logged in.');
        // Its POST /logout does not end the guest's session; the internet stays closed to it.
        expect((await curl(`${portalUrl}logout`, ['-d', 'csrf=x'], spoofer)).code).toBe(303);
        expect((await curl(inetUrl, [], spoofer)).code).toBe(302);
        expect((await clients()).map((c) => [c.str('ip'), c.str('mac')])).toEqual([[guestIp, guestMac]]);
      } finally {
        await lab.exec(spoofer, 'ip', ['addr', 'flush', 'dev', 'c0']);
        await lab.exec(spoofer, 'ip', ['addr', 'add', `${lab.clientIp(1)}/24`, 'dev', 'c0']);
        await lab.exec(lab.client, 'ip', ['link', 'set', 'c0', 'up']);
        // (the link going down took the guest's default route with it)
        await lab.exec(lab.client, 'ip', ['route', 'replace', 'default', 'via', lab.routerLanIp]);
        await lab.exec(lab.router, 'ip', ['neigh', 'del', guestIp, 'dev', 'r0']);
      }
      // The real guest, back: its status again (a fresh ARP entry with its own MAC).
      await until(async () => (await api()).captive === false, 'the guest to be recognised again', 8000, 300);
      await logoutAll();
    });

    it('credentials mode: a prepended auth hook accepts alice, refuses bob with its reason; the reply message is shown', async () => {
      await stop();
      await start({ login: 'credentials', stockAuth: false });
      const asked: Message[] = [];
      const hook = bus.prepend(
        'portal:/portal/auth',
        async (m, ctx) => {
          asked.push(m);
          const form = m.list('form');
          if (form.str('username', '') === 'alice' && form.str('password', '') === 'wonderland')
            await ctx.reply({ ok: true, message: 'Welcome back, Alice <3', 'quota-total': 500_000_000 });
          else await ctx.reply({ ok: false, reason: 'Unknown user or wrong password' });
          return STOP;
        },
        { app: 'test-credentials' },
      );
      await hook.ready;
      const ctx = await context(PHONE);
      try {
        const page = await ctx.newPage();
        await page.goto(inetUrl);
        expect(await page.isVisible('#username')).toBe(true);
        expect(await page.getAttribute('#password', 'type')).toBe('password');
        await shot(page, 'login-phone');
        await page.fill('#username', 'bob');
        await page.fill('#password', 'guess');
        const [refused] = await Promise.all([page.waitForNavigation(), page.click('#accept')]);
        expect(refused?.status()).toBe(403);
        expect(await page.textContent('#refused')).toBe('Refused: Unknown user or wrong password');
        expect(await page.inputValue('#username')).toBe('bob'); // kept; the password is not
        expect(await page.inputValue('#password')).toBe('');
        await shot(page, 'refused-phone');
        expect((await curl(inetUrl)).code).toBe(302);
        const bob = asked.at(-1)!.list('form');
        expect([bob.str('username'), bob.str('password')]).toEqual(['bob', 'guess']);
        expect(bob.has('csrf') || bob.has('url') || bob.has('lang')).toBe(false);

        await page.fill('#username', 'alice');
        await page.fill('#password', 'wonderland');
        await Promise.all([page.waitForURL(inetUrl), page.click('#accept')]);
        expect(await page.textContent('#real')).toBe('REAL-SITE');
        await page.goto(portalUrl);
        expect(await page.textContent('#message')).toBe('Welcome back, Alice <3');
        expect(await page.textContent('#data-left')).toMatch(/^(500|499\.\d) MB$/);
      } finally {
        await ctx.close();
        hook.remove();
      }
      // An empty password never reaches the hook: 400 with the form again.
      const splash = await curl(portalUrl, [], spoofer);
      const n = asked.length;
      const empty = await curl(
        `${portalUrl}accept`,
        ['-d', `csrf=${tokenOf(splash.body)}&url=&username=carol&password=`],
        spoofer,
      );
      expect(empty.code).toBe(400);
      expect(empty.body).toContain('Please enter your username and password.');
      expect(asked.length).toBe(n);
      await logoutAll();
    });
  },
);
