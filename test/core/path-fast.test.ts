import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkPath, noteAddress, parseAddress } from '../../src/core/index.js';

// The rules as regexes (what path.ts used before its one-pass checks): the oracle.
const PATH = /^(?:\/[A-Za-z0-9_.\-+@=]{1,128}){1,32}$/;
const DOT = /\/\.\.?(?:\/|$)/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const validPath = (p: string): boolean => p.length <= 1024 && PATH.test(p) && !DOT.test(p);

function oracle(addr: string): { host?: string; daemon?: string; path: string } | 'error' {
  const colon = addr.indexOf(':/');
  if (colon < 0) return !addr.includes(':') && validPath(addr) ? { path: addr } : 'error';
  const where = addr.slice(0, colon);
  const path = addr.slice(colon + 1);
  if (!validPath(path)) return 'error';
  const slash = where.indexOf('/');
  if (slash < 0) return NAME.test(where) ? { daemon: where, path } : 'error';
  const host = where.slice(0, slash);
  const daemon = where.slice(slash + 1);
  return NAME.test(host) && NAME.test(daemon) ? { host, daemon, path } : 'error';
}

function parsed(addr: string): ReturnType<typeof oracle> {
  try {
    return { ...parseAddress(addr) };
  } catch (e) {
    expect((e as { code?: string }).code).toBe('EBADPATH');
    return 'error';
  }
}

// strings made mostly of the characters that matter at the edges of the rules
const piece = fc.constantFrom(
  '/',
  ':',
  '.',
  '..',
  'a',
  'Z',
  '9',
  '-',
  '_',
  '+',
  '@',
  '=',
  ' ',
  'é',
  ':/',
  '//',
  'x.y',
);
const edgy = fc.array(piece, { maxLength: 12 }).map((a) => a.join(''));

describe('address parsing without regexes agrees with the rules', () => {
  it('same answer as the regex rules on edge-heavy strings (property)', () => {
    fc.assert(
      fc.property(edgy, (s) => {
        expect(parsed(s)).toEqual(oracle(s));
      }),
      { numRuns: 3000 },
    );
  });

  it('same answer on arbitrary strings (property)', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        expect(parsed(s)).toEqual(oracle(s));
      }),
      { numRuns: 2000 },
    );
  });

  it('limits: 128-character segments, 32 segments, 1024 bytes, 64-character names', () => {
    const seg = 'a'.repeat(128);
    expect(checkPath(`/${seg}`)).toBe(`/${seg}`);
    expect(() => checkPath(`/${seg}b`)).toThrow(/has a character outside|bad mailbox path/);
    expect(checkPath('/a'.repeat(32))).toBe('/a'.repeat(32));
    expect(() => checkPath('/a'.repeat(33))).toThrow(/more than 32 segments/);
    const long = `/${'b'.repeat(100)}`.repeat(10) + '/cc';
    expect(long.length).toBeGreaterThan(1010);
    expect(parsed(long)).toEqual(oracle(long));
    const name = `d${'x'.repeat(63)}`;
    expect(parseAddress(`${name}:/a`)).toEqual({ daemon: name, path: '/a' });
    expect(() => parseAddress(`${name}x:/a`)).toThrow(/bad daemon name/);
    for (const bad of ['/.', '/..', '/a/.', '/a/../b', '/./a']) expect(parsed(bad)).toBe('error');
    for (const ok of ['/...', '/.a', '/a..', '/.../b']) expect(parseAddress(ok)).toEqual({ path: ok });
  });
});

describe('parsed addresses are remembered', () => {
  it('the same address gives the same result object; errors are not remembered', () => {
    const a = parseAddress('dhcpd:/dhcpd/lookup');
    expect(parseAddress('dhcpd:/dhcpd/lookup')).toBe(a);
    expect(() => parseAddress('-x:/a')).toThrow(/bad daemon name/);
    expect(() => parseAddress('-x:/a')).toThrow(/bad daemon name/);
  });

  it('reply paths are parsed each time (used once), with the same result', () => {
    const r = 'client.42:/system/reply/7';
    expect(parseAddress(r)).toEqual({ daemon: 'client.42', path: '/system/reply/7' });
    expect(parseAddress(r)).not.toBe(parseAddress(r));
  });

  it('reply addresses (`name:/system/reply/N`, read by their shape) agree with the rules', () => {
    const name = fc.stringMatching(/^[A-Za-z0-9_.\-/+@=:]{0,70}$/);
    const tail = fc.stringMatching(/^[0-9a/]{0,20}$/);
    fc.assert(
      fc.property(name, tail, (n, t) => {
        const addr = `${n}:/system/reply/${t}`;
        expect(parsed(addr)).toEqual(oracle(addr));
      }),
      { numRuns: 3000 },
    );
    expect(parsed('ap2/dhcpd:/system/reply/9')).toEqual({
      host: 'ap2',
      daemon: 'dhcpd',
      path: '/system/reply/9',
    });
    expect(parsed('-x:/system/reply/9')).toBe('error');
    expect(parsed('x:/system/reply/')).toBe('error');
  });

  it('a noted address (the IPC layer rewriting a reply-to) parses to the same result; an invalid one is not kept', () => {
    noteAddress('c.42:/system/reply/9', 'c.42', 'c:/system/reply/9', 2);
    expect(parseAddress('c.42:/system/reply/9')).toEqual({ daemon: 'c.42', path: '/system/reply/9' });
    expect(parseAddress('c.42:/system/reply/9')).toBe(parseAddress('c.42:/system/reply/9'));
    noteAddress('c.42:/bad//path', 'c.42', 'c:/bad//path', 2);
    expect(() => parseAddress('c.42:/bad//path')).toThrow(/bad mailbox path/);
    noteAddress('-c:/ok', '-c', 'x:/ok', 2);
    expect(() => parseAddress('-c:/ok')).toThrow(/bad daemon name/);
  });

  it('stays right across many distinct addresses (the memory is emptied when full)', () => {
    for (let i = 0; i < 3000; i++)
      expect(parseAddress(`d${i}:/p/${i}`)).toEqual({ daemon: `d${i}`, path: `/p/${i}` });
    expect(parseAddress('d5:/p/5')).toEqual({ daemon: 'd5', path: '/p/5' });
  });
});
