import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import { isMetanetError } from '../../src/core/errors.js';
import { Message, msg, type Tuple, typed } from '../../src/core/message.js';
import { attachClient } from '../../src/ipc/daemon.js';
import {
  DEFAULT_MAX_FRAME,
  decodePayload,
  encodeFrame,
  F,
  FrameReader,
  fromWire,
  toWire,
} from '../../src/ipc/wire.js';
import { cleanup, ROOT, startFixture, stopAll, tempDir } from '../support/daemons.js';

interface Vector {
  name: string;
  frame: unknown;
  hex: string;
  /** "only": bytes another encoder may write; decoders must read them, encoders need not write them. */
  decode?: 'only';
  /** Bytes a receiver must refuse with this code (decoding the frame and its tuples). */
  refused?: string;
}
const vectors = JSON.parse(readFileSync(`${ROOT}/docs/wire-vectors.json`, 'utf8')) as Vector[];
const exact = vectors.filter((v) => !v.decode && !v.refused);

/** The JSON form of the vectors: {"$int": "…"} is an int64, {"$bytes": "hex"} a bin. */
function fromJson(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(fromJson);
  if (v && typeof v === 'object' && '$int' in v) return BigInt((v as { $int: string }).$int);
  if (v && typeof v === 'object' && '$bytes' in v)
    return Buffer.from((v as { $bytes: string }).$bytes, 'hex');
  return v;
}
function norm(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(norm);
  if (typeof v === 'bigint' && v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER))
    return Number(v);
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  return v;
}

describe('wire test vectors (docs/wire-vectors.json)', () => {
  it.each(exact.map((v) => [v.name, v] as const))('%s', (_n, v) => {
    const frame = fromJson(v.frame) as unknown[];
    expect(encodeFrame(frame).toString('hex')).toBe(v.hex);
    const bytes = Buffer.from(v.hex, 'hex');
    expect(bytes.readUInt32BE(0)).toBe(bytes.length - 4);
    const decoded = decodePayload(bytes.subarray(4));
    expect(norm(decoded)).toEqual(norm(frame));
    if (decoded[0] === F.SEND) expect(norm(toWire(fromWire(decoded[3])))).toEqual(norm(decoded[3]));
  });
  it.each(vectors.filter((v) => v.decode === 'only').map((v) => [v.name, v] as const))(
    'decoded, whatever the width: %s',
    (_n, v) => {
      const bytes = Buffer.from(v.hex, 'hex');
      expect(bytes.readUInt32BE(0)).toBe(bytes.length - 4);
      expect(norm(decodePayload(bytes.subarray(4)))).toEqual(norm(fromJson(v.frame)));
    },
  );
  it.each(vectors.filter((v) => v.refused).map((v) => [v.name, v] as const))('refused: %s', (_n, v) => {
    const bytes = Buffer.from(v.hex, 'hex');
    expect(bytes.readUInt32BE(0)).toBe(bytes.length - 4);
    let err: unknown;
    try {
      fromWire(decodePayload(bytes.subarray(4))[3]);
    } catch (e) {
      err = e;
    }
    expect(isMetanetError(err, v.refused as 'EPROTO')).toBe(true);
  });
  it('covers every frame type', () => {
    const types = new Set(exact.map((v) => (v.frame as unknown[])[0]));
    for (const t of Object.values(F)) expect(types.has(t)).toBe(true);
  });
});

const tupleArb: fc.Arbitrary<Tuple> = fc.letrec<{ t: Tuple; m: Message }>((tie) => ({
  t: fc.oneof(
    { depthSize: 'small' },
    fc.record({
      tag: fc.string({ minLength: 1, maxLength: 8 }),
      type: fc.constant('str' as const),
      value: fc.string(),
    }),
    fc.record({
      tag: fc.string({ minLength: 1, maxLength: 8 }),
      type: fc.constant('int' as const),
      value: fc
        .bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })
        .map((b) => (Number.isSafeInteger(Number(b)) ? Number(b) : b)),
    }),
    fc.record({
      tag: fc.string({ minLength: 1, maxLength: 8 }),
      type: fc.constant('float' as const),
      value: fc.double({ noNaN: true }),
    }),
    fc.record({
      tag: fc.string({ minLength: 1, maxLength: 8 }),
      type: fc.constant('bool' as const),
      value: fc.boolean(),
    }),
    fc.record({
      tag: fc.string({ minLength: 1, maxLength: 8 }),
      type: fc.constant('bytes' as const),
      value: fc.uint8Array({ maxLength: 16 }),
    }),
    fc.record({
      tag: fc.string({ minLength: 1, maxLength: 8 }),
      type: fc.constant('null' as const),
      value: fc.constant(null),
    }),
    fc.record({
      tag: fc.string({ minLength: 1, maxLength: 8 }),
      type: fc.constant('list' as const),
      value: tie('m') as fc.Arbitrary<Message>,
    }),
  ) as fc.Arbitrary<Tuple>,
  m: fc.array(tie('t') as fc.Arbitrary<Tuple>, { maxLength: 4 }).map((ts) => new Message(ts)),
})).t;

describe('messages on the wire', () => {
  it('round-trip every tuple type exactly (property)', () => {
    fc.assert(
      fc.property(fc.array(tupleArb, { maxLength: 8 }), (ts) => {
        const m = new Message(ts);
        const back = fromWire(decodePayload(encodeFrame([F.SEND, 1, '/x', toWire(m)]).subarray(4))[3]);
        expect(back.equals(m)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
  it('64-bit integers travel as MessagePack ints, never floats', () => {
    const b = encodeFrame([F.SEND, 1, '/x', toWire(msg({ n: 2 ** 40 }))]);
    expect(b.includes(Buffer.from([0xd3]))).toBe(true);
    expect(b.includes(Buffer.from([0xcb]))).toBe(false);
  });
  it('a float stays a float even when integral', () => {
    const back = fromWire(
      decodePayload(encodeFrame([1, 1, '/x', toWire(msg({ f: typed.float(3) }))]).subarray(4))[3],
    );
    expect(back.get('f')?.type).toBe('float');
  });
  it('malformed tuples are EPROTO errors naming the tuple', () => {
    expect(() => fromWire([['a', 9, 1]])).toThrow(/tuple "a" has unknown type code 9/);
    expect(() => fromWire([['a', 1, 'x']])).toThrow(/tuple "a" is typed int but holds string/);
    expect(() => fromWire([['', 0, 'x']])).toThrow(/bad tag/);
    expect(() => fromWire('nope')).toThrow(/must be an array/);
    let deep: unknown = [];
    for (let i = 0; i < 40; i++) deep = [['l', 6, deep]];
    expect(() => fromWire(deep)).toThrow(/nested deeper/);
  });
});

describe('the frame encoder', () => {
  // msgpackr with the options of src/ipc/wire.ts: the reference the fast encoder must match
  const reference = new Packr({
    useRecords: false,
    int64AsType: 'bigint',
    mapsAsObjects: true,
    moreTypes: false,
  });
  const values = (big: number): fc.Arbitrary<unknown> => {
    const str = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.string({ unit: 'binary', maxLength: 80 }), // any code point, surrogate pairs included
      fc.string({
        unit: fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)),
        maxLength: 5,
      }),
      fc.integer({ min: 0, max: big }).map((n) => 'é'.repeat(n % 3 === 0 ? n : n % 300)),
      fc.integer({ min: 0, max: big }).map((n) => 'x'.repeat(n)),
    );
    return fc.letrec((tie) => ({
      v: fc.oneof(
        { depthSize: 'small' },
        str,
        fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 }),
        fc.constantFrom(
          0,
          -0,
          31,
          32,
          127,
          128,
          255,
          256,
          65535,
          65536,
          -32,
          -33,
          -128,
          -129,
          -32768,
          -32769,
        ),
        fc.double(),
        fc.boolean(),
        fc.constant(null),
        fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
        fc.uint8Array({ maxLength: 300 }),
        fc.integer({ min: 0, max: big }).map((n) => new Uint8Array(n)),
        fc.array(tie('v'), { maxLength: 20 }),
      ),
    })).v;
  };
  const value = values(70_000);
  it('writes the bytes msgpackr writes, for every frame it takes (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 12 }), fc.array(value, { maxLength: 8 }), (type, rest) => {
        const frame = [type, ...rest];
        // frame-level integers beyond 32 bits go as int64 (encodeFrame's own rule)
        const wide = frame.map((v) =>
          typeof v === 'number' && Number.isInteger(v) && (v > 0xffffffff || v < -0x80000000) ? BigInt(v) : v,
        );
        let expected: string;
        try {
          expected = Buffer.from(reference.pack(wide)).toString('hex');
        } catch {
          expect(() => encodeFrame(frame)).toThrow(); // beyond 64 bits: refused the same way
          return;
        }
        const ours = encodeFrame(frame);
        expect(ours.readUInt32BE(0)).toBe(ours.length - 4);
        expect(Buffer.from(ours.subarray(4)).toString('hex')).toBe(expected);
      }),
      { numRuns: 1000 },
    );
  });
  it('the frame decoder reads what msgpackr reads, and leaves it every error (property)', () => {
    // what decodePayload would return with msgpackr alone
    const viaMsgpackr = (b: Buffer): unknown => {
      const v = reference.unpack(b) as unknown[];
      if (!Array.isArray(v) || v.length === 0 || typeof v[0] !== 'number') throw new Error('not a frame');
      return v.map((x) =>
        typeof x === 'bigint' && x >= -0x1fffffffffffffn && x <= 0x1fffffffffffffn ? Number(x) : x,
      );
    };
    const outcome = (f: () => unknown): unknown => {
      try {
        return { value: f() };
      } catch {
        return 'refused';
      }
    };
    const anyValue = fc.oneof(values(300), fc.object(), fc.string({ unit: 'grapheme', maxLength: 20 }));
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 12 }),
        fc.array(anyValue, { maxLength: 6 }),
        fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 3 }),
        fc.nat(),
        (type, rest, flips, cut) => {
          let b = Buffer.from(reference.pack([type, ...rest]));
          if (flips.length > 0) {
            b = Buffer.from(b);
            for (const [at, byte] of flips) b[at % b.length] = byte;
            if (cut % 3 === 0) b = b.subarray(0, cut % (b.length + 1));
          }
          if (b.length === 0) return;
          // in a stream, as the reader sees it: other bytes around the frame
          const framed = Buffer.concat([Buffer.from([0, 0, 0, 0]), b, Buffer.from([0xc1, 0x90])]);
          framed.writeUInt32BE(b.length, 0);
          const r = new FrameReader(16 * 1024 * 1024);
          const ours = (): unknown => {
            const got = r.push(framed);
            if (got.length === 0) throw r.error;
            return got[0];
          };
          const got = outcome(ours);
          // a count of values the frame cannot hold is refused before msgpackr would build it
          if (got === 'refused' && / announced, \d+ bytes left$/.test(String(r.error?.message))) return;
          expect(got).toEqual(outcome(() => viaMsgpackr(b)));
        },
      ),
      { numRuns: 2000 },
    );
  });
  it('read with messages, a frame is the same, its tuples the Message fromWire makes of them (property)', () => {
    // SEND and EVENT hold their tuples at 3, DELIVER at 4
    const slot = (type: number): number => (type === F.DELIVER ? 4 : 3);
    const read = (b: Buffer, messages: boolean): unknown => {
      const framed = Buffer.concat([Buffer.alloc(4), b]);
      framed.writeUInt32BE(b.length, 0);
      const r = new FrameReader(16 * 1024 * 1024, messages);
      const got = r.push(framed);
      if (got.length === 0) throw r.error;
      const f = [...got[0]!];
      const at = slot(f[0] as number);
      if ([F.SEND, F.DELIVER, F.EVENT].includes(f[0] as 1) && at < f.length) {
        if (f[at] instanceof Message) direct++;
        f[at] = outcome(() => fromWire(f[at]));
      }
      return f;
    };
    const outcome = (f: () => unknown): unknown => {
      try {
        return { value: f() };
      } catch (e) {
        // msgpackr's own words may differ from one call to the next (its key cache): not compared
        const text = String(e);
        return { refused: text.includes('not valid MessagePack') ? 'not MessagePack' : text };
      }
    };
    let direct = 0;
    fc.assert(
      fc.property(
        fc.constantFrom(F.SEND, F.DELIVER, F.EVENT),
        fc.array(tupleArb, { maxLength: 6 }),
        fc.array(fc.oneof(values(300), fc.string({ maxLength: 12 })), { maxLength: 5 }),
        fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 2 }),
        fc.nat(),
        (type, ts, rest, flips, cut) => {
          const at = slot(type);
          const frame: unknown[] = [type, ...rest];
          while (frame.length < at) frame.push(0);
          frame.splice(at, 0, toWire(new Message(ts)));
          let b = Buffer.from(reference.pack(frame));
          if (flips.length > 0 && cut % 2 === 0) {
            for (const [i, byte] of flips) b[i % b.length] = byte;
            if (cut % 3 === 0) b = b.subarray(0, cut % (b.length + 1));
          }
          if (b.length === 0) return;
          expect(outcome(() => read(b, true))).toEqual(outcome(() => read(b, false)));
        },
      ),
      { numRuns: 2000 },
    );
    // the direct reading was taken, not only the way round through arrays
    expect(direct).toBeGreaterThan(300);
  });
  it('read with messages: lists nest 32 deep, not 33; a bad tuple is named as fromWire names it', () => {
    const nest = (d: number): Message =>
      d === 0 ? msg({ x: 1 }) : new Message([{ tag: 'l', type: 'list', value: nest(d - 1) }]);
    const frame = (m: Message): Buffer => encodeFrame([F.SEND, 0, '/a', m]);
    const r = new FrameReader(DEFAULT_MAX_FRAME, true);
    const [ok] = r.push(frame(nest(32)));
    expect(ok![3]).toBeInstanceOf(Message);
    // compared as arrays: equality on 32 nested iterables takes vitest exponential time
    expect(toWire(fromWire(ok![3]))).toEqual(toWire(nest(32)));
    const [deep] = r.push(frame(nest(33)));
    expect(Array.isArray(deep![3])).toBe(true);
    expect(() => fromWire(deep![3], '/a')).toThrow(/lists nested deeper than 32/);
    const [bad] = r.push(encodeFrame([F.SEND, 0, '/a', [['n', 1, 1.5]]]));
    expect(() => fromWire(bad![3], '/a')).toThrow('/a: tuple "n" is typed int but holds number');
    expect(r.error).toBeUndefined();
  });
  it('a message in a frame is written as its tuples, byte for byte (property)', () => {
    fc.assert(
      fc.property(fc.array(tupleArb, { maxLength: 8 }), fc.boolean(), (ts, big) => {
        // big: past what fits the encoder's buffer, so msgpackr writes it
        const m = new Message(big ? [...ts, { tag: 'pad', type: 'str', value: 'x'.repeat(70_000) }] : ts);
        const direct = Buffer.from(encodeFrame([F.SEND, 7, '/x', m])).toString('hex');
        expect(direct).toBe(Buffer.from(encodeFrame([F.SEND, 7, '/x', toWire(m)])).toString('hex'));
        expect(direct).toBe(
          Buffer.from(reference.pack([F.SEND, 7, '/x', toWire(m)]))
            .toString('hex')
            .replace(/^/, direct.slice(0, 8)),
        );
      }),
      { numRuns: 300 },
    );
  });
  it('strings read again are the same strings, however many share a slot of the reader', () => {
    const names = Array.from({ length: 10_000 }, (_, i) => `/k/${(i * 7919) % 10_000}`);
    for (let round = 0; round < 2; round++) {
      const r = new FrameReader();
      const got = r.push(Buffer.concat(names.map((n) => encodeFrame([F.SEND, 0, n, []]))));
      expect(got.map((f) => f[2])).toEqual(names);
    }
  });
  it('frames written one after another stay intact (slices of one buffer)', () => {
    const frames = Array.from({ length: 5000 }, (_, i) => [F.SEND, i, '/a', [['n', 1, i]]]);
    const bytes = frames.map((f) => encodeFrame(f));
    expect(bytes.map((b) => decodePayload(b.subarray(4)))).toEqual(frames);
  });
});

describe('frame reader', () => {
  it('splits a stream at any chunk boundary', () => {
    const frames = [
      encodeFrame([F.OK, 1, 2]),
      encodeFrame([F.SEND, 0, '/a', toWire(msg({ s: 'x'.repeat(300) }))]),
    ];
    const all = Buffer.concat(frames);
    for (let cut = 1; cut < all.length; cut += 7) {
      const r = new FrameReader();
      const got = [...r.push(all.subarray(0, cut)), ...r.push(all.subarray(cut))];
      expect(got).toHaveLength(2);
      expect(r.pending).toBe(0);
    }
  });
  it('from borrowed memory (a reused read buffer): the same frames, byte arrays copied, nothing lost between reads (property)', () => {
    const frameArb = fc.oneof(
      fc.array(tupleArb, { maxLength: 5 }).map((ts) => encodeFrame([F.SEND, 1, '/a', new Message(ts)])),
      fc
        .uint8Array({ maxLength: 300 })
        .map((b) => encodeFrame([F.SEND, 0, '/b', [['b', 4, Buffer.from(b)]]])),
      // not read by the own reader (a map, a non-ASCII string): msgpackr's, which must copy too
      fc.uint8Array({ maxLength: 40 }).map((b) => encodeFrame([F.OK, 3, { k: Buffer.from(b) }, 'é'])),
    );
    fc.assert(
      fc.property(
        fc.array(frameArb, { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        (frames, cuts) => {
          const all = Buffer.concat(frames);
          const plain = new FrameReader(DEFAULT_MAX_FRAME, true).push(all);
          const r = new FrameReader(DEFAULT_MAX_FRAME, true);
          const reused = Buffer.alloc(all.length);
          const got: unknown[] = [];
          const points = [...new Set(cuts.map((c) => c % (all.length + 1)))].sort((a, b) => a - b);
          let at = 0;
          for (const end of [...points, all.length]) {
            if (end <= at) continue;
            all.copy(reused, 0, at, end);
            r.feed(reused.subarray(0, end - at), true);
            for (let f = r.next(); f !== undefined; f = r.next()) got.push(f);
            r.keep();
            reused.fill(0xee); // the next read overwrites the buffer
            at = end;
          }
          expect(r.error).toBeUndefined();
          expect(r.pending).toBe(0);
          const norm = (fs: unknown[]): unknown =>
            fs.map((f) => (f as unknown[]).map((v) => (v instanceof Message ? toWire(v) : v)));
          expect(norm(got)).toEqual(norm(plain));
        },
      ),
      { numRuns: 300 },
    );
  });
  it('bytes fed while the head is used up and a few wait in the tail come after those', () => {
    const a = encodeFrame([F.OK, 1, 2]);
    const b = encodeFrame([F.SEND, 0, '/b', [['n', 1, 7]]]);
    const r = new FrameReader();
    r.feed(a);
    r.feed(b.subarray(0, 2)); // less than a length prefix, behind the unread frame
    expect(r.next()).toEqual([F.OK, 1, 2]);
    expect(r.next()).toBeUndefined();
    r.feed(b.subarray(2));
    expect(r.next()).toEqual([F.SEND, 0, '/b', [['n', 1, 7]]]);
    expect(r.pending).toBe(0);
  });
  it('refuses an oversized frame before buffering it', () => {
    const r = new FrameReader(1024);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(1025);
    expect(r.push(head)).toEqual([]);
    expect(r.error?.message).toMatch(/1025 bytes exceeds the limit of 1024/);
  });
  it('a frame holds at most one MessagePack value per 16 bytes of the limit, counted before decoding', () => {
    const r = new FrameReader(64 * 1024); // 4096 values
    const ok = encodeFrame([F.SEND, 1, '/a', Array.from({ length: 1000 }, () => ['t', 1, 1])]);
    expect(r.push(ok)).toHaveLength(1); // 4 + 1000 × 4 values
    const many = encodeFrame([F.SEND, 1, '/a', Array.from({ length: 1100 }, () => ['t', 1, 1])]);
    expect(r.push(many)).toEqual([]);
    expect(r.error?.message).toBe('frame holds more than 4096 MessagePack values');
  });
  it('a frame arriving a byte at a time is joined once, and frames come out one by one', () => {
    const r = new FrameReader();
    const bytes = Buffer.concat([encodeFrame([F.OK, 1, 'x'.repeat(5000)]), encodeFrame([F.OK, 2, null])]);
    const got: unknown[][] = [];
    for (let i = 0; i < bytes.length; i++) {
      r.feed(bytes.subarray(i, i + 1));
      for (let f = r.next(); f !== undefined; f = r.next()) got.push(f as unknown[]);
    }
    expect(got.map((f) => f[1])).toEqual([1, 2]);
    expect(r.pending).toBe(0);
  });
  it('frame-level ints: beyond 32 bits written as int64; read back as numbers whatever their width', () => {
    const b = encodeFrame([F.OK, 2 ** 40, null]);
    expect(b.subarray(4).toString('hex')).toBe('9307d30000010000000000c0');
    expect(decodePayload(b.subarray(4))).toEqual([F.OK, 2 ** 40, null]);
  });
  it('fuzz: arbitrary bytes either decode or throw EPROTO, never anything else', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 6 }),
        fc.boolean(),
        (chunks, prefixed) => {
          const r = new FrameReader(4096);
          try {
            for (const c of chunks) {
              let buf = Buffer.from(c);
              if (prefixed) {
                const h = Buffer.alloc(4);
                h.writeUInt32BE(c.length);
                buf = Buffer.concat([h, buf]);
              }
              for (const f of r.push(buf)) if (f[0] === F.SEND) fromWire(f[3]);
            }
          } catch (e) {
            expect(isMetanetError(e, 'EPROTO')).toBe(true);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('a live daemon under bad input', () => {
  let dir: string;
  beforeAll(async () => {
    dir = tempDir();
    await startFixture('bad', dir);
  });
  afterAll(async () => {
    await stopAll();
    cleanup(dir);
  });

  function raw(): Promise<{ sock: Socket; frames: unknown[][]; closed: Promise<void> }> {
    return new Promise((resolve) => {
      const sock = connect(`${dir}/bad.sock`);
      const frames: unknown[][] = [];
      const r = new FrameReader();
      sock.on('data', (d) => frames.push(...(r.push(d) as unknown[][])));
      const closed = new Promise<void>((c) => sock.on('close', () => c()));
      sock.on('connect', () => resolve({ sock, frames, closed }));
    });
  }

  const cases: [string, Buffer, RegExp][] = [
    ['garbage', Buffer.from('GET / HTTP/1.1\r\n\r\n'), /exceeds the limit/],
    [
      'not MessagePack',
      Buffer.concat([Buffer.from([0, 0, 0, 2]), Buffer.from([0xc1, 0xc1])]),
      /not valid MessagePack|must be an array/,
    ],
    ['no HELLO first', encodeFrame([F.SEND, 1, '/echo', []]), /expected HELLO first/],
    ['unsupported version', encodeFrame([F.HELLO, 99, 'x', 1]), /unsupported protocol version 99/],
    [
      'unknown frame type',
      Buffer.concat([encodeFrame([F.HELLO, 1, 'x', 1]), encodeFrame([42, 0])]),
      /unknown frame type 42/,
    ],
  ];
  it.each(cases)(
    '%s: an ERROR frame, that connection closed, everyone else served',
    async (_n, bytes, re) => {
      const good = new Bus({ name: `good-${Math.random().toString(36).slice(2)}` });
      attachClient(good, { dir });
      expect((await good.request('bad:/echo', { n: 1 })).int('n')).toBe(1);
      const c = await raw();
      c.sock.write(bytes);
      await c.closed;
      const err = c.frames.find((f) => f[0] === F.ERROR);
      expect(err?.[2]).toBe('EPROTO');
      expect(String(err?.[3])).toMatch(re);
      expect((await good.request('bad:/echo', { n: 2 })).int('n')).toBe(2);
      await good.close(100);
    },
  );
  it('a bad tuple in a request is answered with ERROR and the connection stays open', async () => {
    const c = await raw();
    c.sock.write(
      Buffer.concat([
        encodeFrame([F.HELLO, 1, 'raw', 1]),
        encodeFrame([F.SEND, 5, '/echo', [['a', 1, 'x']]]),
      ]),
    );
    const { until } = await import('../support/wait.js');
    await until(() => c.frames.some((f) => f[0] === F.ERROR), 'an ERROR frame');
    const err = c.frames.find((f) => f[0] === F.ERROR)!;
    expect(err.slice(0, 3)).toEqual([F.ERROR, 5, 'EPROTO']);
    c.sock.write(encodeFrame([F.SEND, 6, '/count', []]));
    await until(() => c.frames.some((f) => f[0] === F.RESULT && f[1] === 6), 'a RESULT for the next request');
    c.sock.destroy();
  });
});
