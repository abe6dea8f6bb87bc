import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { plainCaptivePortals } from '../../../src/apps/dhcpd/app.js';
import { loadGateway } from '../../../src/apps/gateway/config.js';
import { parseConfig, portalUrls } from '../../../src/apps/portal/config.js';
import {
  EN_UNITS,
  formatBytes,
  formatDuration,
  negotiate,
  parseAcceptLanguage,
} from '../../../src/apps/portal/i18n.js';
import { Pages } from '../../../src/apps/portal/pages.js';
import { Html, parseTemplate, render } from '../../../src/apps/portal/template.js';
import { DEFAULT_THEME, loadTheme } from '../../../src/apps/portal/theme.js';
import { Neighbours } from '../../../src/apps/portal/web.js';
import type { DhcpConfig } from '../../../src/services/dhcp/config.js';
import { REPO_ROOT } from '../../support/lab.js';

const dir = mkdtempSync(join(tmpdir(), 'portal-pages-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let seq = 0;
/** A theme directory of the test's own with these files (path → content). */
function themeDir(files: Record<string, string>): string {
  const d = join(dir, `theme${++seq}`);
  mkdirSync(join(d, 'messages'), { recursive: true });
  for (const [f, text] of Object.entries(files)) writeFileSync(join(d, f), text);
  return d;
}
const errorOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  return 'no error';
};

describe('Accept-Language', () => {
  it('orders ranges by q-value, keeps the header order on ties, drops q=0 and junk', () => {
    expect(parseAcceptLanguage('fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5')).toEqual([
      { tag: 'fr-ch', q: 1 },
      { tag: 'fr', q: 0.9 },
      { tag: 'en', q: 0.8 },
      { tag: 'de', q: 0.7 },
      { tag: '*', q: 0.5 },
    ]);
    expect(parseAcceptLanguage('de;q=0.5, en;q=0.5, fr')).toEqual([
      { tag: 'fr', q: 1 },
      { tag: 'de', q: 0.5 },
      { tag: 'en', q: 0.5 },
    ]);
    expect(parseAcceptLanguage('en;q=0, fr ; Q=0.3, x_y, de;q=2, it;q=abc, , es;level=1')).toEqual([
      { tag: 'es', q: 1 },
      { tag: 'fr', q: 0.3 },
    ]);
    expect(parseAcceptLanguage(undefined)).toEqual([]);
    expect(parseAcceptLanguage('')).toEqual([]);
    fc.assert(
      fc.property(fc.string(), (s) => {
        for (const r of parseAcceptLanguage(s)) {
          expect(r.q).toBeGreaterThan(0);
          expect(r.q).toBeLessThanOrEqual(1);
        }
      }),
    );
  });

  it('picks the best available language: exact, regional, cut down, else the fallback', () => {
    const have = ['de', 'en', 'fr', 'pt-br'];
    expect(negotiate('fr', have, 'en')).toBe('fr');
    expect(negotiate('FR-ch,de;q=0.5', have, 'en')).toBe('fr'); // fr-ch → fr
    expect(negotiate('pt', have, 'en')).toBe('pt-br'); // a bare range matches a regional tag
    expect(negotiate('it, de;q=0.1', have, 'en')).toBe('de');
    expect(negotiate('it', have, 'en')).toBe('en');
    expect(negotiate('*', have, 'fr')).toBe('fr');
    expect(negotiate('de;q=0, fr;q=0.2', have, 'en')).toBe('fr');
    expect(negotiate(undefined, have, 'de')).toBe('de');
  });
});

describe('remaining time and data, as a guest reads them', () => {
  it('time: two units at most, rounded down', () => {
    expect(formatDuration(0)).toBe('0 s');
    expect(formatDuration(59.9)).toBe('59 s');
    expect(formatDuration(60)).toBe('1 min');
    expect(formatDuration(3599)).toBe('59 min');
    expect(formatDuration(3600)).toBe('1 h 00 min');
    expect(formatDuration(3725)).toBe('1 h 02 min');
    expect(formatDuration(86400 + 3 * 3600 + 59)).toBe('1 d 3 h');
    expect(formatDuration(2 * 86400)).toBe('2 d');
    expect(formatDuration(-5)).toBe('0 s');
  });

  it('data: decimal units, one decimal at most, the language number format and unit words', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(999)).toBe('999 B');
    expect(formatBytes(1000)).toBe('1 kB');
    expect(formatBytes(1_534_000_000)).toBe('1.5 GB');
    expect(formatBytes(1_599_999_999)).toBe('1.5 GB'); // rounded down
    expect(formatBytes(820_000_000)).toBe('820 MB');
    expect(formatBytes(2e12)).toBe('2 TB');
    const theme = loadTheme({ language: 'en' });
    expect(formatBytes(1_534_000_000, 'fr', theme.units('fr'))).toBe('1,5 Go');
    expect(formatBytes(1_534_000_000, 'de', theme.units('de'))).toBe('1,5 GB');
    expect(formatDuration(3725, theme.units('de'))).toBe('1 Std. 02 Min.');
    expect(theme.units('en')).toEqual(EN_UNITS);
  });
});

describe('templates', () => {
  const msg = (k: string): string => ({ hi: 'Hello {who} & co', plain: 'x' })[k] ?? k;

  it('escapes every value by default; only Html made by the code goes in raw', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        const out = render(parseTemplate('{{v}}', 't'), { v: s }, msg).html;
        expect(out.replace(/&(amp|lt|gt|quot|#39);/g, '')).not.toMatch(/[<>"'&]/);
      }),
    );
    const t = parseTemplate('{{a}}|{{b}}|{{n}}|{{t hi}}', 't');
    expect(render(t, { a: '<b>', b: new Html('<i>ok</i>'), n: 3, who: '<script>' }, msg).html).toBe(
      '&lt;b&gt;|<i>ok</i>|3|Hello &lt;script&gt; &amp; co',
    );
  });

  it('if / else / each, nested names, the item itself as `.`', () => {
    const t = parseTemplate(
      '{{#if on}}yes{{else}}no{{/if}};{{#each xs}}[{{.}}]{{/each}};{{#each ps}}{{name}}@{{top}}{{#if cur}}*{{/if}},{{/each}};{{o.k}}{{#if empty}}E{{/if}}',
      't',
    );
    expect(
      render(
        t,
        {
          on: true,
          xs: ['a', '<'],
          ps: [{ name: 'p1', cur: true }, { name: 'p2' }],
          top: 'T',
          o: { k: 'deep' },
          empty: [],
        },
        msg,
      ).html,
    ).toBe('yes;[a][&lt;];p1@T*,p2@T,;deep');
    expect(render(t, { on: '' }, msg).html).toBe('no;;;');
  });

  it('names the file and line of every mistake', () => {
    expect(errorOf(() => parseTemplate('a\n{{#if x}}\nb', 'f.html'))).toBe('f.html:2: unclosed {{#if x}}');
    expect(errorOf(() => parseTemplate('{{#if x}}{{/each}}', 'f.html'))).toMatch(
      /^f\.html:1: \{\{\/each\}\} closes \{\{#if x\}\}/,
    );
    expect(errorOf(() => parseTemplate('\n\n{{else}}', 'f.html'))).toBe('f.html:3: {{else}} outside {{#if}}');
    expect(errorOf(() => parseTemplate('{{/if}}', 'f.html'))).toMatch(/^f\.html:1: \{\{\/if\}\} without/);
    expect(errorOf(() => parseTemplate('x\n{{a b}}', 'f.html'))).toMatch(
      /^f\.html:2: \{\{a b\}\}: not a name/,
    );
    expect(errorOf(() => parseTemplate('{{{raw}}}', 'f.html'))).toMatch(/^f\.html:1: /);
    expect(errorOf(() => parseTemplate('}} x', 'f.html'))).toBe('f.html:1: a stray "{{" or "}}"');
    expect(errorOf(() => parseTemplate('{{t bad key}}', 'f.html'))).toMatch(
      /expected \{\{t message\.key\}\}/,
    );
  });
});

describe('themes', () => {
  it('the default theme loads with en, fr and de; every page renders', () => {
    const theme = loadTheme({ language: 'en' });
    expect(theme.languages).toEqual(['de', 'en', 'fr']);
    expect(theme.logo).toBe('logo.svg');
    expect(theme.asset('style.css')?.type).toBe('text/css; charset=utf-8');
    expect(theme.asset('../config.ts')).toBeUndefined();
    expect(theme.asset('en.json')).toBeUndefined();
    const pages = new Pages(theme, { login: 'click' });
    const links = (c: string): string => `/?lang=${c}`;
    expect(pages.splash('fr', { token: 't' }, links)).toContain('J&#39;accepte');
    expect(pages.status('de', { seconds: 90, bytes: undefined, token: 'x' }, links)).toContain('Unbegrenzt');
    expect(pages.logout('en', {}, links)).toContain('You are not logged in.');
    expect(pages.message('en', { what: 'notfound', params: { path: '/<x>' } }, links)).toContain(
      'There is no page /&lt;x&gt; here.',
    );
  });

  it("an operator's directory lays files over the default and adds to a language's texts", () => {
    const d = themeDir({
      'style.css': 'body{background:pink}',
      'logo.png': 'PNG',
      'messages/fr.json': JSON.stringify({ 'splash.accept': 'Oui !' }),
      'messages/es.json': JSON.stringify({ 'language.name': 'Español', 'splash.accept': 'Acepto' }),
    });
    const theme = loadTheme({ dir: d, language: 'en' });
    expect(theme.asset('style.css')?.body.toString()).toBe('body{background:pink}');
    expect(theme.logo).toBe('logo.svg'); // the default's svg comes first in the search order
    expect(theme.asset('logo.png')?.type).toBe('image/png');
    expect(theme.languages).toEqual(['de', 'en', 'es', 'fr']);
    expect(theme.text('fr', 'splash.accept')).toBe('Oui !');
    expect(theme.text('fr', 'splash.login')).toBe('Se connecter'); // the default's French still there
    expect(theme.text('es', 'splash.login')).toBe('Log in'); // missing in es: the fallback language
    const html = new Pages(theme, { login: 'click' }).splash('es', { token: 't' }, () => '/');
    expect(html).toContain('Acepto');
    expect(html).toContain('<html lang="es">');
    // A partial language as the fallback: what it lacks comes from English.
    const es = loadTheme({ dir: d, language: 'es' });
    expect(es.fallback).toBe('es');
    expect(es.text('it', 'splash.accept')).toBe('Acepto');
    expect(es.text('it', 'status.heading')).toBe('You are online');
  });

  it('loading errors name the directory, file, line and key', () => {
    const missing = join(dir, 'nope');
    expect(errorOf(() => loadTheme({ dir: missing, language: 'en' }))).toBe(
      `portal theme ${missing}: no such directory`,
    );
    expect(errorOf(() => loadTheme({ language: 'it' }))).toMatch(
      /no messages\/it\.json for the fallback language "it" \(config language\); have: de, en, fr/,
    );
    const badJson = themeDir({ 'messages/fr.json': '{"a": ' });
    expect(errorOf(() => loadTheme({ dir: badJson, language: 'en' }))).toMatch(
      new RegExp(`^portal theme ${join(badJson, 'messages', 'fr.json')}: not JSON: `),
    );
    const notString = themeDir({ 'messages/fr.json': '{"splash.accept": 3}' });
    expect(errorOf(() => loadTheme({ dir: notString, language: 'en' }))).toMatch(
      /fr\.json: "splash\.accept" is number, expected a string$/,
    );
    const badName = themeDir({ 'messages/French.json': '{}' });
    expect(errorOf(() => loadTheme({ dir: badName, language: 'en' }))).toMatch(
      /French\.json: the file name must be a language tag/,
    );
    const unknownValue = themeDir({ 'status.html': '<h1>{{t status.heading}}</h1>\n<p>{{password}}</p>' });
    expect(errorOf(() => loadTheme({ dir: unknownValue, language: 'en' }))).toMatch(
      /status\.html:2: \{\{password\}\} is not a value of status\.html \(it has: lang, title, /,
    );
    const unknownKey = themeDir({ 'message.html': '{{heading}}\n\n{{t no.such.key}}' });
    expect(errorOf(() => loadTheme({ dir: unknownKey, language: 'en' }))).toMatch(
      /message\.html:3: \{\{t no\.such\.key\}\} has no text in messages\/en\.json$/,
    );
    const badParam = themeDir({ 'messages/de.json': JSON.stringify({ 'status.timeLeft': 'Zeit {csrf2}' }) });
    expect(errorOf(() => loadTheme({ dir: badParam, language: 'en' }))).toMatch(
      /messages\/de\.json: "status\.timeLeft" names \{csrf2\}, which status\.html \(line \d+\) does not have/,
    );
    const unclosed = themeDir({ 'logout.html': '{{#if online}}\n<p>x</p>' });
    expect(errorOf(() => loadTheme({ dir: unclosed, language: 'en' }))).toBe(
      `portal theme ${join(unclosed, 'logout.html')}:1: unclosed {{#if online}}`,
    );
    const big = themeDir({ 'huge.png': 'x'.repeat((1 << 20) + 1) });
    expect(errorOf(() => loadTheme({ dir: big, language: 'en' }))).toMatch(/huge\.png: 1048577 bytes, over/);
    // A theme without the default underneath: what is missing is named.
    const bare = themeDir({ 'layout.html': '{{content}}' });
    expect(errorOf(() => loadTheme({ base: bare, language: 'en' }))).toMatch(/no messages\/en\.json/);
    cpSync(join(DEFAULT_THEME, 'messages'), join(bare, 'messages'), { recursive: true });
    expect(errorOf(() => loadTheme({ base: bare, language: 'en' }))).toBe(
      `portal theme ${bare}: no splash.html`,
    );
  });

  it('the config rejects a bad language tag and login mode, and https without its files', () => {
    const base = { address: '10.0.0.1', lan: 'br0' };
    expect(parseConfig(base)).toMatchObject({ language: 'en', login: 'click' });
    expect(errorOf(() => parseConfig({ ...base, language: 'EN_us' }))).toMatch(
      /language: a lower-case language tag/,
    );
    expect(errorOf(() => parseConfig({ ...base, login: 'voucher' }))).toMatch(/login: /);
    expect(errorOf(() => parseConfig({ ...base, https: { port: 8443 } }))).toMatch(/https\.cert: /);
  });
});

describe('URLs, option 114 and the ARP cache', () => {
  it('portalUrls: https when configured, on portalHost’s name', () => {
    expect(portalUrls({ address: '10.0.0.1', port: 8080 })).toEqual({
      http: 'http://10.0.0.1:8080/',
      page: 'http://10.0.0.1:8080/',
      api: 'http://10.0.0.1:8080/api',
    });
    expect(
      portalUrls({ address: '10.0.0.1', port: 8080, portalHost: 'Portal.Cafe:8080', https: { port: 443 } }),
    ).toEqual({
      http: 'http://portal.cafe:8080/',
      page: 'https://portal.cafe/',
      api: 'https://portal.cafe/api',
    });
    expect(portalUrls({ address: '10.0.0.1', port: 80, https: { port: 8443 } }).api).toBe(
      'https://10.0.0.1:8443/api',
    );
  });

  it('under the gateway, option 114 is the https API when the portal has https; dhcpd warns about http', async () => {
    const example = JSON.parse(readFileSync(join(REPO_ROOT, 'examples/gateway.json'), 'utf8')) as {
      apps: Record<string, Record<string, unknown>>;
    };
    const plain = await loadGateway({ ...structuredClone(example), upstreamDns: ['10.99.0.1'] }, 'gw.json');
    const plainDhcp = plain.apps.find((a) => a.name === 'dhcpd')!.config as DhcpConfig;
    expect(plainCaptivePortals(plainDhcp)).toEqual([
      'dhcpd: subnet 10.20.0.0/24: option 114 (captive portal API) is http://10.20.0.1:8080/api, plain HTTP: phones ignore it (RFC 8908 wants https; give the portal "https")',
    ]);
    const c = structuredClone(example);
    c.apps.portal = {
      ...c.apps.portal,
      https: { port: 8443, cert: '/etc/metanet/portal.crt', key: '/etc/metanet/portal.key' },
    };
    const gw = await loadGateway({ ...c, upstreamDns: ['10.99.0.1'] }, 'gw.json');
    const dhcpd = gw.apps.find((a) => a.name === 'dhcpd')!.config as DhcpConfig;
    expect(dhcpd.subnets.find((s) => s.name === '10.20.0.0/24')!.captivePortal).toBe(
      'https://10.20.0.1:8443/api',
    );
    expect(plainCaptivePortals(dhcpd)).toEqual([]);
  });

  it('Neighbours: one read per address per ttl, one in flight', async () => {
    let reads = 0;
    let now = 0;
    let answer = 'aa';
    const n = new Neighbours(
      [],
      1000,
      async () => {
        reads++;
        await new Promise((r) => setTimeout(r, 5));
        return answer;
      },
      () => now,
    );
    expect(await Promise.all([n.mac('1'), n.mac('1'), n.mac('1')])).toEqual(['aa', 'aa', 'aa']);
    expect(reads).toBe(1);
    answer = 'bb';
    now = 999;
    expect(await n.mac('1')).toBe('aa');
    now = 1000;
    expect(await n.mac('1')).toBe('bb');
    expect(await n.mac('2')).toBe('bb');
    expect(reads).toBe(3);
  });
});
