import { spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, type MetricFamily } from '../../../src/apps/app.js';
import { dhcpMetrics } from '../../../src/apps/dhcpd/app.js';
import { dnsMetrics, startDnsForwarder } from '../../../src/apps/dns/app.js';
import { parseDnsConfig } from '../../../src/apps/dns/config.js';
import { loadGateway, loadGatewayFile } from '../../../src/apps/gateway/config.js';
import { startGateway } from '../../../src/apps/gateway/host.js';
import { GatewayMetrics, serveMetrics } from '../../../src/apps/gateway/metrics.js';
import { mailProxyApp } from '../../../src/apps/mailproxy/app.js';
import { Bus } from '../../../src/core/bus.js';
import { silentLogger } from '../../../src/core/log.js';
import { Message } from '../../../src/core/message.js';
import { attachClient, serveDaemon } from '../../../src/ipc/daemon.js';
import { parseConfig } from '../../../src/services/dhcp/config.js';
import { checkConfigOption } from '../../../src/services/dhcp/optionset.js';
import { startDhcpServer } from '../../../src/services/dhcp/server.js';
import { clientPacket, MessageType } from '../../services/dhcp/helpers.js';
import { have } from '../../support/env.js';
import { REPO_ROOT } from '../../support/lab.js';
import { until } from '../../support/wait.js';
import { a, FakeUpstream, query } from '../dns/fake.js';

/**
 * The /metrics endpoint without namespaces: the text (HELP, TYPE, names, labels) and its values
 * following the counters; each app's families against its real counters; the IPC counters; the
 * address rule of `metrics.listen`; `metanet up` serving it in process. The lab test
 * (metrics.lab.test.ts) scrapes a real `metanet up` and runs promtool on it.
 */

const dir = mkdtempSync(join(tmpdir(), 'mn-metrics-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The value of one sample (`name{labels}` exactly as written), or undefined. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n'))
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  return undefined;
}

async function textOf(families: readonly MetricFamily[]): Promise<string> {
  const m = await GatewayMetrics.create(silentLogger);
  m.add('test', families);
  return m.text();
}

function get(
  port: number,
  path: string,
  method = 'GET',
): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const r = request({ host: '127.0.0.1', port, path, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }),
      );
    });
    r.on('error', reject);
    r.end();
  });
}

async function freeTcpPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const a = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return typeof a === 'object' && a ? a.port : 0;
}

describe('the metrics text', () => {
  it('has HELP and TYPE per family, labels, values read at scrape time, and Node process metrics', async () => {
    const counts = { hits: 0, drops: { a: 1, b: 2 } };
    let gauge = 5;
    const m = await GatewayMetrics.create(silentLogger);
    m.add('app', [
      { name: 'metanet_test_hits_total', help: 'Hits seen.', type: 'counter', collect: () => counts.hits },
      {
        name: 'metanet_test_dropped_total',
        help: 'Drops, by reason.',
        type: 'counter',
        labels: ['reason'],
        collect: () => Object.entries(counts.drops).map(([reason, value]) => ({ labels: { reason }, value })),
      },
      { name: 'metanet_test_level_bytes', help: 'A level.', type: 'gauge', collect: async () => gauge },
    ]);
    let t = await m.text();
    expect(t).toContain(
      '# HELP metanet_test_hits_total Hits seen.\n# TYPE metanet_test_hits_total counter\n',
    );
    expect(t).toContain('# TYPE metanet_test_dropped_total counter');
    expect(t).toContain('# TYPE metanet_test_level_bytes gauge');
    expect(sample(t, 'metanet_test_hits_total')).toBe(0);
    expect(sample(t, 'metanet_test_dropped_total{reason="a"}')).toBe(1);
    expect(sample(t, 'metanet_test_level_bytes')).toBe(5);
    // Node's process metrics: event-loop lag, memory
    expect(t).toMatch(/^nodejs_eventloop_lag_seconds [\d.e-]+$/m);
    expect(t).toMatch(/^process_resident_memory_bytes \d+$/m);
    expect(t).toMatch(/^nodejs_heap_size_used_bytes \d+$/m);

    counts.hits = 7;
    counts.drops.b = 3;
    gauge = 2;
    t = await m.text();
    expect(sample(t, 'metanet_test_hits_total')).toBe(7);
    expect(sample(t, 'metanet_test_dropped_total{reason="b"}')).toBe(3);
    expect(sample(t, 'metanet_test_level_bytes')).toBe(2);

    // an owner that stops takes its families with it; one can register again
    m.remove('app');
    t = await m.text();
    expect(t).not.toContain('metanet_test_');
    m.add('app', [
      { name: 'metanet_test_hits_total', help: 'Hits seen.', type: 'counter', collect: () => 1 },
    ]);
    expect(sample(await m.text(), 'metanet_test_hits_total')).toBe(1);
  });

  it('a family that fails to collect is left out; the others are served', async () => {
    const t = await textOf([
      {
        name: 'metanet_test_broken',
        help: 'Broken.',
        type: 'gauge',
        collect: () => {
          throw new Error('no');
        },
      },
      { name: 'metanet_test_fine', help: 'Fine.', type: 'gauge', collect: () => 1 },
    ]);
    expect(sample(t, 'metanet_test_fine')).toBe(1);
    expect(sample(t, 'metanet_test_broken')).toBeUndefined();
  });

  it('is served at GET /metrics only (404 elsewhere, 405 for other methods)', async () => {
    const m = await GatewayMetrics.create(silentLogger);
    m.add('app', [{ name: 'metanet_test_up', help: 'Up.', type: 'gauge', collect: () => 1 }]);
    const s = await serveMetrics(m, { address: '127.0.0.1', port: 0 }, silentLogger);
    try {
      const r = await get(s.port, '/metrics');
      expect(r.status).toBe(200);
      expect(r.type).toMatch(/^text\/plain; version=0\.0\.4/);
      expect(sample(r.body, 'metanet_test_up')).toBe(1);
      expect((await get(s.port, '/')).status).toBe(404);
      expect((await get(s.port, '/metrics/x')).status).toBe(404);
      expect((await get(s.port, '/metrics', 'POST')).status).toBe(405);
    } finally {
      await s.close();
    }
    // a host of a denied subnet gets no answer
    const d = await serveMetrics(m, { address: '127.0.0.1', port: 0, deny: ['127.0.0.0/8'] }, silentLogger);
    try {
      await expect(get(d.port, '/metrics')).rejects.toThrow(/socket hang up|ECONNRESET/);
    } finally {
      await d.close();
    }
  });

  it.skipIf(!have(['promtool']))('passes promtool check metrics', async () => {
    const t = await textOf([
      { name: 'metanet_test_hits_total', help: 'Hits.', type: 'counter', collect: () => 3 },
      {
        name: 'metanet_test_free_addresses',
        help: 'Free.',
        type: 'gauge',
        labels: ['subnet'],
        collect: () => [{ labels: { subnet: '10.0.0.0/24' }, value: 10 }],
      },
    ]);
    const r = spawnSync('promtool', ['check', 'metrics'], { input: t, encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`).toBe('');
    expect(r.status).toBe(0);
  });
});

describe('app families read the apps’ own counters', () => {
  it('dhcpd: packets by type, replies, leases, pool size and free addresses per subnet', async () => {
    const bus = new Bus({ name: 'dhcpd', logger: silentLogger });
    const config = parseConfig(
      {
        listen: [{ address: '127.0.0.1' }],
        subnets: [
          { subnet: '127.0.0.0/8', pool: { start: '127.0.0.100', end: '127.0.0.199' }, leaseTime: 120 },
        ],
        leaseFile: join(dir, 'dhcpd.leases'),
      },
      checkConfigOption,
    );
    const server = await startDhcpServer(bus, config, { port: 0, wildcard: false, logger: silentLogger });
    try {
      const m = await GatewayMetrics.create(silentLogger);
      m.add('dhcpd', dhcpMetrics(server, config));
      let t = await m.text();
      expect(sample(t, 'metanet_dhcp_pool_addresses{subnet="127.0.0.0/8"}')).toBe(100);
      expect(sample(t, 'metanet_dhcp_pool_free_addresses{subnet="127.0.0.0/8"}')).toBe(100);
      expect(sample(t, 'metanet_dhcp_packets_received_total{type="discover"}')).toBe(0);
      expect(sample(t, 'metanet_dhcp_replies_total{type="offer"}')).toBe(0);

      const mac = '02:00:00:00:00:01';
      const from = { address: '127.0.0.1', port: 67 };
      const offer = await server.core.handle({
        packet: clientPacket(MessageType.DISCOVER, mac, { giaddr: '127.0.0.1' }),
        from,
      });
      const ip = offer!.packet.yiaddr;
      await server.core.handle({
        packet: clientPacket(MessageType.REQUEST, mac, {
          giaddr: '127.0.0.1',
          requested: ip,
          serverId: '127.0.0.1',
        }),
        from,
      });
      await server.core.handle({
        packet: clientPacket(MessageType.REQUEST, '02:00:00:00:00:02', {
          giaddr: '127.0.0.1',
          requested: '10.1.1.1',
          serverId: '127.0.0.1',
        }),
        from,
      });
      server.core.malformed({ from: '127.0.0.1:68' });
      await new Promise((r) => setImmediate(r)); // /dhcpd/packet is delivered on the next turn
      t = await m.text();
      expect(sample(t, 'metanet_dhcp_packets_received_total{type="discover"}')).toBe(1);
      expect(sample(t, 'metanet_dhcp_packets_received_total{type="request"}')).toBe(2);
      expect(sample(t, 'metanet_dhcp_packets_malformed_total')).toBe(1);
      expect(sample(t, 'metanet_dhcp_replies_total{type="offer"}')).toBe(1);
      expect(sample(t, 'metanet_dhcp_replies_total{type="ack"}')).toBe(1);
      expect(sample(t, 'metanet_dhcp_replies_total{type="nak"}')).toBe(1);
      expect(sample(t, 'metanet_dhcp_leases_active{subnet="127.0.0.0/8"}')).toBe(1);
      expect(sample(t, 'metanet_dhcp_pool_free_addresses{subnet="127.0.0.0/8"}')).toBe(99);
      expect(sample(t, 'metanet_dhcp_lookups_total{result="answered"}')).toBeGreaterThanOrEqual(2);
      expect(t).not.toContain(mac); // no per-guest label
    } finally {
      await server.close();
      await bus.close(100);
    }
  });

  it('dns: queries, cache hits, upstream failures and SERVFAIL', async () => {
    const bus = new Bus({ name: 'dns', logger: silentLogger });
    const upstream = new FakeUpstream({ 'example.test': [a('example.test', '192.0.2.1', 300)] });
    const dns = await startDnsForwarder(
      bus,
      parseDnsConfig({ listen: ['127.0.0.1'], port: 0, upstream: ['127.0.0.9'] }),
      {
        log: silentLogger,
        resolver: upstream,
      },
    );
    const udp = createSocket('udp4');
    const ask = (q: Buffer): Promise<dnsPacket.Packet> =>
      new Promise((resolve) => {
        udp.once('message', (b) => resolve(dnsPacket.decode(b)));
        udp.send(q, dns.addresses[0]!.port, '127.0.0.1');
      });
    try {
      const m = await GatewayMetrics.create(silentLogger);
      m.add('dns', dnsMetrics(dns));
      expect(sample(await m.text(), 'metanet_dns_queries_total')).toBe(0);
      await ask(query('example.test'));
      await ask(query('example.test'));
      upstream.fail = true;
      expect(((await ask(query('down.test'))) as { rcode?: string }).rcode).toBe('SERVFAIL');
      const t = await m.text();
      expect(sample(t, 'metanet_dns_queries_total')).toBe(3);
      expect(sample(t, 'metanet_dns_cache_hits_total')).toBe(1);
      expect(sample(t, 'metanet_dns_cache_misses_total')).toBe(2);
      expect(sample(t, 'metanet_dns_upstream_queries_total')).toBe(2);
      expect(sample(t, 'metanet_dns_upstream_failures_total')).toBe(1);
      expect(sample(t, 'metanet_dns_servfail_responses_total')).toBe(1);
      expect(sample(t, 'metanet_dns_cache_entries')).toBe(1);
    } finally {
      udp.close();
      await dns.close();
      await bus.close(100);
    }
  });

  it('mailproxy: connections and errors from its /mailproxy/stats', async () => {
    const bus = new Bus({ name: 'mailproxy', logger: silentLogger });
    const handle = await mailProxyApp.start(
      bus,
      mailProxyApp.parse({ port: 0, address: '127.0.0.1', firewall: false }),
      { dir, log: silentLogger },
    );
    try {
      const m = await GatewayMetrics.create(silentLogger);
      m.add('mailproxy', handle.metrics!());
      let t = await m.text();
      expect(sample(t, 'metanet_mailproxy_logins_total')).toBe(0);
      expect(sample(t, 'metanet_mailproxy_connections_total')).toBe(0);
      // a connection that was not redirected: counted, closed, an error
      const c = connect(Number(handle.readyNote), '127.0.0.1');
      await new Promise<void>((r) => c.once('close', () => r()));
      await new Promise((r) => setTimeout(r, 1100)); // past the one-scrape reuse of the stats
      t = await m.text();
      expect(sample(t, 'metanet_mailproxy_connections_total')).toBe(1);
      expect(sample(t, 'metanet_mailproxy_errors_total')).toBe(1);
      expect(sample(t, 'metanet_mailproxy_smtp_openings_total')).toBe(0);
    } finally {
      await handle.close();
      await bus.close(100);
    }
  });
});

describe('IPC counters', () => {
  it('count frames both ways, refused requests, peers and queued bytes', async () => {
    const sock = join(dir, 'ipc');
    const bus = new Bus({ name: 'mtest', logger: silentLogger });
    bus.create('/echo');
    bus.append('/echo', async (_m, ctx) => {
      await ctx.reply({ ok: true });
    });
    const d = await serveDaemon(bus, { dir: sock, signals: false });
    const client = new Bus({ name: `mclient${process.pid}`, logger: silentLogger });
    const t = attachClient(client, { dir: sock });
    try {
      expect(d.transport.stats.framesIn).toBe(0);
      await client.request('mtest:/echo', { hello: 1 });
      await until(() => d.transport.peers().count === 1, 'the client counted as a peer', 2000);
      const s = d.transport.stats;
      expect(s.framesIn).toBeGreaterThanOrEqual(2); // HELLO, SEND
      expect(s.framesOut).toBeGreaterThanOrEqual(2); // HELLO, the reply, RESULT
      await until(() => t.stats.framesIn === s.framesOut, 'the client read every frame', 2000);
      expect(d.transport.peers().queuedBytes).toBe(0);
      // a request the daemon refuses (a path that is not one): ERROR, the connection stays
      const link = await t.link('mtest');
      await expect(link.send('no-slash', Message.from({}))).rejects.toThrow(/path/);
      expect(link.closed).toBe(false);
      await until(() => d.transport.stats.refused === 1, 'a refused request counted', 2000);
    } finally {
      await client.close(100);
      await d.close();
      await bus.close(100);
    }
  });
});

describe('metrics.listen: loopback or a LAN address, never the guests’ unless allowed', () => {
  const networks = {
    wan: { role: 'wan', device: 'eth0', address: '192.0.2.2/24' },
    lan: { role: 'lan', device: 'br-lan', address: '10.10.0.1/24' },
    guest: { role: 'guest', device: 'br-guest', address: '10.20.0.1/24' },
  };
  const gw = (metrics: unknown) =>
    loadGateway({ networks, upstreamDns: ['10.99.0.1'], apps: { dns: {} }, metrics }, 'gw.json');
  const problems = async (metrics: unknown): Promise<string[]> => {
    try {
      await gw(metrics);
    } catch (e) {
      if (e instanceof ConfigError) return e.problems.map((p) => `${p.path}: ${p.message}`);
      throw e;
    }
    return [];
  };

  it('accepts loopback and the router’s LAN address; none by default', async () => {
    expect((await gw(undefined)).metrics).toBeUndefined();
    expect((await gw({ listen: '127.0.0.1:9100' })).metrics).toEqual({
      address: '127.0.0.1',
      port: 9100,
      deny: ['10.20.0.0/24'], // guests are refused whichever address they dial
    });
    expect((await gw({ listen: '10.10.0.1:9100' })).metrics).toEqual({
      address: '10.10.0.1',
      port: 9100,
      deny: ['10.20.0.0/24'],
    });
    expect((await gw({ listen: '10.20.0.1:9100', allowGuest: true })).metrics).toEqual({
      address: '10.20.0.1',
      port: 9100,
      deny: [],
    });
  });

  it('refuses the guest network, the WAN, 0.0.0.0, other addresses and bad forms, by path', async () => {
    expect(await problems({ listen: '10.20.0.1:9100' })).toEqual([
      expect.stringMatching(
        /^metrics\.listen: 10\.20\.0\.1 is the router's address on networks\.guest.*allowGuest/,
      ),
    ]);
    expect(await problems({ listen: '192.0.2.2:9100', allowGuest: true })).toEqual([
      expect.stringMatching(/^metrics\.listen: .*the WAN/),
    ]);
    expect(await problems({ listen: '0.0.0.0:9100' })).toEqual([
      expect.stringMatching(/^metrics\.listen: 0\.0\.0\.0/),
    ]);
    expect(await problems({ listen: '10.10.0.9:9100' })).toEqual([
      expect.stringMatching(/^metrics\.listen: 10\.10\.0\.9 is not the router's address/),
    ]);
    expect(await problems({ listen: '10.10.0.1' })).toEqual([
      expect.stringMatching(/^metrics\.listen: not address:port/),
    ]);
    expect(await problems({ listen: '10.10.0.1:0' })).toEqual([
      expect.stringMatching(/^metrics\.listen: port 0/),
    ]);
    expect(await problems({ listen: '127.0.0.1:9100', colour: 'red' })).toEqual([
      expect.stringMatching(/^metrics: .*colour/),
    ]);
  });

  it('metanet up --check refuses a metrics address on the guest network', () => {
    const example = JSON.parse(readFileSync(join(REPO_ROOT, 'examples/gateway.json'), 'utf8')) as object;
    const f = join(dir, 'guest-metrics.json');
    writeFileSync(
      f,
      JSON.stringify({ ...example, upstreamDns: ['10.99.0.1'], metrics: { listen: '10.20.0.1:9100' } }),
    );
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', join(REPO_ROOT, 'src/cli/main.ts'), 'up', '--check', '--config', f],
      { encoding: 'utf8', timeout: 20_000 },
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/metrics\.listen: 10\.20\.0\.1 is the router's address on networks\.guest/);
    expect(r.stdout).toBe('');
  });
});

describe('metanet up serves /metrics (in process, on loopback)', () => {
  it('a reload opens, moves and closes the endpoint', async () => {
    const [p1, p2] = [await freeTcpPort(), await freeTcpPort()];
    const file = join(dir, 'gw-reload.json');
    const write = (metrics?: unknown): void =>
      writeFileSync(
        file,
        JSON.stringify({
          networks: { lan: { role: 'lan', device: 'lo', address: '127.0.0.1/8' } },
          upstreamDns: ['127.0.0.9'],
          stateDir: join(dir, 'state2'),
          apps: { dns: { port: 0 } },
          ...(metrics ? { metrics } : {}),
        }),
      );
    write();
    const gw = await startGateway(await loadGatewayFile(file), silentLogger, join(dir, 'gwsock2'));
    try {
      expect(gw.metricsPort).toBeUndefined();
      write({ listen: `127.0.0.1:${p1}` });
      expect((await gw.reload()).unchanged).toEqual(['dns']); // the apps keep running
      expect(
        sample((await get(p1, '/metrics')).body, 'metanet_gateway_app_up{app="dns",process="shared"}'),
      ).toBe(1);
      expect(sample((await get(p1, '/metrics')).body, 'metanet_dns_queries_total')).toBe(0);
      write({ listen: `127.0.0.1:${p1}`, allowGuest: true }); // same socket
      await gw.reload();
      expect(gw.metricsPort).toBe(p1);
      write({ listen: `127.0.0.1:${p2}` });
      await gw.reload();
      expect(gw.metricsPort).toBe(p2);
      await expect(get(p1, '/metrics')).rejects.toThrow();
      expect((await get(p2, '/metrics')).status).toBe(200);
      write();
      await gw.reload();
      expect(gw.metricsPort).toBeUndefined();
      await expect(get(p2, '/metrics')).rejects.toThrow();
    } finally {
      await gw.close();
    }
  });

  it('the gateway’s, the IPC layer’s and each app’s families on one endpoint; gone at close', async () => {
    const port = await freeTcpPort();
    const config = await loadGateway(
      {
        networks: { lan: { role: 'lan', device: 'lo', address: '127.0.0.1/8' } },
        upstreamDns: ['127.0.0.9'],
        stateDir: join(dir, 'state'),
        apps: { dns: { port: 0 } },
        metrics: { listen: `127.0.0.1:${port}` },
      },
      join(dir, 'gw.json'),
    );
    const gw = await startGateway(config, silentLogger, join(dir, 'gwsock'));
    try {
      expect(gw.metricsPort).toBe(port);
      const r = await get(port, '/metrics');
      expect(r.status).toBe(200);
      expect(sample(r.body, 'metanet_gateway_app_up{app="dns",process="shared"}')).toBe(1);
      expect(sample(r.body, 'metanet_dns_queries_total')).toBe(0);
      expect(r.body).toMatch(/^metanet_ipc_frames_received_total\{daemon="gateway"\} \d+$/m);
      expect(r.body).toMatch(/^metanet_ipc_peers\{daemon="dns"\} 0$/m);
      expect(r.body).not.toContain('metanet_portal_guests_online '); // no portal here
      expect(r.body).toMatch(/^nodejs_eventloop_lag_seconds /m);
    } finally {
      await gw.close();
    }
    await expect(get(port, '/metrics')).rejects.toThrow();
  });
});
