import { once } from 'node:events';
import net from 'node:net';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Bus, type Message, silentLogger } from '../../../src/core/index.js';
import { installLdapService, type LdapService } from '../../../src/services/ldap/index.js';
import { have } from '../../support/env.js';
import { hostEntry, type Slapd, startSlapd } from '../../support/slapd.js';

let bus: Bus;
let service: LdapService;
beforeEach(() => {
  bus = new Bus({ name: 'test', logger: silentLogger });
  service = installLdapService(bus);
});
afterEach(async () => {
  await service.close();
  await bus.close();
});

function tcpHandles(): number {
  return process.getActiveResourcesInfo().filter((h) => h.startsWith('TCP')).length;
}

describe.skipIf(!have(['slapd', 'slapadd']))('ldap service against slapd', () => {
  let slapd: Slapd;
  beforeAll(async () => {
    slapd = await startSlapd({
      entries: [
        hostEntry('pc1', '00:11:22:33:44:55', '10.77.0.50'),
        hostEntry('pc2', '00:11:22:33:44:66', '10.77.0.51'),
        `${hostEntry('multi', '00:11:22:33:44:77', '10.77.0.52')}\nipHostNumber: 10.77.0.53`,
      ],
    });
  });
  afterAll(async () => {
    await slapd?.close();
  });

  async function admin(name = '/l/admin', timeout = 2000): Promise<string> {
    const connected = bus.wait(`${name}/connected`, { timeout: 3000 });
    const r = await bus.request('/system/ldap/new', {
      name,
      url: slapd.url,
      bindDN: slapd.adminDN,
      password: slapd.password,
      timeout,
    });
    expect(r.toObject()).toEqual({ name });
    expect((await connected).toObject()).toEqual({ url: slapd.url, bindDN: slapd.adminDN });
    return name;
  }

  const hosts = (): string => `ou=hosts,${slapd.baseDN}`;

  it('finds hosts by macAddress, as {count, entry...}', async () => {
    const ldap = await admin();
    const r = await bus.request(`${ldap}/search`, {
      base: slapd.baseDN,
      filter: '(&(objectClass=ieee802Device)(macAddress=00:11:22:33:44:55))',
    });
    expect(r.int('count')).toBe(1);
    const e = r.list('entry');
    expect(e.str('dn')).toBe(`cn=pc1,${hosts()}`);
    expect(e.str('ipHostNumber')).toBe('10.77.0.50');
    expect(e.all('objectClass').map((t) => t.value)).toEqual(['device', 'ieee802Device', 'ipHost']);

    // multi-valued attributes repeat; attributes limits what comes back
    const multi = await bus.request(`${ldap}/search`, {
      base: hosts(),
      filter: '(macAddress=00:11:22:33:44:77)',
      attributes: ['ipHostNumber'],
    });
    expect(multi.list('entry').toObject()).toEqual({
      dn: `cn=multi,${hosts()}`,
      ipHostNumber: ['10.77.0.52', '10.77.0.53'],
    });

    // several entries; scope one; nothing found
    const all = await bus.request(`${ldap}/search`, {
      base: hosts(),
      filter: '(objectClass=ipHost)',
      scope: 'one',
    });
    expect(all.int('count')).toBe(3);
    expect(all.all('entry')).toHaveLength(3);
    const none = await bus.request(`${ldap}/search`, {
      base: hosts(),
      filter: '(macAddress=de:ad:be:ef:00:00)',
    });
    expect(none.toObject()).toEqual({ count: 0 });
    const base = await bus.request(`${ldap}/search`, {
      base: hosts(),
      filter: '(objectClass=*)',
      scope: 'base',
    });
    expect(base.list('entry').str('dn')).toBe(hosts());
  });

  it('searches anonymously when no bindDN is given', async () => {
    const connected = bus.wait('/l/anon/connected', { timeout: 3000 });
    await bus.request('/system/ldap/new', { name: '/l/anon', url: slapd.url });
    expect((await connected).has('bindDN')).toBe(false);
    const r = await bus.request('/l/anon/search', {
      base: slapd.baseDN,
      filter: '(ipHostNumber=10.77.0.51)',
    });
    expect(r.list('entry').str('cn')).toBe('pc2');
  });

  it('answers bad filters and bad requests with clear errors', async () => {
    const ldap = await admin('/l/bad');
    const errors: Message[] = [];
    bus.append(`${ldap}/error`, (m) => {
      errors.push(m);
    });
    const f = await bus.request(`${ldap}/search`, { base: slapd.baseDN, filter: '(macAddress=00:11' });
    expect(f.str('code')).toBe('EINVAL');
    expect(f.str('error')).toMatch(/^\/l\/bad\/search: bad filter \(macAddress=00:11: /);
    const s = await bus.request(`${ldap}/search`, { base: slapd.baseDN, filter: '(cn=x)', scope: 'tree' });
    expect(s.str('error')).toMatch(/scope must be base, one or sub, got "tree"/);
    const nob = await bus.request(`${ldap}/search`, {
      base: 'ou=nowhere,dc=example,dc=org',
      filter: '(cn=x)',
    });
    expect(nob.toObject()).toMatchObject({ code: 'ENOSUCHOBJECT', result: 32 });
    expect((await bus.request(`${ldap}/search`, { filter: '(cn=x)' })).str('error')).toMatch(
      /missing tuple "base"/,
    );
    // a search without reply-to has nowhere to answer: it says so on <name>/error
    await bus.send(`${ldap}/search`, { base: slapd.baseDN, filter: '(cn=x)' });
    await bus.settled();
    expect(errors.map((e) => e.str('code'))).toEqual([
      'EINVAL',
      'EINVAL',
      'ENOSUCHOBJECT',
      'EBADTUPLE',
      'EDESTADDRREQ',
    ]);
    // the object still serves
    expect((await bus.request(`${ldap}/search`, { base: hosts(), filter: '(cn=pc1)' })).int('count')).toBe(1);

    // bad creation requests
    const cases: [Record<string, string | number>, RegExp][] = [
      [{ name: '/l/x', url: 'http://x/' }, /url must be ldap:\/\/host:port\//],
      [{ name: '/l/x', url: slapd.url, timeout: 0 }, /timeout must be 1-600000 ms/],
      [{ name: '/l/x', url: slapd.url, password: 'p' }, /a password needs a bindDN/],
      [{ name: '/l/bad', url: slapd.url }, /already exists/],
    ];
    for (const [init, re] of cases) {
      const r = await bus.request('/system/ldap/new', init);
      expect(r.str('error')).toMatch(re);
      expect(r.str('code')).toMatch(/^E/);
    }
  });

  it('answers random filters and bases with {count} or {error, code}; slapd keeps serving', async () => {
    const ldap = await admin('/l/fuzz');
    const filter = fc.oneof(
      fc.string({ maxLength: 30 }),
      fc.constantFrom(
        '(',
        ')',
        '(cn=',
        '(&)',
        '(|(cn=a)',
        '(cn=*)',
        '(!(cn=x))',
        '(cn=\\zz)',
        '(macAddress~=0)',
      ),
      fc
        .tuple(fc.constantFrom('cn', 'macAddress', 'x-y', ''), fc.string({ maxLength: 10 }))
        .map(([a, v]) => `(${a}=${v})`),
    );
    const base = fc.oneof(fc.constant(hosts()), fc.string({ maxLength: 20 }));
    await fc.assert(
      fc.asyncProperty(filter, base, async (f, b) => {
        const r = await bus.request(`${ldap}/search`, { base: b, filter: f });
        if (r.has('error')) expect(r.str('code')).toMatch(/^E[A-Z]+$/);
        else expect(r.int('count')).toBe(r.all('entry').length);
      }),
      { numRuns: 150 },
    );
    expect((await bus.request(`${ldap}/search`, { base: hosts(), filter: '(cn=pc1)' })).int('count')).toBe(1);
  });

  it('reports a wrong password on <name>/error and on every search', async () => {
    const err = bus.wait('/l/wrong/error', { timeout: 3000 });
    await bus.request('/system/ldap/new', {
      name: '/l/wrong',
      url: slapd.url,
      bindDN: slapd.adminDN,
      password: 'not-the-password',
    });
    expect((await err).toObject()).toMatchObject({ code: 'EINVALIDCREDENTIALS', result: 49 });
    const r = await bus.request('/l/wrong/search', { base: slapd.baseDN, filter: '(cn=pc1)' });
    expect(r.str('code')).toBe('EINVALIDCREDENTIALS');
    expect(r.str('error')).toMatch(/InvalidCredentials \(49\)/);
    expect(r.str('error')).not.toMatch(/not-the-password/);
  });

  it('gives an error tuple while slapd is down and works again once it is back', async () => {
    const ldap = await admin('/l/flaky', 1000);
    const q = { base: hosts(), filter: '(macAddress=00:11:22:33:44:66)' };
    expect((await bus.request(`${ldap}/search`, q)).int('count')).toBe(1);
    await slapd.stop();
    const t0 = Date.now();
    const down = await bus.request(`${ldap}/search`, q);
    expect(down.str('code')).toMatch(/^(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT)$/);
    expect(Date.now() - t0).toBeLessThan(1500);
    expect((await bus.request(`${ldap}/search`, q)).str('code')).toBe('ECONNREFUSED');
    await slapd.restart();
    const again = bus.wait(`${ldap}/connected`, { timeout: 3000 });
    const up = await bus.request(`${ldap}/search`, q);
    expect(up.list('entry').str('cn')).toBe('pc2');
    await again; // a new connection, bound again
  });

  it('close() unbinds every client and leaves no connection behind', async () => {
    const before = tcpHandles();
    await admin('/l/c1');
    await admin('/l/c2');
    expect(tcpHandles()).toBe(before + 2);
    const closed = bus.wait('/l/c1/closed', { timeout: 3000 });
    await bus.send('/l/c1/close', {});
    await closed;
    await service.close();
    expect(tcpHandles()).toBe(before);
    expect(bus.mailboxes().filter((b) => b.listeners.length > 0)).toEqual([]);
  });
});

describe('ldap timeouts', () => {
  it('gives ETIMEDOUT when the server accepts but never answers', async () => {
    const mute = net.createServer((s) => s.on('error', () => {}));
    const conns = new Set<net.Socket>();
    mute.on('connection', (s) => conns.add(s));
    mute.listen(0, '127.0.0.1');
    await once(mute, 'listening');
    const url = `ldap://127.0.0.1:${(mute.address() as net.AddressInfo).port}/`;
    try {
      const err = bus.wait('/l/mute/error', { timeout: 3000 });
      await bus.request('/system/ldap/new', {
        name: '/l/mute',
        url,
        bindDN: 'cn=x',
        password: 'y',
        timeout: 150,
      });
      expect((await err).toObject()).toMatchObject({
        code: 'ETIMEDOUT',
        error: `/l/mute: bind to ${url}: no answer within 150 ms`,
      });
      const t0 = Date.now();
      const r = await bus.request('/l/mute/search', { base: 'dc=x', filter: '(cn=x)' });
      expect(r.str('code')).toBe('ETIMEDOUT');
      expect(Date.now() - t0).toBeLessThan(1000);
    } finally {
      for (const s of conns) s.destroy();
      await new Promise((r) => mute.close(r));
    }
  });
});
