import net from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { arpaName } from '../../../src/services/dns/arpa.js';

describe('arpaName', () => {
  it('names IPv4 and IPv6 PTR queries', () => {
    expect(arpaName('10.9.9.10')).toBe('10.9.9.10.in-addr.arpa');
    expect(arpaName('fd00::11')).toBe(`1.1.${'0.'.repeat(28)}d.f.ip6.arpa`);
    expect(arpaName('::1')).toBe(`1.${'0.'.repeat(31)}ip6.arpa`);
    expect(arpaName('::ffff:10.1.2.3')).toBe(arpaName('::ffff:a01:203'));
    expect(() => arpaName('nope')).toThrow(/not an IP address/);
  });

  it('gives 32 nibbles for any IPv6 address, in any notation', () => {
    fc.assert(
      fc.property(fc.ipV6(), (a) => {
        const name = arpaName(a);
        const nibbles = name.replace(/\.ip6\.arpa$/, '').split('.');
        expect(nibbles).toHaveLength(32);
        // back to an address: the same one
        const hex = nibbles.reverse().join('');
        const back = hex.match(/.{4}/g)!.join(':');
        expect(net.isIPv6(back)).toBe(true);
        const list = new net.BlockList();
        list.addAddress(a, 'ipv6');
        expect(list.check(back, 'ipv6')).toBe(true);
      }),
    );
  });
});
