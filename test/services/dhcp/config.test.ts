import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isMetanetError } from '../../../src/core/errors.js';
import { loadConfig, parseConfig } from '../../../src/services/dhcp/config.js';
import { checkConfigOption } from '../../../src/services/dhcp/optionset.js';
import { rawConfig, tmp } from './helpers.js';

const base = rawConfig('/tmp/x.leases');
const errorOf = (raw: unknown): string => {
  try {
    parseConfig(raw, checkConfigOption);
  } catch (e) {
    expect(isMetanetError(e, 'ECONFIG')).toBe(true);
    return (e as Error).message;
  }
  throw new Error('expected a config error');
};
const withSubnet = (s: Record<string, unknown>): unknown => ({
  ...base,
  subnets: [{ ...base.subnets[0], ...s }],
});

describe('DHCP config', () => {
  it('parses the example with defaults (T1 = lease/2, T2 = 7/8 lease, quarantine, offer hold)', () => {
    const c = parseConfig(base, checkConfigOption);
    const s = c.subnets[0]!;
    expect(s.localAddress).toBe('10.77.0.1');
    expect(c.subnets[1]!.localAddress).toBeUndefined();
    expect([s.leaseTime, s.renewalTime, s.rebindingTime]).toEqual([600, 300, 525]);
    expect(s.router).toEqual(['10.77.0.1']);
    expect(c.hosts[0]!.mac).toBe('02:00:00:00:00:aa');
    expect([c.declineTime, c.offerTime, c.lookupTimeout]).toEqual([600, 30, 2000]);
  });

  it('names the field path of each error', () => {
    expect(errorOf(withSubnet({ pool: { start: '10.77.0.x', end: '10.77.0.9' } }))).toContain(
      'config.subnets[0].pool.start: not an IPv4 address',
    );
    expect(errorOf(withSubnet({ pool: { start: '10.77.0.10', end: '10.78.0.9' } }))).toContain(
      'config.subnets[0].pool.end: 10.78.0.9 is outside the subnet 10.77.0.0/24',
    );
    expect(errorOf(withSubnet({ pool: [{ start: '10.77.0.20', end: '10.77.0.10' }] }))).toContain(
      'config.subnets[0].pool[0]: start 10.77.0.20 is after end 10.77.0.10',
    );
    expect(errorOf(withSubnet({ pool: { start: '10.77.0.0', end: '10.77.0.10' } }))).toContain(
      'network or broadcast',
    );
    expect(errorOf(withSubnet({ pool: { start: '10.77.0.1', end: '10.77.0.10' } }))).toContain(
      "the pool contains the server's own address 10.77.0.1",
    );
    expect(errorOf(withSubnet({ subnet: '10.77.0.1/24' }))).toContain(
      'config.subnets[0].subnet: subnet 10.77.0.1/24 has host bits set',
    );
    expect(errorOf(withSubnet({ captivePortal: 'not a uri' }))).toContain(
      'config.subnets[0].captivePortal: not a URI',
    );
    expect(errorOf(withSubnet({ renewalTime: 500, rebindingTime: 400 }))).toContain(
      'config.subnets[0].renewalTime',
    );
    expect(errorOf(withSubnet({ router: '192.168.0.1' }))).toContain(
      'config.subnets[0].router: router 192.168.0.1 is outside',
    );
    expect(
      errorOf({ ...base, subnets: [base.subnets[0], { ...base.subnets[1], subnet: '10.77.0.0/16' }] }),
    ).toContain('config.subnets[1].subnet: overlaps config.subnets[0].subnet');
    expect(errorOf({ ...base, listen: [] })).toContain('config.listen:');
    expect(errorOf({ ...base, lease_file: 'x' })).toContain('config: Unrecognized key: "lease_file"');
    expect(errorOf({ ...base, hosts: [{ mac: 'zz', ip: '10.77.0.5' }] })).toContain(
      'config.hosts[0].mac: not a MAC address',
    );
    expect(errorOf({ ...base, hosts: [{ mac: '02:00:00:00:00:01', ip: '10.99.0.5' }] })).toContain(
      'config.hosts[0].ip: 10.99.0.5 is in no configured subnet',
    );
    expect(
      errorOf({
        ...base,
        hosts: [
          { mac: '02:00:00:00:00:01', ip: '10.77.0.5' },
          { mac: '02-00-00-00-00-01', ip: '10.77.0.5' },
        ],
      }),
    ).toMatch(/hosts\[1\]\.mac: 02:00:00:00:00:01 is already config\.hosts\[0\]\.mac[\s\S]*hosts\[1\]\.ip/);
  });

  it('leaseFile is required; a relative one is resolved from the working directory, once, when parsed', () => {
    const { leaseFile: _, ...noLeaseFile } = base;
    expect(errorOf(noLeaseFile)).toContain('config.leaseFile: required: the path of the lease journal');
    expect(errorOf({ ...base, leaseFile: '' })).toContain('config.leaseFile: empty');
    expect(errorOf({ ...base, leaseFile: 5 })).toContain('config.leaseFile: not a string');
    expect(parseConfig({ ...base, leaseFile: 'state/dhcpd.leases' }).leaseFile).toBe(
      join(process.cwd(), 'state', 'dhcpd.leases'),
    );
    expect(parseConfig({ ...base, leaseFile: '/var/lib/x/../dhcpd.leases' }).leaseFile).toBe(
      '/var/lib/dhcpd.leases',
    );
  });

  it('newClients: 50/s and 200 at once per link by default; perSecond 0 turns it off; bad values named', () => {
    expect(parseConfig(base).newClients).toEqual({ perSecond: 50, burst: 200 });
    expect(parseConfig({ ...base, newClients: { perSecond: 0 } }).newClients).toEqual({
      perSecond: 0,
      burst: 200,
    });
    expect(parseConfig({ ...base, newClients: { perSecond: 2.5, burst: 10 } }).newClients).toEqual({
      perSecond: 2.5,
      burst: 10,
    });
    expect(errorOf({ ...base, newClients: { perSecond: -1 } })).toContain('config.newClients.perSecond:');
    expect(errorOf({ ...base, newClients: { burst: 0 } })).toContain('config.newClients.burst:');
    expect(errorOf({ ...base, newClients: { rate: 5 } })).toContain(
      'config.newClients: Unrecognized key: "rate"',
    );
  });

  it('checks options by code or name against the codec', () => {
    expect(
      parseConfig(
        { ...base, options: { 'ntp-server': ['10.77.0.1'], '252': 'http://wpad/', '224': 'hex:0102' } },
        checkConfigOption,
      ).options,
    ).toBeDefined();
    expect(errorOf({ ...base, options: { 'ntp-server': 'nope' } })).toContain('config.options.ntp-server:');
    expect(errorOf({ ...base, options: { 'no-such-option': 1 } })).toContain(
      'config.options.no-such-option:',
    );
    expect(errorOf(withSubnet({ options: { '26': 70000 } }))).toContain('config.subnets[0].options.26:');
    expect(errorOf({ ...base, options: { '300': 1 } })).toContain('config.options.300');
  });

  it('loadConfig names the file; bad JSON and a missing file are ECONFIG', () => {
    const t = tmp();
    try {
      const f = join(t.dir, 'd.json');
      writeFileSync(f, '{ nope');
      expect(() => loadConfig(f)).toThrow(/is not JSON/);
      expect(() => loadConfig(join(t.dir, 'missing.json'))).toThrow(/cannot read DHCP config/);
      writeFileSync(f, JSON.stringify({ ...base, leaseFile: 5 }));
      expect(() => loadConfig(f)).toThrow(
        new RegExp(`${f}: invalid DHCP configuration:\\n  config.leaseFile:`),
      );
    } finally {
      t.cleanup();
    }
  });

  it('fuzz: any JSON value is either a config or an ECONFIG error, never another exception', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.jsonValue(),
          fc.record({ listen: fc.jsonValue(), subnets: fc.jsonValue(), leaseFile: fc.jsonValue() }),
        ),
        (v) => {
          try {
            parseConfig(v, checkConfigOption);
          } catch (e) {
            if (!isMetanetError(e, 'ECONFIG')) throw e;
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
