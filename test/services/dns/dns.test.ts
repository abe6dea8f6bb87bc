import { type ChildProcess, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus, type Message, silentLogger } from '../../../src/core/index.js';
import { type DnsService, installDnsService, resolve, reverse } from '../../../src/services/dns/index.js';
import { have } from '../../support/env.js';
import { until, waitForLine } from '../../support/wait.js';

/** A free UDP port on 127.0.0.1, from the OS (bound to 0, then released). */
async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** dnsmasq in the foreground on 127.0.0.1:port, answering only for metanet.test, never forwarding. */
async function startDnsmasq(): Promise<{ server: string; stop(): Promise<void> }> {
  const port = await freeUdpPort();
  const child: ChildProcess = spawn(
    'dnsmasq',
    [
      '-d', // foreground, log to stderr
      '-C',
      '/dev/null',
      '--pid-file=',
      '--user=root',
      `--port=${port}`,
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      '--no-resolv',
      '--no-hosts',
      '--local=/metanet.test/',
      '--address=/wild.metanet.test/10.9.9.9',
      '--host-record=h.metanet.test,10.9.9.10',
      '--host-record=h6.metanet.test,10.9.9.11,fd00::11',
      '--ptr-record=20.9.9.10.in-addr.arpa,ptr.metanet.test',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  await waitForLine(child, /started, version/);
  return {
    server: `127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = once(child, 'exit');
      child.kill();
      await exited;
    },
  };
}

describe.skipIf(!have(['dnsmasq']))('dns service against dnsmasq', () => {
  let dnsmasq: Awaited<ReturnType<typeof startDnsmasq>>;
  let bus: Bus;
  let service: DnsService;
  beforeAll(async () => {
    dnsmasq = await startDnsmasq();
    bus = new Bus({ name: 'test', logger: silentLogger });
    service = installDnsService(bus, { servers: [dnsmasq.server], timeout: 1000 });
    await until(
      async () => !(await bus.request('/system/dns/resolve', { name: 'h.metanet.test' })).has('error'),
      'dnsmasq to answer',
    );
  });
  afterAll(async () => {
    await service?.close();
    await bus?.close();
    await dnsmasq?.stop();
  });

  it('resolves A and AAAA records as messages', async () => {
    const r = await bus.request('/system/dns/resolve', { name: 'h.metanet.test' });
    expect(r.toObject()).toEqual({ name: 'h.metanet.test', address: '10.9.9.10', family: 4 });
    const both = await bus.request('/system/dns/resolve', { name: 'h6.metanet.test', family: 0 });
    expect(both.all('address').map((t) => t.value)).toEqual(['10.9.9.11', 'fd00::11']);
    expect(both.int('family')).toBe(0);
    const six = await bus.request('/system/dns/resolve', { name: 'h6.metanet.test', family: 6 });
    expect(six.str('address')).toBe('fd00::11');
    expect((await bus.request('/system/dns/resolve', { name: 'x.wild.metanet.test' })).str('address')).toBe(
      '10.9.9.9',
    );
  });

  it('reverse-resolves through PTR records', async () => {
    const r = await bus.request('/system/dns/reverse', { address: '10.9.9.10' });
    expect(r.toObject()).toEqual({ address: '10.9.9.10', hostname: 'h.metanet.test' });
    expect((await reverse(bus, '10.9.9.20')).hostname).toEqual(['ptr.metanet.test']);
    expect((await reverse(bus, 'fd00::11')).hostname).toEqual(['h6.metanet.test']);
  });

  it('is usable with await through resolve() and reverse()', async () => {
    expect(await resolve(bus, 'h.metanet.test')).toEqual({
      name: 'h.metanet.test',
      address: ['10.9.9.10'],
      family: 4,
    });
    await expect(resolve(bus, 'missing.metanet.test')).rejects.toMatchObject({
      code: 'ENOTFOUND',
      message: 'missing.metanet.test: no such name (ENOTFOUND)',
    });
  });

  it('answers failures and bad input with {error, code}', async () => {
    const codeOf = async (mailbox: string, init: Record<string, string | number>): Promise<Message> =>
      bus.request(mailbox, init);
    expect((await codeOf('/system/dns/resolve', { name: 'missing.metanet.test' })).str('code')).toBe(
      'ENOTFOUND',
    );
    expect((await codeOf('/system/dns/resolve', { name: 'h.metanet.test', family: 6 })).str('code')).toBe(
      'ENODATA',
    );
    const fam = await codeOf('/system/dns/resolve', { name: 'h.metanet.test', family: 5 });
    expect(fam.toObject()).toEqual({ error: 'tuple "family" must be 4, 6 or 0, got 5', code: 'EINVAL' });
    expect((await codeOf('/system/dns/reverse', { address: 'not-an-ip' })).str('error')).toMatch(
      /"not-an-ip" is not an IP address/,
    );
    expect((await codeOf('/system/dns/resolve', { name: 'h.metanet.test', timeout: 0 })).str('code')).toBe(
      'EINVAL',
    );
    expect((await codeOf('/system/dns/resolve', { host: 'h.metanet.test' })).str('error')).toMatch(
      /missing tuple "name"/,
    );
    // a literal is its own answer; localhost comes from /etc/hosts, never from DNS
    expect((await resolve(bus, '10.1.2.3')).address).toEqual(['10.1.2.3']);
    expect((await resolve(bus, 'localhost')).address).toContain('127.0.0.1');
    expect((await reverse(bus, '127.0.0.1')).hostname.length).toBe(1);
  });
});

describe('dns timeouts', () => {
  it('gives ETIMEDOUT when the server never answers, within the timeout', async () => {
    const silent = dgram.createSocket('udp4'); // receives queries, answers none
    silent.bind(0, '127.0.0.1');
    await once(silent, 'listening');
    let queries = 0;
    silent.on('message', () => queries++);
    const bus = new Bus({ name: 'test', logger: silentLogger });
    const service = installDnsService(bus, { servers: [`127.0.0.1:${silent.address().port}`] });
    try {
      const t0 = Date.now();
      const r = await bus.request('/system/dns/resolve', { name: 'slow.metanet.test', timeout: 200 });
      const took = Date.now() - t0;
      expect(r.str('code')).toBe('ETIMEDOUT');
      expect(r.str('error')).toBe('slow.metanet.test: no answer in time (ETIMEDOUT)');
      expect(took).toBeGreaterThanOrEqual(150);
      expect(took).toBeLessThan(1500);
      expect(queries).toBeGreaterThanOrEqual(1);
      await expect(reverse(bus, '10.9.9.10', { timeout: 100 })).rejects.toMatchObject({ code: 'ETIMEDOUT' });
      // close() cancels a query in flight
      const pending = bus.request('/system/dns/resolve', { name: 'late.metanet.test', timeout: 5000 });
      await until(() => queries >= 3, 'the third query to reach the silent server');
      await service.close();
      expect((await pending).str('code')).toBe('ECANCELLED');
    } finally {
      await service.close();
      await bus.close();
      silent.close();
    }
  });
});
