import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isMetanetError, Message, msg, type Tuple, tuple, typed } from '../../src/core/index.js';

describe('Message', () => {
  it('builds typed tuples from a plain object, in key order', () => {
    const m = msg({
      s: 'x',
      i: 5,
      f: 1.5,
      b: true,
      by: new Uint8Array([1, 2]),
      n: null,
      l: { a: 1 },
      big: 2n ** 60n,
    });
    expect(m.tuples.map((t) => [t.tag, t.type])).toEqual([
      ['s', 'str'],
      ['i', 'int'],
      ['f', 'float'],
      ['b', 'bool'],
      ['by', 'bytes'],
      ['n', 'null'],
      ['l', 'list'],
      ['big', 'int'],
    ]);
    expect(m.list('l').int('a')).toBe(1);
    expect(m.bigint('big')).toBe(2n ** 60n);
  });

  it('keeps repeated tags in order (arrays become repeated tuples)', () => {
    const m = msg({ option: [3, 6, 1], host: 'a' });
    expect(m.all('option').map((t) => t.value)).toEqual([3, 6, 1]);
    expect(m.int('option')).toBe(3);
    expect(m.toObject()).toEqual({ option: [3, 6, 1], host: 'a' });
  });

  it('skips undefined values, so optional fields read naturally', () => {
    expect(msg({ a: undefined, b: 1 }).tags()).toEqual(['b']);
  });

  it('forces a type with typed.*', () => {
    const m = msg({ f: typed.float(1), i: typed.int(2n) });
    expect(m.get('f')?.type).toBe('float');
    expect(m.float('f')).toBe(1);
    expect(m.get('i')).toEqual({ tag: 'i', type: 'int', value: 2 });
  });

  it('normalises ints: safe bigints become numbers, big ones stay bigint', () => {
    expect(tuple('a', 'int', 5n).value).toBe(5);
    expect(tuple('a', 'int', 2n ** 62n).value).toBe(2n ** 62n);
  });

  it('refuses ints outside 64 bits and non-integral ints', () => {
    expect(() => tuple('a', 'int', 2n ** 63n)).toThrow(/does not fit in 64 bits/);
    expect(() => tuple('a', 'int', 1.5)).toThrow(/not an integer/);
    // a JS number beyond 2^53 may already have lost precision: refuse it rather than guess
    expect(() => msg({ a: 2 ** 60 })).toThrow('beyond 2^53: pass a bigint');
  });

  it('typed accessors name the tag, the wanted type and the found type', () => {
    const m = msg({ port: '80' });
    expect(() => m.int('port')).toThrow('tuple "port" is str "80", wanted int');
    expect(() => m.str('host')).toThrow('no tuple "host" (wanted str); the message has "port"');
    try {
      m.int('port');
    } catch (e) {
      expect(isMetanetError(e, 'ETUPLETYPE')).toBe(true);
    }
    expect(() => msg({ big: 2n ** 62n }).int('big')).toThrow(/bigint\(\)/);
  });

  it('fallbacks apply only when the tag is absent, never to a wrong type', () => {
    const m = msg({ a: 'x' });
    expect(m.int('b', 7)).toBe(7);
    expect(() => m.int('a', 7)).toThrow(/wanted int/);
  });

  it('floats accept ints (widening), not the reverse', () => {
    expect(msg({ a: 3 }).float('a')).toBe(3);
    expect(() => msg({ a: 3.5 }).int('a')).toThrow(/is float 3.5, wanted int/);
  });

  it('rejects unsendable values with the tag in the error', () => {
    expect(() => msg({ f: (() => 1) as unknown as string })).toThrow(/tuple "f": cannot send a function/);
    expect(() => msg({ d: new Date() as unknown as string })).toThrow(/tuple "d"/);
    expect(() => msg({ a: [[1]] as unknown as number[] })).toThrow(/nested arrays/);
    expect(() => tuple('', 'str', 'x')).toThrow(/non-empty string/);
    expect(() => tuple('a', 'str', 5)).toThrow('tuple "a": value 5 is not a valid str');
  });

  it('with/without/set produce new messages and leave the original alone', () => {
    const m = msg({ a: 1, b: 2 });
    expect(m.with({ c: 3 }).tags()).toEqual(['a', 'b', 'c']);
    expect(m.without('a').tags()).toEqual(['b']);
    expect(m.set({ a: 'x' }).str('a')).toBe('x');
    expect(m.tags()).toEqual(['a', 'b']);
  });

  it('matches subsets and compares deeply', () => {
    const m = msg({ a: 1, b: new Uint8Array([9]), l: { x: 'y' } });
    expect(m.matches(msg({ b: new Uint8Array([9]) }))).toBe(true);
    expect(m.matches(msg({ a: 2 }))).toBe(false);
    expect(m.matches(msg({ a: typed.float(1) }))).toBe(false); // types count
    expect(m.equals(msg({ a: 1, b: new Uint8Array([9]), l: { x: 'y' } }))).toBe(true);
  });

  it('prints tuples in the CLI syntax', () => {
    expect(msg({ s: 'a b', i: 1, f: typed.float(2), by: new Uint8Array([255]), n: null }).toString()).toBe(
      's="a b" i=1 f=float:2.0 by=hex:ff n=null',
    );
  });

  const arbTuple: fc.Arbitrary<Tuple> = fc.oneof(
    fc.record({ tag: fc.string({ minLength: 1 }), type: fc.constant('str' as const), value: fc.string() }),
    fc.record({
      tag: fc.string({ minLength: 1 }),
      type: fc.constant('int' as const),
      value: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
    }),
    fc.record({ tag: fc.string({ minLength: 1 }), type: fc.constant('float' as const), value: fc.double() }),
    fc.record({ tag: fc.string({ minLength: 1 }), type: fc.constant('bool' as const), value: fc.boolean() }),
  );

  it('round-trips any tuple list through Message.from (property)', () => {
    fc.assert(
      fc.property(fc.array(arbTuple), (ts) => {
        const m = Message.from(ts);
        expect(m.length).toBe(ts.length);
        ts.forEach((t, i) => {
          const got = m.tuples[i]!;
          expect(got.tag).toBe(t.tag);
          expect(got.type).toBe(t.type);
          if (t.type === 'int') expect(BigInt(got.value as number | bigint)).toBe(BigInt(t.value));
          else expect(Object.is(got.value, t.value) || got.value === t.value).toBe(true);
        });
        expect(Message.from(m.tuples).equals(m)).toBe(true);
      }),
    );
  });
});
