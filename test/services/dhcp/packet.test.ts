import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { getOption, messageType, optionToValue } from '../../../src/services/dhcp/options.js';
import {
  DhcpDecodeError,
  DhcpEncodeError,
  type DhcpPacket,
  decodePacket,
  encodePacket,
  MessageType,
  macOf,
} from '../../../src/services/dhcp/packet.js';

const corpusDir = join(import.meta.dirname, 'corpus');

/** A corpus file: `# comment` lines, one `# expect: error FIELD` or `# expect: ok CODE=HEX …`, then hex bytes. */
function readCorpus(name: string): { expect: string; bytes: Buffer } {
  const text = readFileSync(join(corpusDir, name), 'utf8');
  const expect = /^# expect: (.+)$/m.exec(text)?.[1];
  if (!expect) throw new Error(`${name}: no "# expect:" line`);
  const hex = text
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .join('')
    .replace(/\s+/g, '');
  return { expect, bytes: Buffer.from(hex, 'hex') };
}

function discover(options: DhcpPacket['options']): DhcpPacket {
  return {
    op: 1,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: 0x12345678,
    secs: 0,
    flags: 0x8000,
    ciaddr: '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: '0.0.0.0',
    chaddr: Buffer.from([0x02, 0, 0, 0xaa, 0xbb, 0x01]),
    sname: '',
    file: '',
    options,
  };
}

describe('malformed and captured packet corpus', () => {
  const files = readdirSync(corpusDir).filter((f) => f.endsWith('.hex'));
  it('has files', () => expect(files.length).toBeGreaterThan(10));
  for (const f of files) {
    it(f, () => {
      const { expect: want, bytes } = readCorpus(f);
      const [kind, ...rest] = want.split(' ');
      if (kind === 'error') {
        const field = rest.join(' ');
        let err: unknown;
        try {
          decodePacket(bytes);
        } catch (e) {
          err = e;
        }
        expect(err, `${f} should fail`).toBeInstanceOf(DhcpDecodeError);
        expect((err as DhcpDecodeError).field).toBe(field);
        expect((err as DhcpDecodeError).message).toContain(`offset ${(err as DhcpDecodeError).offset}`);
      } else {
        const p = decodePacket(bytes);
        for (const pair of rest) {
          const [code, hex] = pair.split('=');
          expect(getOption(p, Number(code))?.toString('hex'), `${f} option ${code}`).toBe(hex);
        }
        // Whatever decodes re-encodes to the same packet.
        expect(decodePacket(encodePacket(p))).toEqual(p);
      }
    });
  }
});

describe('decodePacket', () => {
  it('keeps option 53 after a single pad byte', () => {
    const p = decodePacket(readCorpus('pad-before-53.hex').bytes);
    expect(messageType(p)).toBe(MessageType.DISCOVER);
    expect(p.options.map((o) => o.code)).toEqual([53, 61]);
  });

  it('reads a real udhcpc DISCOVER', () => {
    const p = decodePacket(readCorpus('udhcpc-discover.hex').bytes);
    expect(p.op).toBe(1);
    expect(messageType(p)).toBe(MessageType.DISCOVER);
    expect(macOf(p)).toBe('02:00:00:aa:bb:01');
    expect(optionToValue(12, getOption(p, 12)!)).toBe('labclient');
    expect(optionToValue(61, getOption(p, 61)!)).toEqual({
      type: 1,
      id: Buffer.from('020000aabb01', 'hex'),
    });
    expect(optionToValue(55, getOption(p, 55)!)).toEqual(expect.arrayContaining([1, 3, 6]));
    expect(String(optionToValue(60, getOption(p, 60)!))).toMatch(/^udhcp/);
  });

  it('reads a real dhclient DISCOVER', () => {
    const p = decodePacket(readCorpus('dhclient-discover.hex').bytes);
    expect(messageType(p)).toBe(MessageType.DISCOVER);
    expect(macOf(p)).toBe('02:00:00:aa:bb:01');
    expect(optionToValue(12, getOption(p, 12)!)).toBe('labclient');
  });

  it('joins options from the options field, then file, then sname (RFC 3396 §7)', () => {
    const p = decodePacket(readCorpus('overload-both.hex').bytes);
    expect(p.options.map((o) => o.code)).toEqual([53, 50, 12]);
    expect(p.sname).toBe('');
    expect(p.file).toBe('');
  });

  it('names field and offset in errors', () => {
    expect(() => decodePacket(readCorpus('option-past-end.hex').bytes)).toThrow(
      /bad option 12 at offset 243: length 50 runs past the end of the options field/,
    );
  });

  it('accepts a view into a larger buffer and returns copies', () => {
    const raw = encodePacket(discover([{ code: 53, data: Buffer.from([1]) }]));
    const big = new Uint8Array(raw.length + 10);
    big.set(raw, 5);
    const p = decodePacket(big.subarray(5, 5 + raw.length));
    big.fill(0);
    expect(macOf(p)).toBe('02:00:00:aa:bb:01');
    expect(messageType(p)).toBe(1);
  });
});

describe('encodePacket', () => {
  it('pads to the BOOTP minimum of 300 bytes and ends the options with END', () => {
    const b = encodePacket(discover([{ code: 53, data: Buffer.from([1]) }]));
    expect(b.length).toBe(300);
    expect([...b.subarray(240, 244)]).toEqual([53, 1, 1, 255]);
    expect(b.readUInt32BE(236)).toBe(0x63825363);
  });

  it('splits an option longer than 255 bytes into several instances', () => {
    const data = Buffer.alloc(300, 7);
    const b = encodePacket(discover([{ code: 43, data }]), { maxSize: 1500 });
    expect([b[240], b[241]]).toEqual([43, 255]);
    expect([b[240 + 257], b[240 + 258]]).toEqual([43, 45]);
    expect(b[240 + 257 + 47]).toBe(255);
    expect(getOption(decodePacket(b), 43)).toEqual(data);
  });

  it('overloads file then sname when the options do not fit in 576 bytes', () => {
    const p = discover([
      { code: 53, data: Buffer.from([2]) },
      { code: 43, data: Buffer.alloc(250, 1) },
      { code: 60, data: Buffer.alloc(100, 2) },
      { code: 77, data: Buffer.alloc(40, 3) },
    ]);
    const b = encodePacket(p);
    expect(b.length).toBe(548);
    expect([...b.subarray(240, 243)]).toEqual([52, 1, 3]);
    expect(decodePacket(b)).toEqual(p);
  });

  it('uses only the empty one of sname/file for overload', () => {
    const p = { ...discover([{ code: 43, data: Buffer.alloc(350, 1) }]), sname: 'server' };
    const b = encodePacket(p);
    expect(b[242]).toBe(1);
    expect(decodePacket(b)).toEqual(p);
  });

  it('throws a clear error when the options do not fit even with overload', () => {
    const p = { ...discover([{ code: 43, data: Buffer.alloc(600, 1) }]), file: 'pxelinux.0' };
    expect(() => encodePacket(p)).toThrow(DhcpEncodeError);
    expect(() => encodePacket(p)).toThrow(/do not fit in a 548-byte message even with sname\/file overload/);
    expect(encodePacket(p, { maxSize: 1500 }).length).toBeGreaterThan(600);
  });

  it('rejects bad fields with errors naming them', () => {
    const ok = discover([]);
    expect(() => encodePacket({ ...ok, yiaddr: '10.0.0.256' })).toThrow(/yiaddr/);
    expect(() => encodePacket({ ...ok, xid: -1 })).toThrow(/xid/);
    expect(() => encodePacket({ ...ok, hlen: 5 })).toThrow(/chaddr: 6 bytes but hlen is 5/);
    expect(() => encodePacket({ ...ok, sname: 'x'.repeat(65) })).toThrow(/sname/);
    expect(() => encodePacket({ ...ok, options: [{ code: 52, data: Buffer.from([1]) }] })).toThrow(
      /option 52/,
    );
    expect(() => encodePacket({ ...ok, options: [{ code: 255, data: Buffer.alloc(0) }] })).toThrow(
      /option 255/,
    );
    const twice = [
      { code: 3, data: Buffer.alloc(4) },
      { code: 3, data: Buffer.alloc(4) },
    ];
    expect(() => encodePacket({ ...ok, options: twice })).toThrow(/option 3: given twice/);
  });

  it('macOf formats chaddr lowercase', () => {
    expect(macOf({ ...discover([]), chaddr: Buffer.from('AABBCCDDEEFF', 'hex') })).toBe('aa:bb:cc:dd:ee:ff');
  });
});
