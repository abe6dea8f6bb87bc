import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkPath, formatAddress, parseAddress, pathMatches } from '../../src/core/index.js';

describe('paths and addresses', () => {
  it('accepts filesystem-style paths', () => {
    for (const p of [
      '/a',
      '/captive/server/request',
      '/dhcpd/lookup',
      '/x/client-12/close',
      '/a.b/c_d/e+f@g=h',
    ])
      expect(checkPath(p)).toBe(p);
  });

  it.each([
    ['', 'must start with "/"'],
    ['a/b', 'must start with "/"'],
    ['/', 'needs at least one segment'],
    ['/a/', 'must not end with "/"'],
    ['/a//b', 'empty segment'],
    ['/a/../b', 'segment ".." is not allowed'],
    ['/a/b c', 'segment "b c" has a character outside'],
    ['/a/é', 'has a character outside'],
  ])('refuses %j with a clear reason', (p, why) => {
    expect(() => checkPath(p)).toThrow(why);
    expect(() => checkPath(p)).toThrow(`bad mailbox path ${JSON.stringify(p)}`);
  });

  it('refuses over-long paths and too many segments', () => {
    expect(() => checkPath('/' + 'a'.repeat(1100))).toThrow(/longer than 1024/);
    expect(() => checkPath('/a'.repeat(33))).toThrow(/more than 32 segments/);
  });

  it('parses daemon and host addresses', () => {
    expect(parseAddress('/a/b')).toEqual({ path: '/a/b' });
    expect(parseAddress('dhcpd:/dhcpd/lookup')).toEqual({ daemon: 'dhcpd', path: '/dhcpd/lookup' });
    expect(parseAddress('ap2/dhcpd:/dhcpd/lookup')).toEqual({
      host: 'ap2',
      daemon: 'dhcpd',
      path: '/dhcpd/lookup',
    });
    expect(() => parseAddress('dhcpd:lookup')).toThrow(/expected DAEMON:\/path/);
    expect(() => parseAddress('-x:/a')).toThrow(/bad daemon name "-x"/);
    expect(() => parseAddress('h!/d:/a')).toThrow(/bad host name/);
  });

  it('formats what it parses (property)', () => {
    const seg = fc.stringMatching(/^[a-z0-9_]{1,8}$/);
    const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/);
    fc.assert(
      fc.property(
        fc.array(seg, { minLength: 1, maxLength: 5 }),
        fc.option(name),
        fc.option(name),
        (segs, d, h) => {
          const path = '/' + segs.join('/');
          const addr = d === null ? path : `${h === null ? '' : `${h}/`}${d}:${path}`;
          expect(formatAddress(parseAddress(addr))).toBe(addr);
        },
      ),
    );
  });

  it('never throws anything but a MetanetError on arbitrary input (fuzz)', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        try {
          parseAddress(s);
        } catch (e) {
          expect((e as { code?: string }).code).toBe('EBADPATH');
        }
      }),
    );
  });

  it('globs: * is one segment, ** the rest', () => {
    expect(pathMatches('/dhcpd/*', '/dhcpd/lookup')).toBe(true);
    expect(pathMatches('/dhcpd/*', '/dhcpd/a/b')).toBe(false);
    expect(pathMatches('/dhcpd/**', '/dhcpd/a/b')).toBe(true);
    expect(pathMatches('/captive/client-*/close', '/captive/client-9/close')).toBe(true);
    expect(pathMatches('/a', '/b')).toBe(false);
  });
});
