import { createServer, type Server } from 'node:http';
import type { Counter, Gauge, Registry } from 'prom-client';
import { MetanetError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { type Cidr, inCidr, ipToInt, isIPv4 } from '../../services/dhcp/ip.js';
import type { MetricFamily, MetricSample, MetricValue } from '../app.js';

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
  /** Families by owner (an app's name, or `gateway`), to remove them when the owner stops. */
  private readonly owners = new Map<string, string[]>();

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

  /** Register `owner`'s families (an owner registers once; `remove` before registering again). */
  add(owner: string, families: readonly MetricFamily[]): void {
    if (this.owners.has(owner)) throw new MetanetError('EFAIL', `metrics of ${owner} are already registered`);
    const names: string[] = [];
    this.owners.set(owner, names);
    for (const f of families) {
      this.family(f);
      names.push(f.name);
    }
  }

  /** Unregister what `owner` registered (it stopped). */
  remove(owner: string): void {
    for (const name of this.owners.get(owner) ?? []) this.registry.removeSingleMetric(name);
    this.owners.delete(owner);
  }

  /** The text exposition format (what GET /metrics answers). */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** One family as a prom-client metric whose `collect` asks the family at scrape time. */
  private family(f: MetricFamily): void {
    const log = this.log;
    const read = async (): Promise<MetricValue> => {
      try {
        return await f.collect();
      } catch (e) {
        log.log('warn', 'metrics: a family failed to collect; left out of this scrape', {
          metric: f.name,
          error: e,
        });
        return [];
      }
    };
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
          const v = await read();
          this.reset();
          // reset() leaves a label-less counter at 0; inc() adds the current total to it
          const n = each(v, (labels, value) => (labels ? this.inc(labels, value) : this.inc(value)));
          if (n === 0 && !f.labels?.length) this.remove({}); // no sample rather than a false 0
        },
      });
    else
      new this.prom.Gauge({
        ...config,
        async collect(this: Gauge) {
          const v = await read();
          this.reset();
          const n = each(v, (labels, value) => (labels ? this.set(labels, value) : this.set(value)));
          if (n === 0 && !f.labels?.length) this.remove({});
        },
      });
  }
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
