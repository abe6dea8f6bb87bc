import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../../src/core/bus.js';
import { silentLogger } from '../../../src/core/log.js';
import type { Message } from '../../../src/core/message.js';
import {
  CHANGE_BUCKETS,
  CHANGE_OPS,
  closeConnections,
  type FirewallService,
  installFirewallService,
} from '../../../src/services/firewall/index.js';
import { have } from '../../support/env.js';
import { Lab } from '../../support/lab.js';
import { until } from '../../support/wait.js';

/**
 * The firewall service in this process, driving real nft inside the lab's router namespace
 * (`ip netns exec ROUTER nft`). A real client (curl in the client namespace) goes through it to
 * real HTTP servers (busybox httpd): the portal on the router, "the internet" in the inet namespace.
 */
const ok = have(['nft', 'conntrack', 'ip', 'busybox', 'curl'], { root: true });

/** The download the counters must see (2 MB). */
const BIG = 2 * 1024 * 1024;
const V6 = { client: 'fd77::10', router: 'fd77::1', wanRouter: 'fd77:1::1', inet: 'fd77:1::2' };

describe.skipIf(!ok)('firewall service against real nftables in a lab', () => {
  let lab: Lab;
  let bus: Bus;
  let fw: FirewallService;
  let dir: string;
  let stateFile: string;
  let mac: string;
  let ip: string;
  const errors: Message[] = [];

  const nftCmd = (): string[] => ['ip', 'netns', 'exec', lab.router, 'nft'];
  const install = (): Promise<FirewallService> =>
    installFirewallService(bus, {
      name: '/fw',
      lan: 'r0',
      portal: { address: lab.routerLanIp, port: 8080 },
      nft: nftCmd(),
      stateFile,
      garden: ['10.77.1.99'],
    });
  /** curl from the client: the body, or `ERR<exit code>`, and how long it took. */
  const fetch = async (url: string, extra: string[] = []): Promise<{ body: string; ms: number }> => {
    const t0 = performance.now();
    const r = await lab.exec(lab.client, 'curl', ['-s', '--connect-timeout', '2', '-m', '4', ...extra, url]);
    return { body: r.code === 0 ? r.stdout.trim() : `ERR${r.code}`, ms: performance.now() - t0 };
  };
  const clients = async (): Promise<Message[]> =>
    (await bus.request('/fw/clients', {})).all('client').map((t) => t.value as Message);
  const ruleset = async (): Promise<{
    nftables: Record<string, { family?: string; name?: string; table?: string }>[];
  }> => JSON.parse((await lab.exec(lab.router, 'nft', ['-j', 'list', 'ruleset'])).stdout);

  beforeAll(async () => {
    lab = await Lab.create({ addr: true });
    dir = mkdtempSync(join(tmpdir(), 'fwlab-'));
    stateFile = join(dir, 'firewall.json');
    for (const [d, body] of [
      ['portal', 'portal'],
      ['real', 'real'],
    ] as const) {
      mkdirSync(join(dir, d));
      writeFileSync(join(dir, d, 'index.html'), `${body}\n`);
    }
    writeFileSync(join(dir, 'real', 'big.bin'), Buffer.alloc(BIG, 7));
    // IPv6 beside IPv4: the client must not walk around the portal over it.
    const v6 = async (ns: string, args: string[]): Promise<void> => {
      const r = await lab.exec(ns, 'ip', args);
      if (r.code !== 0) throw new Error(`ip ${args.join(' ')} in ${ns}: ${r.stderr}`);
    };
    await v6(lab.client, ['addr', 'add', `${V6.client}/64`, 'dev', 'c0', 'nodad']);
    await v6(lab.client, ['-6', 'route', 'add', 'default', 'via', V6.router]);
    await v6(lab.router, ['addr', 'add', `${V6.router}/64`, 'dev', 'r0', 'nodad']);
    await v6(lab.router, ['addr', 'add', `${V6.wanRouter}/64`, 'dev', 'r1', 'nodad']);
    await v6(lab.inet, ['addr', 'add', `${V6.inet}/64`, 'dev', 'i0', 'nodad']);
    await v6(lab.inet, ['-6', 'route', 'add', 'fd77::/64', 'via', V6.wanRouter]);
    await lab.exec(lab.router, 'sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=1']);
    lab.spawn(lab.router, 'busybox', [
      'httpd',
      '-f',
      '-p',
      `${lab.routerLanIp}:8080`,
      '-h',
      join(dir, 'portal'),
    ]);
    lab.spawn(lab.inet, 'busybox', ['httpd', '-f', '-p', '80', '-h', join(dir, 'real')]);
    lab.spawn(lab.inet, 'busybox', ['httpd', '-f', '-p', '25', '-h', join(dir, 'real')]);
    const up = async (ns: string, url: string): Promise<boolean> =>
      (await lab.exec(ns, 'curl', ['-s', '-m', '1', url])).code === 0;
    await until(() => up(lab.router, `http://${lab.routerLanIp}:8080/`), 'the portal httpd');
    await until(() => up(lab.inet, 'http://127.0.0.1:80/'), 'the inet httpd on 80');
    await until(() => up(lab.inet, 'http://127.0.0.1:25/'), 'the inet httpd on 25');
    // The "system firewall": another table that must survive everything the service does.
    const sys = await lab.exec(lab.router, 'nft', [
      'add table inet system; add chain inet system fwd_sys { type filter hook forward priority 10; policy accept; }; add rule inet system fwd_sys counter',
    ]);
    expect(sys.code, sys.stderr).toBe(0);
    mac = await lab.mac(lab.client, 'c0');
    ip = lab.clientIp(0);
    bus = new Bus({ name: 'fwtest', logger: silentLogger });
    bus.append('/fw/error', (m) => {
      errors.push(m);
    });
    fw = await install();
  });

  afterAll(async () => {
    await fw?.close({ removeTable: true });
    await bus?.close();
    await lab?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('builds its own table (sets, chains) beside the system table', async () => {
    const doc = await ruleset();
    const of = (kind: string, table: string): string[] =>
      doc.nftables
        .filter((x) => x[kind] && x[kind].table === table && x[kind].family === 'inet')
        .map((x) => x[kind]!.name!)
        .sort();
    expect(of('chain', 'metanet')).toEqual([
      'authorised4',
      'authorised6',
      'forward',
      'input',
      'nat_prerouting',
    ]);
    expect(of('set', 'metanet')).toEqual([
      'auth4',
      'auth6',
      'blocked',
      'dns4',
      'dns6',
      'down4',
      'down6',
      'garden4',
      'garden6',
      'gardendns4',
      'gardendns6',
      'owner',
      'smtp4',
      'trusted',
    ]);
    expect(of('chain', 'system')).toEqual(['fwd_sys']);
    const listed = await bus.request('/fw/list', {});
    expect(listed.all('chain').map((t) => t.value)).toContain('forward');
    expect(listed.str('ruleset')).toBe(fw.ruleset);
  });

  it('redirects an unauthorised client to the portal, resets HTTPS fast, drops IPv6', async () => {
    expect((await fetch(`http://${lab.inetIp}/`)).body).toBe('portal');
    const https = await fetch(`https://${lab.inetIp}/`);
    expect(https.body).toBe('ERR7'); // connection refused: a reset, not a timeout
    expect(https.ms).toBeLessThan(1000);
    expect((await fetch(`http://[${V6.inet}]/`)).body).toBe('ERR28'); // dropped: no answer
  });

  it('allow: the client reaches the real server; counters grow; allowing again refreshes the timeout', async () => {
    const r = await bus.request('/fw/allow', { ip, mac: mac.toUpperCase(), timeout: 100 });
    expect(r.has('error'), r.toString()).toBe(false);
    expect(r.str('mac')).toBe(mac);
    expect(r.float('latency')).toBeGreaterThan(0);
    expect((await fetch(`http://${lab.inetIp}/`)).body).toBe('real');
    expect((await fetch(`http://${lab.inetIp}/`)).body).toBe('real');
    const [c] = await clients();
    expect(c!.str('ip')).toBe(ip);
    expect(c!.str('mac')).toBe(mac);
    expect(c!.int('timeout')).toBe(100);
    const packets = c!.int('packets');
    expect(packets).toBeGreaterThan(5);
    expect(c!.int('bytes')).toBeGreaterThan(300);
    await bus.request('/fw/allow', { ip, mac, timeout: 500 });
    const [again] = await clients();
    expect(again!.int('timeout')).toBe(500);
    expect(again!.int('expires')).toBeGreaterThan(490);
    expect(again!.int('packets')).toBeGreaterThanOrEqual(packets);
    // Still no IPv6 for this client: only its IPv4 address is bound.
    expect((await fetch(`http://[${V6.inet}]/`)).body).toBe('ERR28');
    const v6 = await bus.request('/fw/allow', { ip: 'FD77:0::10', mac }); // any spelling: one client
    expect(v6.str('family')).toBe('ipv6');
    expect(v6.str('ip')).toBe(V6.client);
    expect((await fetch(`http://[${V6.inet}]/`)).body).toBe('real');
    expect((await clients()).map((x) => x.str('family')).sort()).toEqual(['ipv4', 'ipv6']);
  });

  it('counts both ways: a 2 MB download shows in bytes-down, its requests in bytes-up', async () => {
    const before = (await clients()).find((c) => c.str('ip') === ip)!;
    const got = await lab.exec(lab.client, 'curl', [
      '-s',
      '-o',
      '/dev/null',
      '-w',
      '%{size_download}',
      `http://${lab.inetIp}/big.bin`,
    ]);
    expect(Number(got.stdout)).toBe(BIG);
    const reply = await bus.request('/fw/clients', {});
    expect(reply.int('loaded')).toBeLessThanOrEqual(Date.now());
    const after = reply
      .all('client')
      .map((t) => t.value as Message)
      .find((c) => c.str('ip') === ip)!;
    const down = after.int('bytes-down') - before.int('bytes-down');
    const up = after.int('bytes-up') - before.int('bytes-up');
    console.log(
      `2 MB download: bytes-down +${down} (${((100 * down) / BIG).toFixed(1)}% of the file), bytes-up +${up}, packets-down +${after.int('packets-down') - before.int('packets-down')}`,
    );
    expect(down).toBeGreaterThanOrEqual(BIG);
    expect(down).toBeLessThan(BIG * 1.1);
    expect(up).toBeGreaterThan(0);
    expect(up).toBeLessThan(BIG / 10); // only requests and ACKs
    expect(after.int('bytes')).toBe(after.int('bytes-up')); // the old name means upload
    expect(after.int('packets')).toBe(after.int('packets-up'));
    // Connection attempts from outside (conntrack state new) are not the guest's download: a
    // departed guest must not be kept from going idle by someone knocking on its address.
    for (let i = 0; i < 5; i++) await lab.exec(lab.inet, 'curl', ['-s', '-m', '1', `http://${ip}:9999/`]);
    const later = (await clients()).find((c) => c.str('ip') === ip)!;
    expect(later.int('bytes-down')).toBe(after.int('bytes-down'));
  });

  it('closeConnections deletes the client flows, and 0 flows is not an error', async () => {
    const command = ['ip', 'netns', 'exec', lab.router, 'conntrack'];
    expect(await closeConnections(ip, { command })).toBeGreaterThan(0);
    expect(await closeConnections(ip, { command })).toBe(0);
  });

  it('SMTP is closed for authorised clients until opened per client and server', async () => {
    const smtp = `http://${lab.inetIp}:25/`;
    expect((await fetch(smtp)).body).toBe('ERR7');
    const o = await bus.request('/fw/smtp/open', { client: ip, server: lab.inetIp, timeout: 60 });
    expect(o.int('port')).toBe(25);
    expect((await fetch(smtp)).body).toBe('real');
    const listed = (await bus.request('/fw/list', {})).all('smtp').map((t) => t.value as Message);
    expect(listed.map((s) => s.str('server'))).toEqual([lab.inetIp]);
    expect((await bus.request('/fw/smtp/close', { client: ip, server: lab.inetIp })).bool('removed')).toBe(
      true,
    );
    expect((await fetch(smtp)).body).toBe('ERR7');
    expect((await bus.request('/fw/smtp/close', { client: ip, server: lab.inetIp })).bool('removed')).toBe(
      false,
    );
  });

  it('refuses bad tuples with a clear error and keeps serving', async () => {
    const bad = await bus.request('/fw/allow', { ip, mac: 'nonsense' });
    expect(bad.str('error')).toMatch(/mac.*"nonsense" is not a MAC/);
    const inject = await bus.request('/fw/allow', { ip: `${ip} } ; flush ruleset ; {`, mac });
    expect(inject.str('error')).toMatch(/not an IPv4 or IPv6 address/);
    const range = await bus.request('/fw/allow', { ip, mac, timeout: 0 });
    expect(range.str('error')).toMatch(/timeout must be/);
    expect(errors.length).toBe(3);
    expect((await fetch(`http://${lab.inetIp}/`)).body).toBe('real');
    errors.length = 0;
  });

  it('nft killed: the service reports it, starts another, and keeps working', async () => {
    const pid = fw.nftPid()!;
    const reported = bus.wait('/fw/error', { timeout: 3000 });
    process.kill(pid, 'SIGKILL');
    expect((await reported).str('error')).toMatch(/nft exited \(signal SIGKILL\)/);
    await until(() => fw.nftPid() !== undefined && fw.nftPid() !== pid, 'a new nft child');
    await bus.request('/fw/allow', { ip, mac, timeout: 600 });
    expect((await clients()).find((c) => c.str('ip') === ip)!.int('timeout')).toBe(600);
    errors.length = 0;
  });

  it('table deleted behind its back: the next change rebuilds it from the state and says so', async () => {
    expect((await lab.exec(lab.router, 'nft', ['delete', 'table', 'inet', 'metanet'])).code).toBe(0);
    const reported = bus.wait('/fw/error', { timeout: 3000 });
    const r = await bus.request('/fw/allow', { ip, mac, timeout: 700 });
    expect(r.has('error'), r.toString()).toBe(false);
    expect((await reported).str('error')).toMatch(/was gone.*rebuilt/);
    expect((await clients()).find((c) => c.str('ip') === ip)!.int('timeout')).toBe(700);
    expect((await fetch(`http://${lab.inetIp}/`)).body).toBe('real');
    errors.length = 0;
  });

  it('the address given to another MAC starts a new download count; deny removes both counters', async () => {
    const other = '02:00:00:00:77:01';
    await bus.request('/fw/allow', { ip: '10.77.0.77', mac: '02:00:00:00:77:00', timeout: 60 });
    const setOf = async (set: string): Promise<string[]> => {
      const r = await lab.exec(lab.router, 'nft', ['-j', 'list', 'set', 'inet', 'metanet', set]);
      return JSON.stringify(JSON.parse(r.stdout)).match(/10\.77\.0\.77/g) ?? [];
    };
    expect(await setOf('down4')).toHaveLength(1);
    await bus.request('/fw/allow', { ip: '10.77.0.77', mac: other, timeout: 60 });
    const listed = (await clients()).filter((c) => c.str('ip') === '10.77.0.77');
    expect(listed.map((c) => c.str('mac'))).toEqual([other]);
    expect(listed[0]!.int('bytes-down')).toBe(0);
    expect((await bus.request('/fw/deny', { ip: '10.77.0.77', mac: other })).bool('removed')).toBe(true);
    expect(await setOf('down4')).toEqual([]);
    expect(await setOf('auth4')).toEqual([]);
  });

  it('deny blocks again; denying a missing client is not an error', async () => {
    const d = await bus.request('/fw/deny', { ip, mac });
    expect(d.bool('removed')).toBe(true);
    expect((await fetch(`http://${lab.inetIp}/`)).body).toBe('portal');
    const again = await bus.request('/fw/deny', { ip, mac });
    expect(again.has('error')).toBe(false);
    expect(again.bool('removed')).toBe(false);
    expect(errors).toEqual([]);
    await bus.request('/fw/allow', { ip, mac });
  });

  it('garden/add: an address becomes reachable before login (http and https-port), for its timeout, kept across a rebuild', async () => {
    const extra = '10.77.1.50';
    expect((await lab.exec(lab.inet, 'ip', ['addr', 'add', `${extra}/24`, 'dev', 'i0'])).code).toBe(0);
    await bus.request('/fw/deny', { ip, mac });
    expect((await fetch(`http://${extra}/`)).body).toBe('portal');
    expect((await fetch(`http://${lab.inetIp}:25/`)).body).toBe('ERR28'); // dropped
    const r = await bus.request('/fw/garden/add', { ip: [extra, extra, 'fd77:1::50'], timeout: 120 });
    expect(r.has('error'), r.toString()).toBe(false);
    expect(r.int('count')).toBe(3);
    expect(r.int('added')).toBe(2); // one address twice: once
    expect((await fetch(`http://${extra}/`)).body).toBe('real');
    expect((await fetch(`http://${lab.inetIp}/`)).body).toBe('portal'); // only that address
    // Seen again with a shorter or barely longer timeout: not touched (never shortened).
    expect((await bus.request('/fw/garden/add', { ip: extra, timeout: 30 })).int('added')).toBe(0);
    const listed = await bus.request('/fw/list', {});
    const g = listed.all('garden').map((t) => t.value as Message);
    expect(g.map((x) => x.str('ip')).sort()).toEqual([extra, 'fd77:1::50']);
    expect(g[0]!.int('timeout')).toBe(120);
    // Table flushed by someone else: the rebuild keeps the learnt garden.
    expect((await lab.exec(lab.router, 'nft', ['delete', 'table', 'inet', 'metanet'])).code).toBe(0);
    await bus.request('/fw/allow', { ip: '10.77.0.99', mac: '02:00:00:00:99:99', timeout: 5 });
    expect((await fetch(`http://${extra}/`)).body).toBe('real');
    const bad = await bus.request('/fw/garden/add', { ip: 'example.org', timeout: 60 });
    expect(bad.str('code')).toBe('EBADTUPLE');
    errors.length = 0;
  });

  it('MAC lists: trusted passes without a session, blocked reaches nothing; both survive a rebuild', async () => {
    await bus.request('/fw/deny', { ip, mac });
    expect((await fetch(`http://${lab.inetIp}/`)).body).toBe('portal');
    const t = await bus.request('/fw/mac/add', { list: 'trusted', mac: mac.toUpperCase() });
    expect(t.str('mac')).toBe(mac);
    expect(t.bool('added')).toBe(true);
    expect((await bus.request('/fw/mac/add', { list: 'trusted', mac })).bool('added')).toBe(false);
    expect((await fetch(`http://${lab.inetIp}/`)).body).toBe('real');
    expect((await fetch(`http://${lab.inetIp}:25/`)).body).toBe('ERR7'); // SMTP gate as for authorised
    expect((await bus.request('/fw/mac/remove', { list: 'trusted', mac })).bool('removed')).toBe(true);
    expect((await fetch(`http://${lab.inetIp}/`)).body).toBe('portal');
    // Blocked: even an authorised binding gets nothing; not the portal, not DNS, not ping.
    await bus.request('/fw/allow', { ip, mac });
    expect((await fetch(`http://${lab.inetIp}/`)).body).toBe('real');
    await bus.request('/fw/mac/add', { list: 'blocked', mac });
    expect((await fetch(`http://${lab.inetIp}/`)).body).toBe('ERR28');
    expect((await fetch(`http://${lab.routerLanIp}:8080/`)).body).toBe('ERR28');
    expect((await lab.exec(lab.client, 'ping', ['-c1', '-W1', lab.routerLanIp])).code).not.toBe(0);
    expect((await lab.exec(lab.router, 'nft', ['delete', 'table', 'inet', 'metanet'])).code).toBe(0);
    await bus.request('/fw/allow', { ip: '10.77.0.98', mac: '02:00:00:00:99:98', timeout: 5 });
    const listed = await bus.request('/fw/list', {});
    expect(listed.all('blocked').map((x) => x.value)).toEqual([mac]);
    expect((await fetch(`http://${lab.inetIp}/`)).body).toBe('ERR28');
    expect((await bus.request('/fw/mac/remove', { list: 'blocked', mac })).bool('removed')).toBe(true);
    expect((await bus.request('/fw/mac/remove', { list: 'blocked', mac })).bool('removed')).toBe(false);
    expect((await fetch(`http://${lab.inetIp}/`)).body).toBe('real');
    expect((await bus.request('/fw/mac/add', { list: 'friends', mac })).str('code')).toBe('EBADTUPLE');
    for (const [a, m] of [
      ['10.77.0.99', '02:00:00:00:99:99'],
      ['10.77.0.98', '02:00:00:00:99:98'],
    ] as const)
      await bus.request('/fw/deny', { ip: a, mac: m });
    errors.length = 0;
  });

  it('a restart with the same state file rebuilds the table with the client still allowed', async () => {
    await fw.close();
    // The table stays when the daemon stops; drop it as a reboot would, to prove the rebuild.
    expect((await lab.exec(lab.router, 'nft', ['delete', 'table', 'inet', 'metanet'])).code).toBe(0);
    fw = await install();
    expect(fw.ruleset).toContain(`${ip} . ${mac} timeout 3600s expires`);
    const after = await clients();
    expect(after.map((c) => c.str('ip')).sort()).toEqual([ip, V6.client].sort());
    expect((await fetch(`http://${lab.inetIp}/`)).body).toBe('real');
    expect((await ruleset()).nftables.some((x) => x.chain?.table === 'system')).toBe(true);
  });

  it('counts the changes nft applied, by kind, with their seconds (stats(), the metrics source)', async () => {
    const before = structuredClone(fw.stats());
    const m = '02:00:00:00:78:01';
    await bus.request('/fw/mac/add', { list: 'trusted', mac: m });
    await bus.request('/fw/mac/add', { list: 'trusted', mac: m }); // listed already: no change
    await bus.request('/fw/mac/remove', { list: 'trusted', mac: m });
    await bus.request('/fw/allow', { ip: '10.77.0.78', mac: m, timeout: 60 });
    await bus.request('/fw/deny', { ip: '10.77.0.78', mac: m });
    await bus.request('/fw/deny', { ip: '10.77.0.78', mac: m }); // gone already: still one change asked of nft
    await bus.request('/fw/smtp/open', { client: '10.77.0.78', server: lab.inetIp, timeout: 60 });
    await bus.request('/fw/smtp/close', { client: '10.77.0.78', server: lab.inetIp });
    const after = fw.stats();
    const delta = (op: keyof typeof after) => after[op].count - before[op].count;
    expect({
      allow: delta('allow'),
      deny: delta('deny'),
      mac_add: delta('mac_add'),
      mac_remove: delta('mac_remove'),
      smtp_open: delta('smtp_open'),
      smtp_close: delta('smtp_close'),
      garden_add: delta('garden_add'),
    }).toEqual({ allow: 1, deny: 2, mac_add: 1, mac_remove: 1, smtp_open: 1, smtp_close: 1, garden_add: 0 });
    for (const op of ['allow', 'deny', 'mac_add'] as const) {
      expect(after[op].seconds).toBeGreaterThan(before[op].seconds);
      expect(after[op].errors).toBe(before[op].errors);
    }
    for (const op of CHANGE_OPS) expect(after[op].buckets.reduce((x, y) => x + y, 0)).toBe(after[op].count);
    expect(errors).toEqual([]);
  });

  it('firewall open latency: allow sent → nft echo line, over 200 allows', async () => {
    const allowsBefore = structuredClone(fw.stats().allow);
    const echo: number[] = [];
    const roundTrip: number[] = [];
    for (let i = 0; i < 200; i++) {
      const a = `10.77.${100 + (i >> 8)}.${i & 255}`;
      const m = `02:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
      const t0 = performance.now();
      const r = await bus.request('/fw/allow', { ip: a, mac: m, timeout: 60 });
      roundTrip.push(performance.now() - t0);
      echo.push(r.float('latency'));
    }
    const pct = (xs: number[], p: number): number =>
      [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
    const line = `firewall open latency over 200 allows: echo p50 ${pct(echo, 50).toFixed(2)} ms, p99 ${pct(echo, 99).toFixed(2)} ms; request round trip p50 ${pct(roundTrip, 50).toFixed(2)} ms, p99 ${pct(roundTrip, 99).toFixed(2)} ms`;
    console.log(line);
    expect((await clients()).length).toBe(202);
    // the counters behind metanet_firewall_change_seconds (_count, _sum): the replies' latencies, summed
    const allows = fw.stats().allow;
    expect(allows.count - allowsBefore.count).toBe(200);
    // each in the bucket of its latency
    const bucketOf = (ms: number): number => {
      const i = CHANGE_BUCKETS.findIndex((b) => ms / 1000 <= b);
      return i < 0 ? CHANGE_BUCKETS.length : i;
    };
    const expected = CHANGE_BUCKETS.map(() => 0).concat(0);
    for (const ms of echo) expected[bucketOf(ms)]!++;
    expect(allows.buckets.map((n, i) => n - allowsBefore.buckets[i]!)).toEqual(expected);
    expect((allows.seconds - allowsBefore.seconds) * 1000).toBeCloseTo(
      echo.reduce((x, y) => x + y, 0),
      3,
    );
    expect(pct(echo, 50)).toBeLessThan(50);
  });
});
