import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/apps/app.js';
import { defaultPool } from '../../../src/apps/dhcpd/app.js';
import { loadGateway, systemResolvers } from '../../../src/apps/gateway/config.js';
import type { PortalConfig } from '../../../src/apps/portal/config.js';
import type { DhcpConfig } from '../../../src/services/dhcp/config.js';
import { REPO_ROOT } from '../../support/lab.js';

const EXAMPLE = JSON.parse(readFileSync(join(REPO_ROOT, 'examples/gateway.json'), 'utf8')) as Record<
  string,
  unknown
>;
const dir = mkdtempSync(join(tmpdir(), 'mn-gwcfg-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The example with changes merged at the top level (and upstream DNS fixed, whatever this machine has). */
function variant(change: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...structuredClone(EXAMPLE), upstreamDns: ['10.99.0.1'], ...change };
}

async function problems(raw: unknown): Promise<string[]> {
  try {
    await loadGateway(raw, 'gw.json');
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map((p) => `${p.path}: ${p.message}`);
    throw e;
  }
  return [];
}

describe('gateway config: facts declared once, each app derived from them', () => {
  it('the shipped example derives dhcpd, dns and portal; the mail proxy is off', async () => {
    const gw = await loadGateway(variant(), 'gw.json');
    expect(gw.apps.map((a) => a.name)).toEqual(['dhcpd', 'dns', 'portal']);
    expect(gw.facts.served.map((n) => n.name)).toEqual(['lan', 'guest']);
    expect(gw.facts.captive.map((n) => n.name)).toEqual(['guest']);

    const dhcpd = gw.apps[0]!.config as DhcpConfig;
    // one listen entry per served interface: never the WAN
    expect(dhcpd.listen).toEqual([
      { interface: 'br-lan', address: '10.10.0.1' },
      { interface: 'br-guest', address: '10.20.0.1' },
    ]);
    const guest = dhcpd.subnets.find((s) => s.name === '10.20.0.0/24')!;
    expect(guest.router).toEqual(['10.20.0.1']);
    expect(guest.dns).toEqual(['10.20.0.1']); // the forwarder runs: the router resolves
    expect(guest.leaseTime).toBe(3600);
    expect(guest.captivePortal).toBe('http://10.20.0.1:8080/api');
    expect(guest.ranges).toHaveLength(1); // 10.20.0.2 … 10.20.0.254
    const lan = dhcpd.subnets.find((s) => s.name === '10.10.0.0/24')!;
    expect(lan.captivePortal).toBeUndefined();
    expect(dhcpd.leaseFile).toBe('/var/lib/metanet/dhcpd.leases');

    const portal = gw.apps[2]!.config as PortalConfig;
    expect(portal).toMatchObject({
      address: '10.20.0.1',
      port: 8080,
      lan: ['br-guest'],
      dns: [],
      dhcpd: 'dhcpd',
      stateFile: '/var/lib/metanet/portal.sessions.json',
    });
  });

  it('without the forwarder, guests get the upstream resolvers and the firewall lets them through', async () => {
    const c = variant();
    (c.apps as Record<string, unknown>).dns = { enabled: false };
    const gw = await loadGateway(c, 'gw.json');
    const dhcpd = gw.apps.find((a) => a.name === 'dhcpd')!.config as DhcpConfig;
    expect(dhcpd.subnets[1]!.dns).toEqual(['10.99.0.1']);
    expect((gw.apps.find((a) => a.name === 'portal')!.config as PortalConfig).dns).toEqual(['10.99.0.1']);
  });

  it('names every bad field by its path, and unknown keys are errors', async () => {
    const c = variant({ colour: 'blue' });
    const p1 = await problems(c);
    expect(p1.join('\n')).toMatch(/colour/);

    const bad = variant({
      networks: {
        wan: { role: 'wan', device: 'eth0', captive: true },
        lan: { role: 'lan', device: 'br-lan' },
        guest: { role: 'guest', device: 'br-guest', address: '10.20.0.1/33' },
        guest2: { role: 'guest', device: 'br-lan', address: '10.30.0.1/24' },
      },
      apps: { dhcpd: { leaseTime: 5, shiny: true }, dnsd: {}, portal: { port: 0 } },
    });
    const p = await problems(bad);
    const text = p.join('\n');
    expect(text).toContain('networks.guest.address: the prefix length must be 8..30');
    // zod stops at the first failing level; the rest are checked once the shape is right
    const fixed = variant({
      networks: {
        wan: { role: 'wan', device: 'eth0', captive: true },
        lan: { role: 'lan', device: 'br-lan' },
        guest: { role: 'guest', device: 'br-guest', address: '10.20.0.1/24' },
        guest2: { role: 'guest', device: 'br-lan', address: '10.20.0.129/25' },
      },
      apps: { dhcpd: { leaseTime: 5, shiny: true }, dnsd: {}, portal: { port: 0 } },
    });
    const all = (await problems(fixed)).join('\n');
    expect(all).toContain('networks.wan.captive: the WAN cannot be captive');
    expect(all).toContain("networks.lan.address: a lan network needs the router's address on it");
    expect(all).toContain('networks.guest2.device: br-lan is already the device of networks.lan');
    expect(all).toContain('networks.guest2.address: 10.20.0.128/25 overlaps networks.guest (10.20.0.0/24)');
    expect(all).toMatch(/apps\.dhcpd\.leaseTime: .*60/);
    expect(all).toMatch(/apps\.dhcpd: .*shiny/);
    expect(all).toContain(
      'apps.dnsd: no such app (known: dhcpd, dns, dhcp-ldap, portal, radius, mailproxy, extrusion, dashboard)',
    );
    expect(all).toMatch(/apps\.portal\.port: /);
  });

  it("an app's own cross-field checks are reported under its section", async () => {
    const c = variant();
    (c.apps as Record<string, Record<string, unknown>>).dhcpd = {
      hosts: [{ mac: '02:00:00:00:00:01', ip: '10.99.5.5' }],
      networks: { guest: { pool: { start: '10.20.0.200', end: '10.20.0.100' } }, office: {} },
    };
    const all = (await problems(c)).join('\n');
    expect(all).toContain('apps.dhcpd.networks.office: no such lan or guest network in networks');
    const c2 = variant();
    (c2.apps as Record<string, Record<string, unknown>>).dhcpd = {
      hosts: [{ mac: '02:00:00:00:00:01', ip: '10.99.5.5' }],
      networks: { guest: { pool: { start: '10.20.0.200', end: '10.20.0.100' } } },
    };
    const all2 = (await problems(c2)).join('\n');
    expect(all2).toContain('apps.dhcpd.hosts[0].ip: 10.99.5.5 is in no configured subnet');
    expect(all2).toContain('apps.dhcpd.subnets[1].pool: start 10.20.0.200 is after end 10.20.0.100');
  });

  it("dhcpd's storm limit is set from its section and checked by dhcpd's own rules", async () => {
    const c = variant();
    (c.apps as Record<string, Record<string, unknown>>).dhcpd = { newClients: { perSecond: 0 } };
    const gw = await loadGateway(c, 'gw.json');
    expect((gw.apps[0]!.config as DhcpConfig).newClients.perSecond).toBe(0);
    (c.apps as Record<string, Record<string, unknown>>).dhcpd = { newClients: { perSecond: -1 } };
    expect((await problems(c)).join('\n')).toMatch(/apps\.dhcpd\.newClients\.perSecond/);
  });

  it('a portal needs a captive network', async () => {
    const c = variant({ networks: { lan: { role: 'lan', device: 'br-lan', address: '10.10.0.1/24' } } });
    expect((await problems(c)).join('\n')).toContain('apps.portal: the portal needs a captive network');
  });

  it('the default pool is the subnet minus network, broadcast and router', () => {
    const n = (address: string, prefix: number) => ({
      name: 'x',
      role: 'guest' as const,
      device: 'd',
      address,
      prefix,
      subnet: '',
      captive: true,
    });
    expect(defaultPool(n('10.20.0.1', 24))).toEqual([{ start: '10.20.0.2', end: '10.20.0.254' }]);
    expect(defaultPool(n('10.20.0.254', 24))).toEqual([{ start: '10.20.0.1', end: '10.20.0.253' }]);
    expect(defaultPool(n('10.20.0.100', 24))).toEqual([
      { start: '10.20.0.1', end: '10.20.0.99' },
      { start: '10.20.0.101', end: '10.20.0.254' },
    ]);
    expect(defaultPool(n('10.20.0.1', 22))).toEqual([{ start: '10.20.0.2', end: '10.20.3.254' }]);
  });

  it('upstream DNS defaults to the nameserver lines of resolv.conf', () => {
    const f = join(dir, 'resolv.conf');
    writeFileSync(f, '# x\nnameserver 10.1.1.1\nnameserver ::1\nsearch lan\nnameserver 10.1.1.2\n');
    expect(systemResolvers(f)).toEqual(['10.1.1.1', '10.1.1.2']);
    expect(systemResolvers(join(dir, 'missing'))).toEqual([]);
  });

  it('YAML is accepted too', async () => {
    const { parseConfigText } = await import('../../../src/apps/configfile.js');
    const y = parseConfigText(
      'networks:\n  guest: { role: guest, device: br-guest, address: 10.20.0.1/24 }\nupstreamDns: [10.99.0.1]\napps:\n  dhcpd: {}\n',
      'gw.yaml',
    );
    const gw = await loadGateway(y, 'gw.yaml');
    expect(gw.apps.map((a) => a.name)).toEqual(['dhcpd']);
    expect(() => parseConfigText('a: [', 'x.yml')).toThrow(/x\.yml is not valid YAML/);
  });
});

describe('metanet up --check', () => {
  const CLI = join(REPO_ROOT, 'src/cli/main.ts');
  const check = (file: string) =>
    spawnSync(process.execPath, ['--import', 'tsx', CLI, 'up', '--check', '--config', file], {
      encoding: 'utf8',
      timeout: 20_000,
    });

  it('exits 0 for the example and names its apps', () => {
    const f = join(dir, 'ok.json');
    writeFileSync(f, JSON.stringify(variant()));
    const r = check(f);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('ok: dhcpd, dns, portal');
  });

  it('exits 1 naming every bad field, and starts nothing', () => {
    const f = join(dir, 'bad.json');
    const c = variant();
    (c.apps as Record<string, unknown>).portal = { port: 'eighty', sessionSeconds: -1 };
    writeFileSync(f, JSON.stringify(c));
    const r = check(f);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${f}: invalid configuration:`);
    expect(r.stderr).toMatch(/apps\.portal\.port: /);
    expect(r.stderr).toMatch(/apps\.portal\.sessionSeconds: /);
  });

  it('a file that is not JSON is one clear line', () => {
    const f = join(dir, 'broken.json');
    writeFileSync(f, '{ "networks": ');
    const r = check(f);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/broken\.json is not JSON/);
  });
});
