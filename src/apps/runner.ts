import { parseArgs } from 'node:util';
import { Bus } from '../core/bus.js';
import { isMetanetError, MetanetError } from '../core/errors.js';
import { STOP } from '../core/listener.js';
import type { Logger } from '../core/log.js';
import { type Daemon, serveDaemon } from '../ipc/daemon.js';
import { isIPv4 } from '../services/dhcp/ip.js';
import { type App, type AppHandle, ConfigError, type MetricFamily } from './app.js';
import { readConfigFile } from './configfile.js';
import type { MetricsAt } from './gateway/config.js';

/** Exit codes of an app process and of `metanet up` (docs/gateway.md). */
export const APP_EXIT = { ok: 0, config: 1, start: 2 } as const;

export interface RunOptions {
  /** Arguments (default: process.argv after the script). */
  readonly argv?: readonly string[];
  /** Called once the app serves, before the ready line (extra listeners, output). */
  onStarted?(bus: Bus, handle: AppHandle): void;
}

/**
 * Run one app as its own process — what every `src/apps/<name>/main.ts` is:
 * `main.js --config FILE [--dir SOCKDIR] [--metrics ADDR:PORT]`. FILE is the app's own config, or a
 * whole gateway config (one with `networks`), from which this app's section is taken. Serves the
 * app's bus as daemon `<name>` (with `/<name>/metrics`, what `metanet up` asks at each scrape),
 * prints `<name> ready` on stdout, stops cleanly on SIGINT/SIGTERM (state on disk first).
 * `--metrics` also serves Prometheus `/metrics` there (docs/metrics.md, "An app run alone").
 * A bad config exits 1 naming every bad field; a failure to start exits 2.
 */
export async function runApp<C>(app: App<C>, options: RunOptions = {}): Promise<void> {
  const fail = (code: number, e: unknown): never => {
    process.stderr.write(`${app.name}: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(code);
  };
  let file: string;
  let dir: string | undefined;
  let listen: string | undefined;
  try {
    const { values } = parseArgs({
      args: options.argv ? [...options.argv] : process.argv.slice(2),
      options: {
        config: { type: 'string', short: 'c' },
        dir: { type: 'string' },
        metrics: { type: 'string' },
      },
      strict: true,
    });
    if (!values.config)
      throw new Error(`usage: ${app.name} --config FILE [--dir SOCKDIR] [--metrics ADDR:PORT]`);
    file = values.config;
    dir = values.dir;
    listen = values.metrics;
  } catch (e) {
    return fail(APP_EXIT.config, e);
  }
  let config: C;
  let metricsAt: MetricsAt | undefined;
  try {
    config = await loadAppConfig(app, file);
    if (listen !== undefined) metricsAt = await appMetricsAt(file, listen);
  } catch (e) {
    return fail(APP_EXIT.config, e);
  }
  const bus = new Bus({ name: app.name });
  let handle: AppHandle;
  let daemon: Awaited<ReturnType<typeof serveDaemon>>;
  try {
    // The socket first: an app reaches other daemons (the portal follows dhcpd) through it.
    daemon = await serveDaemon(bus, { dir, signals: false });
    handle = await app.start(bus, config, { dir, log: bus.log });
  } catch (e) {
    return fail(isMetanetError(e, 'ECONFIG') ? APP_EXIT.config : APP_EXIT.start, e);
  }
  const families = appFamilies(app.name, handle, daemon);
  serveAppMetrics(bus, app.name, families);
  let metricsServer: { close(): Promise<void> } | undefined;
  if (metricsAt) {
    try {
      metricsServer = await serveAlone(app.name, await families(), metricsAt, bus.log);
    } catch (e) {
      await handle.close().catch(() => {});
      return fail(APP_EXIT.start, e);
    }
  }
  options.onStarted?.(bus, handle);
  process.stdout.write(`${app.name} ready${handle.readyNote ? ` ${handle.readyNote}` : ''}\n`);
  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    bus.log.log('info', `${app.name} stopping`, { signal });
    await handle
      .close()
      .catch((e: unknown) => bus.log.log('error', `${app.name}: close failed`, { error: e }));
    await metricsServer?.close();
    await Promise.all([daemon.close(), daemon.transport.close()]);
    await bus.close(200);
    process.exit(APP_EXIT.ok);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

/** An app's config from a file: its own format, or its section of a gateway config. */
export async function loadAppConfig<C>(app: App<C>, file: string): Promise<C> {
  const raw = readConfigFile(file);
  if (typeof raw === 'object' && raw !== null && 'networks' in raw) {
    const { loadGateway } = await import('./gateway/config.js');
    const hosted = (await loadGateway(raw, file)).apps.find((a) => a.name === app.name);
    if (!hosted)
      throw new MetanetError('ECONFIG', `${file}: apps.${app.name} is not configured (or not enabled)`);
    return hosted.config as C;
  }
  try {
    return app.parse(raw);
  } catch (e) {
    if (e instanceof Error) e.message = `${file}: ${e.message}`;
    throw e;
  }
}

/**
 * An app's families and its daemon's IPC families, asked of the app once (`handle.metrics()`, at
 * the first call: nothing is built before metrics are wanted).
 */
export function appFamilies(
  name: string,
  handle: AppHandle,
  daemon: Daemon,
): () => Promise<readonly MetricFamily[]> {
  let families: Promise<readonly MetricFamily[]> | undefined;
  return () => {
    families ??= import('./gateway/metrics.js').then((m) => [
      ...(handle.metrics?.() ?? []),
      ...m.ipcFamilies(() => [{ name, daemon }]),
    ]);
    families.catch(() => {
      families = undefined; // asked again next time
    });
    return families;
  };
}

/** The mailbox on an app's daemon that answers its families' samples now (docs/metrics.md). */
export const metricsMailbox = (app: string): string => `/${app}/metrics`;

/**
 * Answer `/<name>/metrics` on the app's bus with `families`' samples read now (docs/metrics.md):
 * what `metanet up` asks an app in its own process at each scrape; any process may ask it too.
 */
export function serveAppMetrics(
  bus: Bus,
  name: string,
  families: () => Promise<readonly MetricFamily[]>,
): void {
  bus.append(metricsMailbox(name), async (_m, ctx) => {
    try {
      const m = await import('./gateway/metrics.js');
      await ctx.reply(await m.familiesMessage(await families(), bus.log));
    } catch (e) {
      await ctx.reply({ error: e instanceof Error ? e.message : String(e) });
    }
    return STOP;
  });
}

/** Serve Prometheus /metrics for an app run alone: Node's process figures, the app's and its IPC families. */
async function serveAlone(
  name: string,
  families: readonly MetricFamily[],
  at: MetricsAt,
  log: Logger,
): Promise<{ close(): Promise<void> }> {
  const { GatewayMetrics, serveMetrics } = await import('./gateway/metrics.js');
  const registry = await GatewayMetrics.create(log);
  registry.add(name, families);
  return serveMetrics(registry, at, log);
}

/**
 * Where `--metrics ADDR:PORT` serves: with a gateway config, the gateway's rule for
 * `metrics.listen` (loopback or the router's address on a lan network; `allowGuest` of the file's
 * `metrics` counts; guest subnets refused); with an app's own config, loopback only.
 */
async function appMetricsAt(file: string, listen: string): Promise<MetricsAt> {
  const raw = readConfigFile(file);
  const bad = (message: string): never => {
    throw new ConfigError([{ path: '--metrics', message }], file);
  };
  if (typeof raw === 'object' && raw !== null && 'networks' in raw) {
    const { loadGateway } = await import('./gateway/config.js');
    const was = (raw as { metrics?: unknown }).metrics;
    const metrics = { ...(typeof was === 'object' && was !== null ? was : {}), listen };
    try {
      const at = (await loadGateway({ ...raw, metrics }, file)).metrics;
      if (!at) return bad(`${listen}: not served`);
      return at;
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      const mine = e.problems.filter((p) => p.path.startsWith('metrics'));
      throw new ConfigError(
        mine.length ? mine.map((p) => ({ path: '--metrics', message: p.message })) : e.problems,
        file,
      );
    }
  }
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(listen);
  if (!m) return bad(`${listen}: not address:port (like 127.0.0.1:9100)`);
  const [, address = '', port = ''] = m;
  if (!isIPv4(address)) return bad(`${address} is not an IPv4 address`);
  if (Number(port) < 1 || Number(port) > 65535) return bad(`port ${port} is not 1..65535`);
  if (!address.startsWith('127.'))
    return bad(
      `${address}: with an app's own config metrics are served on loopback only (127.0.0.1); run it with the gateway config to serve a lan address`,
    );
  return { address, port: Number(port), deny: [] };
}
