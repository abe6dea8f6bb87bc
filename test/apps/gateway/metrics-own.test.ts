import { type ChildProcess, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MetricFamily } from '../../../src/apps/app.js';
import { loadGateway } from '../../../src/apps/gateway/config.js';
import { startGateway } from '../../../src/apps/gateway/host.js';
import {
  answeredFamily,
  familiesFrom,
  familiesMessage,
  GatewayMetrics,
} from '../../../src/apps/gateway/metrics.js';
import { Bus } from '../../../src/core/bus.js';
import { silentLogger } from '../../../src/core/log.js';
import { Message } from '../../../src/core/message.js';
import { attachClient } from '../../../src/ipc/daemon.js';
import { ROOT, runTs, stop } from '../../support/daemons.js';
import { have } from '../../support/env.js';
import { until, waitForLine } from '../../support/wait.js';
import { query } from '../dns/fake.js';

/**
 * Metrics of an app in its own process (docs/metrics.md, "Apps in their own process"): `metanet
 * up` asks the child's `/<app>/metrics` at each scrape and serves its families under the same
 * names as a shared app's; a child that does not answer costs its own metrics only, counted. And
 * `metanet app NAME --metrics ADDR:PORT`, an app run alone serving /metrics itself. Real
 * processes (the CLI under tsx) on loopback; no namespaces, no root.
 */

const dir = mkdtempSync(join(tmpdir(), 'mn-metrics-own-'));
const children: ChildProcess[] = [];
afterAll(async () => {
  await Promise.all(children.map((c) => stop(c, 'SIGKILL')));
  rmSync(dir, { recursive: true, force: true });
});

/** The value of one sample (`name{labels}` exactly as written), or undefined. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n'))
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  return undefined;
}

/** The families of a text (its `# TYPE` lines) whose names start with one of `prefixes`: name → type. */
function types(text: string, prefixes: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm))
    if (prefixes.some((p) => m[1]!.startsWith(p))) out[m[1]!] = m[2]!;
  return out;
}

function get(port: number, path = '/metrics'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const r = request({ host: '127.0.0.1', port, path }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    r.on('error', reject);
    r.end();
  });
}

async function scrape(port: number): Promise<string> {
  const r = await get(port);
  expect(r.status).toBe(200);
  return r.body;
}

async function freeTcpPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const a = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return typeof a === 'object' && a ? a.port : 0;
}

/** One DNS query over UDP to 127.0.0.1:port, without waiting for the answer (its upstream is absent). */
async function dnsQuery(port: number): Promise<void> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve, reject) =>
    s.send(query('www.example.test'), port, '127.0.0.1', (e) => (e ? reject(e) : resolve())),
  );
  s.close();
}

/** A gateway config on loopback: the DNS forwarder (`process` shared or own), metrics on `port`. */
function gatewayConfig(process: 'shared' | 'own', metricsPort: number, state: string) {
  return {
    networks: { lan: { role: 'lan', device: 'lo', address: '127.0.0.1/8' } },
    upstreamDns: ['127.0.0.9'],
    stateDir: join(dir, state),
    apps: { dns: { port: 0, process } },
    metrics: { listen: `127.0.0.1:${metricsPort}` },
  };
}

describe('GatewayMetrics: one family, several owners', () => {
  it('samples of the same name from two owners are one family; removing one keeps the other', async () => {
    const m = await GatewayMetrics.create(silentLogger);
    const peers = (daemon: string, value: number): MetricFamily => ({
      name: 'metanet_test_peers',
      help: 'Peers.',
      type: 'gauge',
      labels: ['daemon'],
      collect: () => [{ labels: { daemon }, value }],
    });
    m.add('gateway', [peers('gateway', 1)]);
    m.extend('dns', [peers('dns', 2)]);
    m.extend('dns', [peers('dns', 9)]); // already registered for dns: unchanged
    let t = await m.text();
    expect(t.match(/^# TYPE metanet_test_peers gauge$/gm)).toHaveLength(1);
    expect(sample(t, 'metanet_test_peers{daemon="gateway"}')).toBe(1);
    expect(sample(t, 'metanet_test_peers{daemon="dns"}')).toBe(2);
    // another type or other labels under that name: refused (add) or left out (extend)
    expect(() =>
      m.add('x', [
        { name: 'metanet_test_peers', help: 'P.', type: 'counter', labels: ['daemon'], collect: () => 0 },
      ]),
    ).toThrow(/already registered as a gauge/);
    m.extend('y', [{ name: 'metanet_test_peers', help: 'P.', type: 'gauge', collect: () => 5 }]);
    m.remove('dns');
    t = await m.text();
    expect(sample(t, 'metanet_test_peers{daemon="dns"}')).toBeUndefined();
    expect(sample(t, 'metanet_test_peers{daemon="gateway"}')).toBe(1);
    m.remove('gateway');
    expect(await m.text()).not.toContain('metanet_test_peers');
  });

  it('renders a histogram family: cumulated buckets, +Inf, sum and count per label set; promtool passes', async () => {
    const counts = [1, 0, 2, 1];
    const m = await GatewayMetrics.create(silentLogger);
    m.add('app', [
      {
        name: 'metanet_test_change_seconds',
        help: 'Changes.',
        type: 'histogram',
        labels: ['op'],
        buckets: [0.001, 0.01, 0.1],
        collect: () => [
          { labels: { op: 'allow' }, counts, sum: 0.25 },
          { labels: { op: 'deny' }, counts: [0, 0, 0, 0], sum: 0 },
        ],
      },
    ]);
    let t = await m.text();
    expect(t).toContain('# TYPE metanet_test_change_seconds histogram\n');
    expect(sample(t, 'metanet_test_change_seconds_bucket{op="allow",le="0.001"}')).toBe(1);
    expect(sample(t, 'metanet_test_change_seconds_bucket{op="allow",le="0.01"}')).toBe(1);
    expect(sample(t, 'metanet_test_change_seconds_bucket{op="allow",le="0.1"}')).toBe(3);
    expect(sample(t, 'metanet_test_change_seconds_bucket{op="allow",le="+Inf"}')).toBe(4);
    expect(sample(t, 'metanet_test_change_seconds_sum{op="allow"}')).toBe(0.25);
    expect(sample(t, 'metanet_test_change_seconds_count{op="allow"}')).toBe(4);
    expect(sample(t, 'metanet_test_change_seconds_count{op="deny"}')).toBe(0);
    if (have(['promtool'])) {
      const r = spawnSync('promtool', ['check', 'metrics'], { input: t, encoding: 'utf8' });
      expect(`${r.stdout}${r.stderr}`).toBe('');
      expect(r.status).toBe(0);
    }
    counts[0] = 5; // read at each scrape
    t = await m.text();
    expect(sample(t, 'metanet_test_change_seconds_count{op="allow"}')).toBe(8);
    // other buckets under the same name: refused
    expect(() =>
      m.add('x', [
        {
          name: 'metanet_test_change_seconds',
          help: 'C.',
          type: 'histogram',
          labels: ['op'],
          buckets: [1],
          collect: () => [],
        },
      ]),
    ).toThrow(/already registered/);
    m.remove('app');
    expect(await m.text()).not.toContain('metanet_test_change_seconds');
  });

  it('/<app>/metrics answers round-trip: names, types, labels and values', async () => {
    const families: MetricFamily[] = [
      { name: 'metanet_test_hits_total', help: 'Hits.', type: 'counter', collect: () => 3 },
      {
        name: 'metanet_test_free_addresses',
        help: 'Free.',
        type: 'gauge',
        labels: ['subnet', 'kind'],
        collect: async () => [
          { labels: { subnet: '10.0.0.0/24', kind: 'a' }, value: 0.5 },
          { labels: { kind: 'b', subnet: '10.1.0.0/24' }, value: 2 ** 40 },
        ],
      },
      {
        name: 'metanet_test_broken',
        help: 'Broken.',
        type: 'gauge',
        collect: () => {
          throw new Error('no');
        },
      },
      {
        name: 'metanet_test_change_seconds',
        help: 'Changes.',
        type: 'histogram',
        labels: ['op'],
        buckets: [0.001, 0.5],
        collect: () => [{ labels: { op: 'allow' }, counts: [1, 2, 3], sum: 7.5 }],
      },
    ];
    const back = familiesFrom(Message.from(await familiesMessage(families)));
    expect(back).toEqual([
      { family: { name: 'metanet_test_hits_total', help: 'Hits.', type: 'counter', labels: [] }, value: 3 },
      {
        family: {
          name: 'metanet_test_free_addresses',
          help: 'Free.',
          type: 'gauge',
          labels: ['subnet', 'kind'],
        },
        value: [
          { labels: { subnet: '10.0.0.0/24', kind: 'a' }, value: 0.5 },
          { labels: { subnet: '10.1.0.0/24', kind: 'b' }, value: 2 ** 40 },
        ],
      },
      {
        family: {
          name: 'metanet_test_change_seconds',
          help: 'Changes.',
          type: 'histogram',
          labels: ['op'],
          buckets: [0.001, 0.5],
        },
        value: [{ labels: { op: 'allow' }, counts: [1, 2, 3], sum: 7.5 }],
      },
    ]);
    // rendered from the answer (an own-process app) or from the families (a shared one): the same text
    const lines = async (fs: readonly MetricFamily[]): Promise<string[]> => {
      const m = await GatewayMetrics.create(silentLogger);
      m.add('app', fs);
      // label order within a sample is not significant: sorted
      const sorted = (l: string): string =>
        l.replace(/\{(.*)\}/, (_x, ls: string) => `{${ls.split(',').sort().join(',')}}`);
      return (await m.text())
        .split('\n')
        .filter((l) => l.includes('metanet_test_'))
        .map(sorted);
    };
    const own = await lines(back.map((a) => answeredFamily(a, () => a)));
    expect(own.length).toBeGreaterThan(10);
    expect(own).toEqual(await lines(families.filter((f) => f.name !== 'metanet_test_broken')));
  });
});

describe('metanet up: an app in its own process has its metrics on the one endpoint', () => {
  let up: ChildProcess;
  let metricsPort: number;
  let dnsPort: number;
  let bus: Bus;

  beforeAll(async () => {
    metricsPort = await freeTcpPort();
    const file = join(dir, 'gw-own.json');
    writeFileSync(file, JSON.stringify(gatewayConfig('own', metricsPort, 'state-own')));
    up = runTs(join(ROOT, 'src/cli/main.ts'), ['--dir', join(dir, 'sock-own'), 'up', '--config', file]);
    children.push(up);
    dnsPort = Number((await waitForLine(up, /^\[dns\] dns ready \d+$/, 20_000)).split(' ').pop());
    await waitForLine(up, /^gateway ready: dns/, 20_000);
    bus = new Bus({ name: `metrics-own-${process.pid}`, logger: silentLogger });
    attachClient(bus, { dir: join(dir, 'sock-own') });
  }, 45_000);

  afterAll(async () => {
    await bus?.close(100);
    if (up) await stop(up);
  });

  it("the child's families are scraped, and follow its traffic", async () => {
    let t = await scrape(metricsPort);
    expect(sample(t, 'metanet_gateway_app_up{app="dns",process="own"}')).toBe(1);
    expect(sample(t, 'metanet_dns_queries_total')).toBe(0);
    expect(sample(t, 'metanet_ipc_peers{daemon="dns"}')).toBeGreaterThanOrEqual(1); // the gateway asking
    expect(sample(t, 'metanet_ipc_peers{daemon="gateway"}')).toBeGreaterThanOrEqual(0);
    expect(sample(t, 'metanet_gateway_app_scrape_errors_total{app="dns"}')).toBe(0);
    if (have(['promtool'])) {
      const r = spawnSync('promtool', ['check', 'metrics'], { input: t, encoding: 'utf8' });
      expect(`${r.stdout}${r.stderr}`).toBe('');
      expect(r.status).toBe(0);
    }

    await dnsQuery(dnsPort);
    await dnsQuery(dnsPort);
    t = String(
      await until(
        async () => {
          const x = await scrape(metricsPort);
          return sample(x, 'metanet_dns_queries_total') === 2 ? x : undefined;
        },
        'two DNS queries counted in the child',
        5000,
      ),
    );
    expect(sample(t, 'metanet_ipc_frames_received_total{daemon="dns"}')).toBeGreaterThan(0);
    // every metanet family served is in docs/metrics.md, and so is the mailbox asked
    const doc = readFileSync(join(ROOT, 'docs/metrics.md'), 'utf8');
    for (const name of Object.keys(types(t, ['metanet_']))) expect(doc, name).toContain(`\`${name}\``);
    expect(doc).toContain('`/<app>/metrics`');
  });

  it('a child that does not answer costs its own metrics only, counted; back when it answers', async () => {
    const status = await bus.request('gateway:/gateway/status', {});
    const pid = (status.all('app').map((a) => a.value as Message)[0] as Message).int('pid');
    expect(pid).toBeGreaterThan(0);
    process.kill(pid, 'SIGSTOP');
    try {
      const t0 = performance.now();
      const t = await scrape(metricsPort);
      expect(performance.now() - t0).toBeLessThan(5000);
      expect(sample(t, 'metanet_dns_queries_total')).toBeUndefined();
      expect(sample(t, 'metanet_ipc_peers{daemon="dns"}')).toBeUndefined();
      expect(sample(t, 'metanet_gateway_app_scrape_errors_total{app="dns"}')).toBe(1);
      expect(sample(t, 'metanet_gateway_app_up{app="dns",process="own"}')).toBe(1);
      expect(t).toMatch(/^nodejs_eventloop_lag_seconds /m); // the rest is served
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    const t = String(
      await until(
        async () => {
          const x = await scrape(metricsPort);
          return sample(x, 'metanet_dns_queries_total') !== undefined ? x : undefined;
        },
        'the child answering again',
        5000,
      ),
    );
    expect(sample(t, 'metanet_dns_queries_total')).toBe(2);
    expect(sample(t, 'metanet_gateway_app_scrape_errors_total{app="dns"}')).toBe(1);
  });

  it('the same families, names, types and labels as the app shared in the process', async () => {
    const port = await freeTcpPort();
    const config = await loadGateway(
      gatewayConfig('shared', port, 'state-shared'),
      join(dir, 'gw-shared.json'),
    );
    const gw = await startGateway(config, silentLogger, join(dir, 'sock-shared'));
    let shared: string;
    const client = new Bus({ name: `metrics-shared-${process.pid}`, logger: silentLogger });
    try {
      shared = await scrape(port);
      // a shared app's daemon answers /<app>/metrics too
      attachClient(client, { dir: join(dir, 'sock-shared') });
      const answered = familiesFrom(await client.request('dns:/dns/metrics', {}));
      expect(answered.find((a) => a.family.name === 'metanet_dns_queries_total')?.value).toBe(0);
      expect(answered.find((a) => a.family.name === 'metanet_ipc_peers')?.value).toEqual([
        { labels: { daemon: 'dns' }, value: 1 },
      ]);
    } finally {
      await client.close(100);
      await gw.close();
    }
    const own = await scrape(metricsPort);
    const prefixes = ['metanet_dns_', 'metanet_ipc_'];
    expect(Object.keys(types(shared, prefixes)).length).toBeGreaterThan(10);
    expect(types(own, prefixes)).toEqual(types(shared, prefixes));
    for (const series of [
      'metanet_dns_cache_entries',
      'metanet_ipc_errors_total{daemon="dns",kind="refused"}',
      'metanet_ipc_queued_bytes{daemon="dns"}',
    ]) {
      expect(sample(shared, series), series).toBeDefined();
      expect(sample(own, series), series).toBeDefined();
    }
  });
});

describe('metanet app NAME --metrics ADDR:PORT', () => {
  it('serves /metrics itself: the app, its daemon and its process; follows its traffic', async () => {
    const metricsPort = await freeTcpPort();
    const file = join(dir, 'gw-alone.json');
    writeFileSync(file, JSON.stringify(gatewayConfig('shared', 9, 'state-alone')));
    const app = runTs(join(ROOT, 'src/cli/main.ts'), [
      '--dir',
      join(dir, 'sock-alone'),
      'app',
      'dns',
      '--config',
      file,
      '--metrics',
      `127.0.0.1:${metricsPort}`,
    ]);
    children.push(app);
    try {
      const dnsPort = Number((await waitForLine(app, /^dns ready \d+$/, 20_000)).split(' ').pop());
      let t = await scrape(metricsPort);
      expect(sample(t, 'metanet_dns_queries_total')).toBe(0);
      expect(sample(t, 'metanet_ipc_peers{daemon="dns"}')).toBe(0);
      expect(t).toMatch(/^process_resident_memory_bytes \d+/m);
      expect(t).not.toContain('metanet_gateway_'); // no gateway here
      await dnsQuery(dnsPort);
      t = String(
        await until(
          async () => {
            const x = await scrape(metricsPort);
            return sample(x, 'metanet_dns_queries_total') === 1 ? x : undefined;
          },
          'the query counted',
          5000,
        ),
      );
      if (have(['promtool'])) {
        const r = spawnSync('promtool', ['check', 'metrics'], { input: t, encoding: 'utf8' });
        expect(`${r.stdout}${r.stderr}`).toBe('');
      }
    } finally {
      await stop(app);
    }
  }, 30_000);

  it("refuses an address the gateway's rule refuses, naming --metrics (exit 1)", async () => {
    const file = join(dir, 'gw-refused.json');
    writeFileSync(file, JSON.stringify(gatewayConfig('shared', 9, 'state-refused')));
    const app = runTs(join(ROOT, 'src/cli/main.ts'), [
      '--dir',
      join(dir, 'sock-refused'),
      'app',
      'dns',
      '--config',
      file,
      '--metrics',
      '192.0.2.1:9100',
    ]);
    children.push(app);
    const line = await waitForLine(app, /--metrics/, 20_000);
    expect(line).toMatch(/--metrics: 192\.0\.2\.1 is not the router's address on any network/);
    const code = await new Promise<number | null>((r) =>
      app.exitCode !== null ? r(app.exitCode) : app.once('exit', (c) => r(c)),
    );
    expect(code).toBe(1);
  }, 30_000);
});
