import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DhcpDecodeError,
  DhcpEncodeError,
  type DhcpPacket,
  decodePacket,
  encodePacket,
} from '../../../src/services/dhcp/packet.js';

const ip = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((a) => a.join('.'));
const latin1 = (max: number) =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constant('') },
    {
      weight: 1,
      arbitrary: fc.string({
        unit: fc.integer({ min: 1, max: 255 }).map((c) => String.fromCharCode(c)),
        maxLength: max,
      }),
    },
  );
const optionData = fc.oneof(
  { weight: 6, arbitrary: fc.uint8Array({ maxLength: 40 }) },
  { weight: 2, arbitrary: fc.uint8Array({ minLength: 200, maxLength: 300 }) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 500, maxLength: 900 }) },
);
const options = fc.uniqueArray(
  fc.record({
    code: fc.integer({ min: 1, max: 254 }).filter((c) => c !== 52),
    data: optionData.map((d) => Buffer.from(d)),
  }),
  { selector: (o) => o.code, maxLength: 12 },
);

const arbPacket: fc.Arbitrary<DhcpPacket> = fc
  .record({
    op: fc.constantFrom(1 as const, 2 as const),
    htype: fc.nat(255),
    hlen: fc.nat(16),
    hops: fc.nat(255),
    xid: fc.nat(0xffffffff),
    secs: fc.nat(0xffff),
    flags: fc.nat(0xffff),
    ciaddr: ip,
    yiaddr: ip,
    siaddr: ip,
    giaddr: ip,
    chaddrBytes: fc.uint8Array({ minLength: 16, maxLength: 16 }),
    sname: latin1(64),
    file: latin1(128),
    options,
  })
  .map(({ chaddrBytes, ...p }) => ({ ...p, chaddr: Buffer.from(chaddrBytes.subarray(0, p.hlen)) }));

const maxSize = fc.constantFrom(undefined, 576, 1000, 1500, 65535);

describe('DHCP codec properties', () => {
  it('decode(encode(p)) equals p, including long options and sname/file overload', () => {
    let overloaded = 0;
    let long = 0;
    let tooBig = 0;
    fc.assert(
      fc.property(arbPacket, maxSize, (p, max) => {
        let buf: Buffer;
        try {
          buf = encodePacket(p, { maxSize: max });
        } catch (e) {
          // Only options that cannot fit may be refused. Tight packing loses at most 2 bytes at
          // the end of each of the 3 areas and adds at most one 2-byte header per area boundary.
          expect(e).toBeInstanceOf(DhcpEncodeError);
          expect((e as DhcpEncodeError).field).toBe('options');
          const need = p.options.reduce(
            (n, o) => n + o.data.length + 2 * Math.max(1, Math.ceil(o.data.length / 255)),
            0,
          );
          const room = (max ?? 576) - 28 - 244 + (p.file === '' ? 127 : 0) + (p.sname === '' ? 63 : 0);
          expect(need).toBeGreaterThan(room - 10);
          tooBig++;
          return;
        }
        expect(buf.length).toBeGreaterThanOrEqual(300);
        expect(buf.length).toBeLessThanOrEqual(Math.max(576, max ?? 576) - 28);
        if (buf[240] === 52) overloaded++;
        if (p.options.some((o) => o.data.length > 255)) long++;
        expect(decodePacket(buf)).toEqual(p);
      }),
      { numRuns: 2000 },
    );
    expect(overloaded).toBeGreaterThan(20);
    expect(long).toBeGreaterThan(20);
    expect(tooBig).toBeLessThan(2000);
  });

  it('packs options tightly near the 548-byte limit: every layout that fits round-trips', () => {
    const near = fc.uniqueArray(
      fc.record({
        code: fc.integer({ min: 1, max: 254 }).filter((c) => c !== 52),
        data: fc.uint8Array({ maxLength: 140 }).map((d) => Buffer.from(d)),
      }),
      { selector: (o) => o.code, minLength: 2, maxLength: 9 },
    );
    let fitted = 0;
    fc.assert(
      fc.property(arbPacket, near, (p0, opts) => {
        const p = { ...p0, sname: '', file: '', options: opts };
        const need = opts.reduce((n, o) => n + o.data.length + 2, 0);
        let buf: Buffer;
        try {
          buf = encodePacket(p);
        } catch (e) {
          expect(e).toBeInstanceOf(DhcpEncodeError);
          expect(need).toBeGreaterThan(548 - 244 + 127 + 63 - 10);
          return;
        }
        fitted++;
        expect(buf.length).toBeLessThanOrEqual(548);
        expect(decodePacket(buf)).toEqual(p);
      }),
      { numRuns: 1500 },
    );
    expect(fitted).toBeGreaterThan(300);
  });

  it('arbitrary bytes decode to a packet or throw DhcpDecodeError, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1500 }), (bytes) => {
        try {
          decodePacket(bytes);
        } catch (e) {
          expect(e).toBeInstanceOf(DhcpDecodeError);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('valid packets with random bytes changed, cut or appended decode or throw DhcpDecodeError', () => {
    const mutated = fc
      .tuple(
        arbPacket,
        fc.array(fc.tuple(fc.nat(2000), fc.nat(255)), { maxLength: 8 }),
        fc.option(fc.nat(2000)),
        fc.uint8Array({ maxLength: 40 }),
      )
      .map(([p, edits, cut, tail]) => {
        let buf: Buffer;
        try {
          buf = encodePacket(p, { maxSize: 1500 });
        } catch {
          buf = encodePacket({ ...p, options: [] });
        }
        // Keep the cookie intact most of the time so the option parser is what gets exercised.
        for (const [at, v] of edits)
          if (at % buf.length < 236 || at % buf.length >= 240) buf[at % buf.length] = v;
        const cutBuf = cut === null ? buf : buf.subarray(0, cut % (buf.length + 1));
        return Buffer.concat([cutBuf, tail]);
      });
    fc.assert(
      fc.property(mutated, (bytes) => {
        try {
          const p = decodePacket(bytes);
          expect(p.chaddr.length).toBe(p.hlen);
          for (const o of p.options) expect(o.code).not.toBe(52);
        } catch (e) {
          if (!(e instanceof DhcpDecodeError)) throw e;
          expect(e.message).toContain(e.field);
          expect(e.message).toContain(String(e.offset));
        }
      }),
      { numRuns: 3000 },
    );
  });
});
