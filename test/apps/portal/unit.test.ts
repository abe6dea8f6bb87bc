import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { parseArp } from '../../../src/apps/portal/arp.js';
import { parseConfig } from '../../../src/apps/portal/config.js';
import { esc, moved, Pages, safeUrl } from '../../../src/apps/portal/pages.js';
import { loadSessions, NO_LIMITS, parseSessions, Sessions } from '../../../src/apps/portal/sessions.js';
import { loadTheme } from '../../../src/apps/portal/theme.js';
import { Tokens } from '../../../src/apps/portal/tokens.js';
import { isMetanetError } from '../../../src/core/errors.js';
import { ROOT, runTs } from '../../support/daemons.js';

const dir = mkdtempSync(join(tmpdir(), 'portal-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('pages', () => {
  it('escapes every character that matters in HTML text and attributes', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        const e = esc(s);
        expect(e).not.toMatch(/[<>"']/);
        expect(e.replace(/&(amp|lt|gt|quot|#39);/g, '')).not.toContain('&');
      }),
    );
  });

  it('safeUrl keeps only absolute http(s) URLs', () => {
    expect(safeUrl('http://example.org/a?b=1')).toBe('http://example.org/a?b=1');
    expect(safeUrl('HTTPS://Example.org')).toBe('https://example.org/');
    for (const bad of [
      'javascript:alert(1)',
      ' javascript:alert(1)',
      'JaVaScRiPt:x',
      'data:text/html,x',
      '//evil.example/',
      '/local',
      'ftp://x/',
      '',
      null,
      undefined,
    ])
      expect(safeUrl(bad)).toBeUndefined();
    expect(safeUrl(`http://x/${'a'.repeat(5000)}`)).toBeUndefined();
    fc.assert(
      fc.property(fc.string(), (s) => {
        const u = safeUrl(s);
        if (u !== undefined) expect(u).toMatch(/^https?:\/\//);
      }),
    );
  });

  it('the splash page carries the token and escapes the URL, the title and a refusal reason', () => {
    const pages = new Pages(loadTheme({ language: 'en' }), {
      title: 'A <b>',
      policy: 'one\n\ntwo <i>',
      login: 'click',
    });
    const html = pages.splash(
      'en',
      { token: 'tok', url: 'http://x/"><script>', refused: '<img src=x>' },
      () => '/',
    );
    expect(html).toContain('name="csrf" value="tok"');
    expect(html).not.toMatch(/<script>|<img src=x|<b>|<i>/);
    expect(html).toContain('<p>one</p><p>two &lt;i&gt;</p>');
    expect(moved('http://p/?url=x', 'http://h/"<x>')).not.toContain('<x>');
  });
});

describe('parseArp', () => {
  const ARP = `IP address       HW type     Flags       HW address            Mask     Device
10.77.0.10       0x1         0x2         7E:93:b6:81:cf:6d     *        r0
10.77.0.11       0x1         0x0         00:00:00:00:00:00     *        r0
10.77.0.12       0x1         0x6         02:00:00:00:00:0c     *        r0
garbage
`;
  it('maps complete entries to lowercase MACs and skips incomplete ones', () => {
    expect([...parseArp(ARP)]).toEqual([
      ['10.77.0.10', '7e:93:b6:81:cf:6d'],
      ['10.77.0.12', '02:00:00:00:00:0c'],
    ]);
  });
  it('never throws and only yields well-formed pairs (fuzzed)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.string(), fc.constantFrom('1.2.3.4 0x1 0x2 aa:bb:cc:dd:ee:ff * r0'))),
        (lines) => {
          for (const [ip, mac] of parseArp(['header', ...lines].join('\n'))) {
            expect(ip).toMatch(/^\d{1,3}(\.\d{1,3}){3}$/);
            expect(mac).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
          }
        },
      ),
    );
  });
});

describe('sessions', () => {
  it('survive a reload, expire with the session limit, are written atomically with mode 0600', () => {
    const file = join(dir, 'state.json');
    let now = 1_000_000;
    const a = new Sessions(file, () => now);
    const limits = (sessionTimeout: number) => ({ ...NO_LIMITS, sessionTimeout });
    a.add('10.0.0.5', '02:00:00:00:00:05', limits(60));
    a.add('10.0.0.6', '02:00:00:00:00:06', limits(10));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    now += 5_000;
    const b = new Sessions(file, () => now);
    expect(b.list().map((s) => s.ip)).toEqual(['10.0.0.5', '10.0.0.6']);
    now += 6_000; // 11 s in: the 10 s session is over
    expect(b.get('10.0.0.6')).toBeUndefined();
    expect(b.list().map((s) => s.ip)).toEqual(['10.0.0.5']);
    // Past its end but not ended yet: still on record (and in the file) until the lifecycle announces it.
    expect(b.record('10.0.0.6')?.mac).toBe('02:00:00:00:00:06');
    expect(JSON.parse(readFileSync(file, 'utf8')).sessions).toHaveLength(2);
    expect(b.remove('10.0.0.6')).toBe(true);
    expect(JSON.parse(readFileSync(file, 'utf8')).sessions).toHaveLength(1);
    expect(b.remove('10.0.0.5')).toBe(true);
    expect(new Sessions(file, () => now).list()).toEqual([]);
  });

  it('a missing file is empty; a broken one is ECONFIG naming the entry', () => {
    expect(loadSessions(join(dir, 'none.json'))).toEqual([]);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"version":1,"sessions":[{"ip":"10.0.0.1","mac":"nope","since":1,"expires":2}]}');
    expect(() => loadSessions(bad)).toThrow(/sessions\[0\]: mac/);
    expect(() => parseSessions('{')).toThrow(/not JSON/);
  });

  it('the parser either returns sessions or throws ECONFIG (fuzzed)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json()), (text) => {
        try {
          parseSessions(text);
        } catch (e) {
          expect(isMetanetError(e, 'ECONFIG')).toBe(true);
        }
      }),
    );
  });
});

describe('CSRF tokens', () => {
  it('are random, bound to the address, single use and expire', () => {
    let now = 0;
    const t = new Tokens(1000, 3, () => now);
    const a = t.issue('10.0.0.1');
    expect(a).toMatch(/^[\w-]{22}$/);
    expect(t.issue('10.0.0.1')).not.toBe(a);
    expect(t.take(a, '10.0.0.2')).toBe(false); // another client: refused, and used up
    expect(t.take(a, '10.0.0.1')).toBe(false);
    const b = t.issue('10.0.0.1');
    expect(t.take(b, '10.0.0.1')).toBe(true);
    expect(t.take(b, '10.0.0.1')).toBe(false);
    const c = t.issue('10.0.0.1');
    now = 1001;
    expect(t.take(c, '10.0.0.1')).toBe(false);
    expect(t.take(null, '10.0.0.1')).toBe(false);
    const first = t.issue('x');
    for (let i = 0; i < 3; i++) t.issue('x');
    expect(t.take(first, 'x')).toBe(false); // pushed out: at most 3 kept
  });
});

describe('config', () => {
  it('fills defaults and names a bad field', () => {
    const c = parseConfig({ address: '10.0.0.1', lan: 'wlan0' });
    expect(c).toMatchObject({ name: '/portal', port: 8080, sessionSeconds: 3600, commandPrefix: [] });
    expect(() => parseConfig({ address: '10.0.0.300', lan: 'x' })).toThrow(/address/);
    expect(() => parseConfig({ address: '10.0.0.1', lan: 'x', sessionSeconds: 0 })).toThrow(/sessionSeconds/);
    expect(() => parseConfig({ address: '10.0.0.1', lan: 'x', portalHost: 'a/b' })).toThrow(/portalHost/);
    expect(() => parseConfig({ address: '10.0.0.1', lan: 'x', extra: 1 })).toThrow(
      /ECONFIG|extra|Unrecognized/,
    );
  });
});

describe('the daemon entry', () => {
  it('exits 1 naming the bad field of its config', async () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ address: '10.0.0.1', lan: 'x', sessionSeconds: 0 }));
    const child = runTs(join(ROOT, 'src/apps/portal/main.ts'), ['--config', file]);
    let err = '';
    child.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const code = await new Promise((r) => child.once('exit', r));
    expect(code).toBe(1);
    expect(err).toMatch(/bad\.json: invalid configuration:\n\s+sessionSeconds: Too small/);
  }, 20000);
});
