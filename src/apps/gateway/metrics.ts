import { createServer, type Server } from 'node:http';
import type { Counter, Gauge, Metric, Registry } from 'prom-client';
import { MetanetError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { type Message, type MessageInit, typed } from '../../core/message.js';
import type { Daemon } from '../../ipc/daemon.js';
import { type Cidr, inCidr, ipToInt, isIPv4 } from '../../services/dhcp/ip.js';
import type {
  HistogramFamily,
  HistogramSample,
  MetricFamily,
  MetricSample,
  MetricValue,
  ScalarFamily,
} from '../app.js';

/** prom-client's default gauges whose names end in `_total`. */
const NOT_COUNTERS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

/**
 * The gateway's Prometheus metrics (docs/metrics.md): one registry holding Node's process metrics
 * (prom-client's default collectors: event-loop lag, memory, GC, handles, CPU) and the families
 * the host and the apps register, each read at scrape time from counters kept anyway. prom-client
 * is imported here only, and only when the config has `metrics`: a gateway without it never
 * loads it (LAB-NOTES "Memory per import").
 */
export class GatewayMetrics {
  /** Family names by owner (an app's name, or `gateway`), to remove them when the owner stops. */
  private readonly owners = new Map<string, Set<string>>();
  /**
   * One prom-client metric per name, read from every owner that registered the name: the IPC
   * families are the gateway's and each own-process app's (`daemon` label), all in one family.
   */
  private readonly entries = new Map<string, { spec: MetricFamily; sources: Map<string, MetricFamily> }>();
  /** Run before each scrape, its failure logged: the host asks its own-process apps then. */
  beforeScrape: (() => Promise<void>) | undefined;

  private constructor(
    private readonly prom: typeof import('prom-client'),
    readonly registry: Registry,
    private readonly log: Logger,
  ) {}

  static async create(log: Logger): Promise<GatewayMetrics> {
    const prom = await import('prom-client');
    const registry = new prom.Registry();
    prom.collectDefaultMetrics({ register: registry });
    // Gauges named like counters (promtool's lint refuses them); each is the sum of the same
    // name without `_total`, by type, which stays.
    for (const name of NOT_COUNTERS) registry.removeSingleMetric(name);
    return new GatewayMetrics(prom, registry, log);
  }

  /**
   * Register `owner`'s families (an owner registers once; `remove` before registering again). A
   * name another owner registered adds this owner's samples to it when type and labels agree;
   * otherwise EFAIL, nothing of `owner` registered.
   */
  add(owner: string, families: readonly MetricFamily[]): void {
    if (this.owners.has(owner)) throw new MetanetError('EFAIL', `metrics of ${owner} are already registered`);
    for (const f of families) {
      const why = this.clash(f);
      if (why) throw new MetanetError('EFAIL', `metrics of ${owner}: ${why}`);
    }
    this.owners.set(owner, new Set());
    this.extend(owner, families);
  }

  /**
   * Register those of `families` that `owner` has not registered yet (an app in its own process:
   * its families are known from its answers); one that clashes with another owner's is logged and
   * left out.
   */
  extend(owner: string, families: readonly MetricFamily[]): void {
    let names = this.owners.get(owner);
    if (!names) this.owners.set(owner, (names = new Set()));
    for (const f of families) {
      if (names.has(f.name)) continue;
      const why = this.clash(f);
      if (why) {
        this.log.log('warn', 'metrics: a family left out', { owner, error: why });
        continue;
      }
      const e = this.entries.get(f.name);
      if (e) e.sources.set(owner, f);
      else {
        const entry = { spec: f, sources: new Map([[owner, f]]) };
        this.entries.set(f.name, entry);
        this.family(entry.spec, entry.sources);
      }
      names.add(f.name);
    }
  }

  /** Unregister what `owner` registered (it stopped). */
  remove(owner: string): void {
    for (const name of this.owners.get(owner) ?? []) {
      const e = this.entries.get(name);
      e?.sources.delete(owner);
      if (e?.sources.size === 0) {
        this.registry.removeSingleMetric(name);
        this.entries.delete(name);
      }
    }
    this.owners.delete(owner);
  }

  /** Why `f` cannot join the family of its name already registered (type or labels differ). */
  private clash(f: MetricFamily): string | undefined {
    const e = this.entries.get(f.name);
    if (!e) return undefined;
    const labels = (x: MetricFamily): string =>
      (x.labels ?? []).join(',') + (x.type === 'histogram' ? ` buckets ${x.buckets.join(',')}` : '');
    if (e.spec.type === f.type && labels(e.spec) === labels(f)) return undefined;
    return `${f.name} is already registered as a ${e.spec.type} with labels [${labels(e.spec)}], not a ${f.type} with [${labels(f)}]`;
  }

  /** The text exposition format (what GET /metrics answers). */
  async text(): Promise<string> {
    await this.beforeScrape?.().catch((e: unknown) =>
      this.log.log('warn', 'metrics: asking the apps before the scrape failed', { error: e }),
    );
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** One family as a prom-client metric whose `collect` asks each of its sources at scrape time. */
  private family(f: MetricFamily, sources: ReadonlyMap<string, MetricFamily>): void {
    const log = this.log;
    const read = async <T>(src: { collect(): T | Promise<T> }): Promise<T | []> => {
      try {
        return await src.collect();
      } catch (e) {
        log.log('warn', 'metrics: a family failed to collect; left out of this scrape', {
          metric: f.name,
          error: e,
        });
        return [];
      }
    };
    if (f.type === 'histogram') {
      const hs = sources as ReadonlyMap<string, HistogramFamily>;
      this.registry.registerMetric(
        histogramMetric(f, async () => (await Promise.all([...hs.values()].map(read))).flat()),
      );
      return;
    }
    const ss = sources as ReadonlyMap<string, ScalarFamily>;
    const config = {
      name: f.name,
      help: f.help,
      labelNames: [...(f.labels ?? [])],
      registers: [this.registry],
    };
    if (f.type === 'counter')
      new this.prom.Counter({
        ...config,
        async collect(this: Counter) {
          const vs = await Promise.all([...ss.values()].map(read));
          this.reset();
          // reset() leaves a label-less counter at 0; inc() adds the current total to it
          let n = 0;
          for (const v of vs)
            n += each(v, (labels, value) => (labels ? this.inc(labels, value) : this.inc(value)));
          if (n === 0 && !f.labels?.length) this.remove({}); // no sample rather than a false 0
        },
      });
    else
      new this.prom.Gauge({
        ...config,
        async collect(this: Gauge) {
          const vs = await Promise.all([...ss.values()].map(read));
          this.reset();
          let n = 0;
          for (const v of vs)
            n += each(v, (labels, value) => (labels ? this.set(labels, value) : this.set(value)));
          if (n === 0 && !f.labels?.length) this.remove({});
        },
      });
  }
}

/**
 * A histogram family as a metric prom-client's registry renders (its `get()`): `_bucket` per bound
 * and `+Inf` (cumulated), `_sum` and `_count` per label set, from the samples `read` gives.
 */
function histogramMetric(f: HistogramFamily, read: () => Promise<readonly HistogramSample[]>): Metric {
  const le = [...f.buckets.map((b) => String(b)), '+Inf'];
  return {
    name: f.name,
    help: f.help,
    type: 'histogram',
    async get() {
      const values = [];
      for (const s of await read()) {
        if (!Number.isFinite(s.sum) || s.counts.some((c) => !Number.isFinite(c))) continue;
        let total = 0;
        for (let i = 0; i < le.length; i++) {
          total += s.counts[i] ?? 0;
          values.push({ metricName: `${f.name}_bucket`, labels: { ...s.labels, le: le[i]! }, value: total });
        }
        values.push({ metricName: `${f.name}_sum`, labels: s.labels, value: s.sum });
        values.push({ metricName: `${f.name}_count`, labels: s.labels, value: total });
      }
      return { name: f.name, help: f.help, type: 'histogram', values, aggregator: 'sum' };
    },
  } as unknown as Metric;
}

/** Hand each finite sample of `v` to `fn`; how many there were. */
function each(
  v: MetricValue,
  fn: (labels: MetricSample['labels'] | undefined, value: number) => void,
): number {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return 0;
    fn(undefined, v);
    return 1;
  }
  let n = 0;
  for (const s of v)
    if (Number.isFinite(s.value)) {
      fn(s.labels, s.value);
      n++;
    }
  return n;
}

/**
 * The reply of `/<app>/metrics`: one `family` list per family — `name`, `help`, `type`, one `label`
 * str per label name, for a histogram one `bucket` float per bound, one `sample` list per sample:
 * `value` float (a histogram: `sum` float and one `count` float per bucket, the last above the
 * highest bound), then one `label` str per label value, in the order of the names. A family whose
 * collection fails is left out (and logged).
 */
export async function familiesMessage(families: readonly MetricFamily[], log?: Logger): Promise<MessageInit> {
  const out = [];
  for (const f of families) {
    const names = f.labels ?? [];
    const labelsOf = (x: { labels: Readonly<Record<string, string>> }): string[] =>
      names.map((n) => (x.labels as Record<string, string | undefined>)[n] ?? '');
    try {
      const head = { name: f.name, help: f.help, type: f.type, label: [...names] };
      if (f.type === 'histogram') {
        const samples = await f.collect();
        out.push({
          ...head,
          bucket: f.buckets.map((b) => typed.float(b)),
          sample: samples.map((x) => ({
            sum: typed.float(x.sum),
            count: x.counts.map((c) => typed.float(c)),
            label: labelsOf(x),
          })),
        });
        continue;
      }
      const v = await f.collect();
      const samples = typeof v === 'number' ? [{ labels: {}, value: v }] : v;
      out.push({
        ...head,
        sample: samples
          .filter((x) => Number.isFinite(x.value))
          .map((x) => ({ value: typed.float(x.value), label: labelsOf(x) })),
      });
    } catch (e) {
      log?.log('warn', 'metrics: a family failed to collect; left out of this answer', {
        metric: f.name,
        error: e,
      });
    }
  }
  return { family: out };
}

/** One family as `/<app>/metrics` answered it: what it is, and its samples then. */
export type AnsweredFamily =
  | { readonly family: Omit<ScalarFamily, 'collect'>; readonly value: MetricValue }
  | { readonly family: Omit<HistogramFamily, 'collect'>; readonly value: readonly HistogramSample[] };

/** Read a `/<app>/metrics` answer (EPROTO when it is not one). */
export function familiesFrom(m: Message): AnsweredFamily[] {
  return m.all('family').map((t): AnsweredFamily => {
    if (t.type !== 'list') throw new MetanetError('EPROTO', 'metrics answer: a family is not a list');
    const f = t.value;
    const name = f.str('name');
    const help = f.str('help');
    const type = f.str('type');
    const labels = f.all('label').map((l) => String(l.value));
    const samples = f.all('sample').map((s) => {
      if (s.type !== 'list')
        throw new MetanetError('EPROTO', `metrics answer: a sample of ${name} is not a list`);
      const values = s.value.all('label').map((l) => String(l.value));
      return { x: s.value, labels: Object.fromEntries(labels.map((n, i) => [n, values[i] ?? ''])) };
    });
    if (type === 'histogram') {
      const buckets = f.all('bucket').map((b) => Number(b.value));
      const value = samples.map(({ x, labels: l }) => ({
        labels: l,
        sum: x.float('sum'),
        counts: x.all('count').map((c) => Number(c.value)),
      }));
      return { family: { name, help, type, labels, buckets }, value };
    }
    if (type !== 'counter' && type !== 'gauge')
      throw new MetanetError('EPROTO', `metrics answer: family ${name} has type ${type}`);
    const scalar = samples.map(({ x, labels: l }) => ({ labels: l, value: x.float('value') }));
    const value: MetricValue = labels.length === 0 ? (scalar[0]?.value ?? Number.NaN) : scalar;
    return { family: { name, help, type, labels }, value };
  });
}

/** An answered family as one the registry reads: its samples are `latest()` (none when undefined). */
export function answeredFamily(a: AnsweredFamily, latest: () => AnsweredFamily | undefined): MetricFamily {
  if (a.family.type === 'histogram')
    return {
      ...a.family,
      collect: (): readonly HistogramSample[] => {
        const l = latest();
        return l?.family.type === 'histogram' ? (l.value as readonly HistogramSample[]) : [];
      },
    };
  return {
    ...a.family,
    collect: () => {
      const l = latest();
      return l && l.family.type !== 'histogram' ? (l.value as MetricValue) : [];
    },
  };
}

/** The IPC families of some daemons, one `daemon` label each (docs/metrics.md, "IPC, per daemon"). */
export function ipcFamilies(daemons: () => readonly { name: string; daemon: Daemon }[]): MetricFamily[] {
  const perDaemon = (read: (d: Daemon) => number) => (): MetricSample[] =>
    daemons().map((d) => ({ labels: { daemon: d.name }, value: read(d.daemon) }));
  const stats = (d: Daemon) => d.transport.stats;
  return [
    {
      name: 'metanet_ipc_frames_received_total',
      help: "Wire-protocol frames read from the daemon's connections (docs/wire-protocol.md).",
      type: 'counter',
      labels: ['daemon'],
      collect: perDaemon((d) => stats(d).framesIn),
    },
    {
      name: 'metanet_ipc_frames_sent_total',
      help: "Wire-protocol frames queued to the daemon's connections.",
      type: 'counter',
      labels: ['daemon'],
      collect: perDaemon((d) => stats(d).framesOut),
    },
    {
      name: 'metanet_ipc_errors_total',
      help:
        'IPC errors: refused = a request answered with an ERROR (the connection stays); protocol = a ' +
        'connection closed after a protocol error or a stalled peer; slow_peer = a peer cut for not reading.',
      type: 'counter',
      labels: ['daemon', 'kind'],
      collect: () =>
        daemons().flatMap((d) => {
          const s = stats(d.daemon);
          return [
            { labels: { daemon: d.name, kind: 'refused' }, value: s.refused },
            { labels: { daemon: d.name, kind: 'protocol' }, value: s.broken },
            { labels: { daemon: d.name, kind: 'slow_peer' }, value: s.slow },
          ];
        }),
    },
    {
      name: 'metanet_ipc_peers',
      help: 'Connections open now (processes and daemons connected, either direction).',
      type: 'gauge',
      labels: ['daemon'],
      collect: perDaemon((d) => d.transport.peers().count),
    },
    {
      name: 'metanet_ipc_queued_bytes',
      help: "Bytes written to the daemon's connections and not yet taken by the kernel.",
      type: 'gauge',
      labels: ['daemon'],
      collect: perDaemon((d) => d.transport.peers().queuedBytes),
    },
  ];
}

function cidr(address: string, prefix: number): Cidr {
  const mask = prefix === 0 ? 0 : ~(0xffffffff >>> prefix) >>> 0;
  const network = (ipToInt(address) & mask) >>> 0;
  return { network, prefix, mask, broadcast: (network | ~mask) >>> 0 };
}

export interface MetricsServer {
  /** Where it listens (the port the kernel gave, for port 0). */
  readonly address: string;
  readonly port: number;
  /** Replace the subnets whose hosts are refused (a reload). */
  deny(subnets: readonly string[]): void;
  close(): Promise<void>;
}

/**
 * Serve `GET /metrics` (and HEAD) on `address:port` with plain node:http; every other path is
 * 404, other methods 405. Rejects (EFAIL) when the address cannot be bound.
 */
export async function serveMetrics(
  metrics: GatewayMetrics,
  at: { readonly address: string; readonly port: number; readonly deny?: readonly string[] },
  log: Logger,
): Promise<MetricsServer> {
  const parse = (subnets: readonly string[]): Cidr[] =>
    subnets.map((s) => {
      const [a, p] = s.split('/') as [string, string];
      return cidr(a, Number(p));
    });
  let denied = parse(at.deny ?? []);
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('not found: metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('method not allowed\n');
      return;
    }
    metrics.text().then(
      (text) => {
        res.writeHead(200, { 'Content-Type': metrics.contentType, 'Cache-Control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (e: unknown) => {
        log.log('error', 'metrics: scrape failed', { error: e });
        res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
        res.end('metrics failed\n');
      },
    );
  });
  // A host of a denied subnet (a guest) gets no answer at all, whichever address it dialled.
  server.on('connection', (sock) => {
    if (denied.length === 0) return;
    const ip = (sock.remoteAddress ?? '').replace(/^::ffff:/, '');
    if (isIPv4(ip) && denied.some((c) => inCidr(c, ipToInt(ip)))) {
      log.log('debug', 'metrics: connection from a denied network closed', { from: ip });
      sock.destroy();
    }
  });
  server.keepAliveTimeout = 5000;
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) =>
      reject(
        new MetanetError('EFAIL', `metrics: cannot listen on ${at.address}:${at.port}: ${e.message}`, {
          cause: e,
        }),
      ),
    );
    server.listen(at.port, at.address, () => resolve());
  });
  server.on('error', (e) => log.log('error', 'metrics: server error', { error: e }));
  const a = server.address();
  const port = typeof a === 'object' && a ? a.port : at.port;
  log.log('info', 'metrics served', { url: `http://${at.address}:${port}/metrics` });
  return {
    address: at.address,
    port,
    deny: (subnets) => {
      denied = parse(subnets);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
