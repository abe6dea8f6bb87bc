import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/apps/portal/config.js';
import { gardenTimeout, inGarden } from '../../../src/apps/portal/garden.js';
import { Guestbook } from '../../../src/apps/portal/guestbook.js';
import { defaultLimits } from '../../../src/apps/portal/lifecycle.js';
import { loadMacFile, MacLists } from '../../../src/apps/portal/maclists.js';
import { Sessions } from '../../../src/apps/portal/sessions.js';
import { Bus } from '../../../src/core/bus.js';
import { isMetanetError } from '../../../src/core/errors.js';
import { STOP } from '../../../src/core/listener.js';
import { silentLogger } from '../../../src/core/log.js';
import type { Message } from '../../../src/core/message.js';

/**
 * The MAC lists and the garden's name matching without nft: the firewall is a set of listeners
 * that record what they are asked; the guestbook is the real one. The lab tests are
 * operator.lab.test.ts (MAC lists, CLI) and garden.lab.test.ts.
 */
const dir = mkdtempSync(join(tmpdir(), 'portal-macs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const A = '02:00:00:00:00:0a';
const B = '02:00:00:00:00:0b';
const C = '02:00:00:00:00:0c';

function setup(extra: Record<string, unknown> = {}) {
  const config = parseConfig({
    address: '10.20.0.1',
    lan: 'br-guest',
    macFile: join(dir, 'macs.json'),
    ...extra,
  });
  const bus = new Bus({ name: 'macs-unit', logger: silentLogger });
  const fw = { trusted: new Set<string>(), blocked: new Set<string>(), calls: [] as string[] };
  bus.listen('/system/firewall/mac/add', async (m, ctx) => {
    fw.calls.push(`add ${m.str('list')} ${m.str('mac')}`);
    fw[m.str('list') as 'trusted' | 'blocked'].add(m.str('mac'));
    await ctx.reply({ list: m.str('list'), mac: m.str('mac'), added: true });
    return STOP;
  });
  bus.listen('/system/firewall/mac/remove', async (m, ctx) => {
    fw.calls.push(`remove ${m.str('list')} ${m.str('mac')}`);
    fw[m.str('list') as 'trusted' | 'blocked'].delete(m.str('mac'));
    await ctx.reply({ list: m.str('list'), mac: m.str('mac'), removed: true });
    return STOP;
  });
  bus.listen('/system/firewall/list', async (_m, ctx) => {
    await ctx.reply({ table: 'inet metanet', trusted: [...fw.trusted], blocked: [...fw.blocked] });
    return STOP;
  });
  for (const v of ['allow', 'deny'])
    bus.listen(`/system/firewall/${v}`, async (m, ctx) => {
      await ctx.reply({ ip: m.str('ip'), mac: m.str('mac'), removed: true });
      return STOP;
    });
  const events: string[] = [];
  for (const e of ['blocked', 'unblocked', 'trusted', 'untrusted', 'logged-out'])
    bus.listen(`/portal/${e}`, (m: Message) => {
      events.push(`${e} ${m.str('mac')}${e === 'logged-out' ? ` ${m.str('reason')}` : ''}`);
    });
  const book = new Guestbook(bus, config, new Sessions(undefined, Date.now, defaultLimits(config)));
  return { config, bus, fw, events, book, macs: new MacLists(bus, config, book) };
}

describe('MAC lists', () => {
  it('block ends its sessions; trust unblocks; block untrusts; each change announced and kept in the file', async () => {
    const { bus, fw, events, book, macs } = setup();
    await macs.start();
    await book.login('10.20.0.23', A, 600);
    await book.login('10.20.0.24', A, 600); // the same device on two addresses
    const b = await macs.block(A.toUpperCase());
    expect(b).toEqual({ mac: A, changed: true, ended: 2 });
    expect(book.sessions.list()).toEqual([]);
    expect(fw.blocked.has(A)).toBe(true);
    expect((await macs.block(A)).changed).toBe(false);
    const t = await macs.trust(A);
    expect(t.changed).toBe(true);
    expect(macs.isBlocked(A)).toBe(false);
    expect(macs.isTrusted(A)).toBe(true);
    await macs.block(A);
    expect(macs.isTrusted(A)).toBe(false);
    await macs.trust(B);
    await new Promise((r) => setTimeout(r, 10));
    expect(events).toEqual([
      `logged-out ${A} blocked`,
      `logged-out ${A} blocked`,
      `blocked ${A}`,
      `unblocked ${A}`,
      `trusted ${A}`,
      `untrusted ${A}`,
      `blocked ${A}`,
      `trusted ${B}`,
    ]);
    const file = JSON.parse(readFileSync(join(dir, 'macs.json'), 'utf8'));
    expect(file.trusted.map((e: { mac: string }) => e.mac)).toEqual([B]);
    expect(file.blocked.map((e: { mac: string }) => e.mac)).toEqual([A]);
    await expect(macs.block('nope')).rejects.toThrow(/not a MAC/);
    await bus.close();
  });

  it('a restart reads the file back and makes the firewall agree; the config’s MACs are fixed', async () => {
    const { fw, macs, bus } = setup({ trustedMacs: [C], blockedMacs: ['02-00-00-00-00-0D'] });
    fw.trusted.add('02:00:00:00:00:99'); // stale in the firewall's state
    await macs.start();
    expect([...fw.trusted].sort()).toEqual([B, C]);
    expect([...fw.blocked].sort()).toEqual([A, '02:00:00:00:00:0d']);
    await expect(macs.untrust(C)).rejects.toSatisfy((e) => isMetanetError(e, 'EDENIED'));
    await expect(macs.unblock('02:00:00:00:00:0d')).rejects.toThrow(/blockedMacs/);
    expect((await macs.untrust(B)).changed).toBe(true);
    // the config's entries are not written to the file
    const file = JSON.parse(readFileSync(join(dir, 'macs.json'), 'utf8'));
    expect(file).toMatchObject({ version: 1, trusted: [] });
    expect(file.blocked.map((e: { mac: string }) => e.mac)).toEqual([A]);
    await bus.close();
  });

  it('the file: missing is empty, broken is ECONFIG naming the entry', () => {
    expect(loadMacFile(join(dir, 'none.json'))).toEqual([]);
    const f = join(dir, 'bad.json');
    writeFileSync(f, '{"version":1,"blocked":[{"mac":"zz"}]}');
    expect(() => loadMacFile(f)).toThrow(/blocked\[0\]\.mac/);
    writeFileSync(f, '[');
    expect(() => loadMacFile(f)).toThrow(/not JSON/);
  });
});

describe('garden by name: matching and timeouts', () => {
  it('a domain and its subdomains, nothing else', () => {
    const d = ['example.org', 'b.test'];
    expect(inGarden('example.org', d)).toBe(true);
    expect(inGarden('WWW.Example.org.', d)).toBe(true);
    expect(inGarden('a.b.test', d)).toBe(true);
    expect(inGarden('badexample.org', d)).toBe(false);
    expect(inGarden('example.org.evil.test', d)).toBe(false);
    expect(inGarden('', d)).toBe(false);
  });

  it('the TTL clamped; config checks', () => {
    expect([
      gardenTimeout(0, 300, 86400),
      gardenTimeout(3600, 300, 86400),
      gardenTimeout(1e9, 300, 86400),
    ]).toEqual([300, 3600, 86400]);
    const bad = (c: Record<string, unknown>): string => {
      try {
        parseConfig({ address: '10.20.0.1', lan: 'br-guest', ...c });
        return '';
      } catch (e) {
        return (e as Error).message;
      }
    };
    expect(bad({ gardenDomains: ['Example.org'] })).toMatch(/gardenDomains\[0\]: a lower-case domain name/);
    expect(bad({ gardenDomains: ['http://x.org/'] })).toMatch(/gardenDomains\[0\]/);
    expect(bad({ gardenTtlMin: 600, gardenTtlMax: 60 })).toMatch(
      /gardenTtlMin: must not be above gardenTtlMax/,
    );
    expect(bad({ trustedMacs: ['nope'] })).toMatch(/trustedMacs\[0\]: a MAC/);
    expect(bad({ maxConnectionsPerClient: -1 })).toMatch(/maxConnectionsPerClient/);
    expect(bad({ gardenDomains: ['example.org'], forwarder: 'dns' })).toBe('');
  });
});
