import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DhcpOptionError,
  KNOWN_OPTIONS,
  type OptionValue,
  optionInfo,
  optionToValue,
  valueToOption,
} from '../../../src/services/dhcp/options.js';

describe('option values', () => {
  it('encodes and decodes by name', () => {
    const cases: [string, OptionValue, string][] = [
      ['subnet-mask', '255.255.255.0', 'ffffff00'],
      ['router', ['10.77.0.1'], '0a4d0001'],
      ['dns-server', ['10.77.0.1', '9.9.9.9'], '0a4d000109090909'],
      ['hostname', 'lab', '6c6162'],
      ['lease-time', 3600, '00000e10'],
      ['time-offset', -3600, 'fffff1f0'],
      ['max-size', 1500, '05dc'],
      ['message-type', 5, '05'],
      ['ip-forwarding', false, '00'],
      ['param-list', [1, 3, 6, 114], '01030672'],
      ['client-id', { type: 1, id: Buffer.from('020000aabb01', 'hex') }, '01020000aabb01'],
      [
        'captive-portal',
        'https://portal.example/api',
        Buffer.from('https://portal.example/api').toString('hex'),
      ],
      [
        'classless-routes',
        [
          { prefix: '0.0.0.0/0', router: '10.77.0.1' },
          { prefix: '10.0.0.0/8', router: '10.77.0.2' },
          { prefix: '192.168.1.128/25', router: '10.77.0.3' },
        ],
        '000a4d0001' + '080a0a4d0002' + '19c0a801800a4d0003',
      ],
      [
        'relay-agent',
        [
          { code: 1, data: Buffer.from('eth0') },
          { code: 2, data: Buffer.from([1, 2]) },
        ],
        '01046574683002020102',
      ],
    ];
    for (const [name, value, hex] of cases) {
      const o = valueToOption(name, value);
      expect(o.code).toBe(optionInfo(name).code);
      expect(o.data.toString('hex'), name).toBe(hex);
      expect(optionToValue(o.code, o.data), name).toEqual(value);
    }
  });

  it('names the option on a bad length or value', () => {
    expect(() => optionToValue(1, Buffer.from([255, 255, 255]))).toThrow(
      'DHCP option 1 (subnet-mask): expected 4 bytes, got 3 byte(s)',
    );
    expect(() => optionToValue(6, Buffer.alloc(6))).toThrow(/6 \(dns-server\): expected a multiple of 4/);
    expect(() => optionToValue(121, Buffer.from([33, 0, 0, 0, 0, 0]))).toThrow(
      /121 \(classless-routes\).*> 32/,
    );
    expect(() => optionToValue(82, Buffer.from([1, 9, 0]))).toThrow(/82 \(relay-agent\): sub-option 1/);
    expect(() => valueToOption('lease-time', -1)).toThrow(/51 \(lease-time\): expected an integer/);
    expect(() => valueToOption('router', ['10.0.0'])).toThrow(/3 \(router\)/);
    expect(() => valueToOption('no-such', 1)).toThrow(/unknown option name "no-such"/);
    expect(() => valueToOption(0, Buffer.alloc(1))).toThrow(DhcpOptionError);
  });

  it('strips trailing NULs from strings (some clients terminate them)', () => {
    expect(optionToValue(12, Buffer.from('host\0'))).toBe('host');
    expect(() => optionToValue(12, Buffer.from([0, 0]))).toThrow(
      /12 \(hostname\): expected a string, got only NUL/,
    );
  });

  it('reads unknown codes as bytes', () => {
    expect(optionToValue(200, Buffer.from([1, 2]))).toEqual(Buffer.from([1, 2]));
    expect(valueToOption(200, Buffer.from([1])).code).toBe(200);
  });

  it('has unique codes and names', () => {
    expect(new Set(KNOWN_OPTIONS.map((o) => o.code)).size).toBe(KNOWN_OPTIONS.length);
    expect(new Set(KNOWN_OPTIONS.map((o) => o.name)).size).toBe(KNOWN_OPTIONS.length);
  });

  it('decoding arbitrary bytes for any code returns a value or throws DhcpOptionError', () => {
    const codes = fc.constantFrom(...KNOWN_OPTIONS.map((o) => o.code), 200);
    fc.assert(
      fc.property(codes, fc.uint8Array({ maxLength: 40 }), (code, bytes) => {
        let v: OptionValue;
        try {
          v = optionToValue(code, Buffer.from(bytes));
        } catch (e) {
          expect(e).toBeInstanceOf(DhcpOptionError);
          return;
        }
        // What decodes re-encodes to bytes that decode to the same value.
        const again = valueToOption(code, v);
        expect(optionToValue(code, again.data)).toEqual(v);
      }),
      { numRuns: 3000 },
    );
  });
});
