import { mkdirSync } from 'node:fs';
import { Bus } from '../../core/bus.js';
import { MetanetError } from '../../core/errors.js';
import { STOP } from '../../core/listener.js';
import type { Logger } from '../../core/log.js';
import { type Daemon, serveDaemon } from '../../ipc/daemon.js';
import type { AppHandle, MetricFamily } from '../app.js';
import { metricsMailbox, serveAppMetrics } from '../runner.js';
import { AppChild, type ChildEvent } from './child.js';
import { type GatewayConfig, type HostedApp, loadGatewayFile, type MetricsAt } from './config.js';
import type { AnsweredFamily, GatewayMetrics, MetricsServer } from './metrics.js';

/** One running app: in this process (its own bus and socket) or in a supervised child. */
type Running =
  | {
      kind: 'shared';
      hosted: HostedApp;
      bus: Bus;
      handle: AppHandle;
      daemon: Daemon;
      /** Its metric families, asked of it once (the first time metrics are served). */
      families?: readonly MetricFamily[];
    }
  | {
      kind: 'own';
      hosted: HostedApp;
      child: AppChild;
      /** Its samples as it answered `/<app>/metrics` at this scrape (undefined: no answer). */
      answered?: Map<string, AnsweredFamily>;
      /** Scrapes it did not answer in time (or answered with an error). */
      scrapeErrors: number;
    };

export interface ReloadResult {
  readonly restarted: readonly string[];
  readonly started: readonly string[];
  readonly stopped: readonly string[];
  readonly unchanged: readonly string[];
}

export interface Gateway {
  readonly config: GatewayConfig;
  /** Names of the running apps, in start order. */
  apps(): string[];
  /** Read the config file again and apply what changed (a bad file is refused: ECONFIG, nothing changes). */
  reload(): Promise<ReloadResult>;
  /** The port /metrics is served on (undefined: no metrics endpoint). */
  readonly metricsPort: number | undefined;
  /** Stop every app (reverse order), state on disk first, then the gateway's own socket. */
  close(): Promise<void>;
}

const GW = '/gateway';
/** How long a scrape waits for an app in its own process to answer `/<app>/metrics`. */
const OWN_APP_SCRAPE_TIMEOUT_MS = 1000;

/**
 * `metanet up`: host the config's apps. Each shared app gets its own bus named after it, served on
 * its own daemon socket (so `metanet ls portal` and `dhcpd:/dhcpd/lookup` work as with separate
 * processes); an app with `process: "own"` runs in a supervised child. The gateway itself is
 * daemon `gateway`: `/gateway/status`, `/gateway/reload`, `/gateway/app/exit` (docs/gateway.md).
 * An app that fails to start stops the whole start: the ones started are stopped again.
 */
export async function startGateway(config: GatewayConfig, log: Logger, dir?: string): Promise<Gateway> {
  const socketDir = dir ?? config.socketDir;
  let current = config;
  const running = new Map<string, Running>();
  const bus = new Bus({ name: 'gateway', logger: log });
  /** The /metrics endpoint, when the config has `metrics` (prom-client is loaded only then). */
  let metrics: { registry: GatewayMetrics; server: MetricsServer; at: MetricsAt } | undefined;

  const childExit = (e: ChildEvent): void => {
    bus.post(`${GW}/app/exit`, {
      app: e.app,
      pid: e.pid ?? 0,
      code: e.code ?? -1,
      signal: e.signal ?? '',
      'restart-in-ms': e.restartInMs,
    });
  };

  async function start(h: HostedApp, file: string): Promise<Running> {
    if (h.process === 'own') {
      const child = new AppChild(h.name, file, socketDir, log, childExit);
      // Wait for its ready line a while; a child that is slow or failing keeps being restarted.
      await Promise.race([child.ready, new Promise((r) => setTimeout(r, 30_000).unref())]);
      return { kind: 'own', hosted: h, child, scrapeErrors: 0 };
    }
    const appBus = new Bus({ name: h.name, logger: log.child({ app: h.name }) });
    let daemon: Daemon | undefined;
    try {
      // The socket first: an app reaches other daemons (the portal follows dhcpd) through it.
      daemon = await serveDaemon(appBus, { dir: socketDir, signals: false });
      const handle = await h.app.start(appBus, h.config, { dir: socketDir, log: appBus.log });
      const r: Running & { kind: 'shared' } = { kind: 'shared', hosted: h, bus: appBus, handle, daemon };
      const d = daemon;
      serveAppMetrics(appBus, h.name, async () => {
        const m = await import('./metrics.js');
        r.families ??= handle.metrics?.() ?? [];
        return [...r.families, ...m.ipcFamilies(() => [{ name: h.name, daemon: d }])];
      });
      if (metrics) addAppMetrics(metrics.registry, r);
      return r;
    } catch (e) {
      if (daemon) await Promise.all([daemon.close(), daemon.transport.close()]);
      await appBus.close(100);
      throw new MetanetError(
        'EFAIL',
        `app ${h.name} failed to start: ${e instanceof Error ? e.message : String(e)}`,
        { cause: e },
      );
    }
  }

  async function stop(r: Running): Promise<void> {
    metrics?.registry.remove(r.hosted.name);
    if (r.kind === 'own') return r.child.stop();
    await r.handle
      .close()
      .catch((e: unknown) =>
        log.log('error', 'app failed to stop cleanly', { app: r.hosted.name, error: e }),
      );
    await Promise.all([r.daemon.close(), r.daemon.transport.close()]);
    await r.bus.close(100);
  }

  async function stopAll(): Promise<void> {
    for (const name of [...running.keys()].reverse()) {
      const r = running.get(name)!;
      running.delete(name);
      await stop(r);
    }
  }

  /** Ask a shared app for its families (once) and register them; a failure costs its metrics only. */
  function addAppMetrics(registry: GatewayMetrics, r: Running & { kind: 'shared' }): void {
    try {
      r.families ??= r.handle.metrics?.() ?? [];
      registry.add(r.hosted.name, r.families);
    } catch (e) {
      registry.remove(r.hosted.name);
      log.log('error', 'metrics: cannot register the metrics of an app', { app: r.hosted.name, error: e });
    }
  }

  /** The gateway's own families: each daemon's IPC, the apps' processes (docs/metrics.md). */
  const gatewayFamilies = (m: typeof import('./metrics.js')): MetricFamily[] => [
    {
      name: 'metanet_gateway_app_up',
      help: 'An app the gateway runs: 1 while it runs (an own-process app: while its child is alive), else 0.',
      type: 'gauge',
      labels: ['app', 'process'],
      collect: () =>
        [...running.values()].map((r) => ({
          labels: { app: r.hosted.name, process: r.kind },
          value: r.kind === 'shared' || r.child.pid !== undefined ? 1 : 0,
        })),
    },
    {
      name: 'metanet_gateway_app_restarts_total',
      help: 'Restarts of an app in its own process after it exited (since its last start by the gateway).',
      type: 'counter',
      labels: ['app'],
      collect: () =>
        [...running.values()].flatMap((r) =>
          r.kind === 'own' ? [{ labels: { app: r.hosted.name }, value: r.child.restarts }] : [],
        ),
    },
    {
      name: 'metanet_gateway_app_scrape_errors_total',
      help: `Scrapes that went without the metrics of an app in its own process: it did not answer /<app>/metrics within ${OWN_APP_SCRAPE_TIMEOUT_MS / 1000} s, or answered an error.`,
      type: 'counter',
      labels: ['app'],
      collect: () =>
        [...running.values()].flatMap((r) =>
          r.kind === 'own' ? [{ labels: { app: r.hosted.name }, value: r.scrapeErrors }] : [],
        ),
    },
    // The daemons this process serves; an own-process app's come from its answer, same names.
    ...m.ipcFamilies(() => [
      { name: 'gateway', daemon },
      ...[...running.values()].flatMap((r) =>
        r.kind === 'shared' ? [{ name: r.hosted.name, daemon: r.daemon }] : [],
      ),
    ]),
  ];

  /**
   * Before each scrape: ask every own-process app that serves for its samples (`/<app>/metrics`,
   * at most OWN_APP_SCRAPE_TIMEOUT_MS) and register the families it answered under its name. One
   * that does not answer costs its own metrics only, that scrape: counted and logged.
   */
  async function askOwnApps(m: typeof import('./metrics.js'), registry: GatewayMetrics): Promise<void> {
    await Promise.all(
      [...running.values()].map(async (r) => {
        if (r.kind !== 'own') return;
        const app = r.hosted.name;
        r.answered = undefined;
        if (!r.child.serving) return; // not running (metanet_gateway_app_up says 0) or not ready yet
        try {
          const reply = await bus.request(
            `${app}:${metricsMailbox(app)}`,
            {},
            { timeout: OWN_APP_SCRAPE_TIMEOUT_MS },
          );
          if (reply.has('error')) throw new MetanetError('EFAIL', reply.str('error'));
          // Stopped or restarted (a reload) while we waited: its families were removed with it,
          // and a late answer must not register them again bound to this stale entry.
          if (running.get(app) !== r) return;
          const answered = m.familiesFrom(reply);
          r.answered = new Map(answered.map((a) => [a.family.name, a]));
          // Read through `running` at collect time, never through this entry: a family registered
          // once keeps reading whichever process runs the app now.
          const now = (name: string) => {
            const x = running.get(app);
            return x?.kind === 'own' ? x.answered?.get(name) : undefined;
          };
          registry.extend(
            app,
            answered.map((a) => m.answeredFamily(a, () => now(a.family.name))),
          );
        } catch (e) {
          r.scrapeErrors++;
          log.log(
            'warn',
            'metrics: an app in its own process did not answer; its metrics are left out of this scrape',
            {
              app,
              error: e,
            },
          );
        }
      }),
    );
  }

  /** Start serving /metrics at `at`: the registry, the gateway's families and every running app's. */
  async function openMetrics(at: MetricsAt): Promise<typeof metrics> {
    const m = await import('./metrics.js');
    const registry = await m.GatewayMetrics.create(log);
    registry.add('gateway', gatewayFamilies(m));
    registry.beforeScrape = () => askOwnApps(m, registry);
    for (const r of running.values()) if (r.kind === 'shared') addAppMetrics(registry, r);
    return { registry, server: await m.serveMetrics(registry, at, log), at };
  }

  /** Apply a reloaded `metrics`: a new endpoint opens before the old one closes (one that cannot listen refuses the reload, nothing changed). */
  async function changeMetrics(at: MetricsAt | undefined): Promise<void> {
    const was = metrics;
    if (JSON.stringify(at) === JSON.stringify(was?.at)) return;
    if (at && was && at.address === was.at.address && at.port === was.at.port) {
      was.server.deny(at.deny); // allowGuest changed: same socket
      metrics = { ...was, at };
    } else {
      metrics = at ? await openMetrics(at) : undefined;
      await was?.server.close();
    }
    log.log('info', 'metrics endpoint changed', { metrics: at ? `${at.address}:${at.port}` : 'none' });
  }

  mkdirSync(config.facts.stateDir, { recursive: true, mode: 0o700 });
  const daemon = await serveDaemon(bus, { dir: socketDir, signals: false });
  try {
    if (config.metrics) metrics = await openMetrics(config.metrics);
    for (const h of config.apps) running.set(h.name, await start(h, config.file));
  } catch (e) {
    await stopAll();
    await metrics?.server.close();
    await Promise.all([daemon.close(), daemon.transport.close()]);
    await bus.close(100);
    throw e;
  }

  let reloading: Promise<ReloadResult> | undefined;
  async function reload(): Promise<ReloadResult> {
    const next = await loadGatewayFile(current.file); // a bad file throws here: nothing changes
    await changeMetrics(next.metrics);
    const same = (a: HostedApp, b: HostedApp): boolean =>
      a.process === b.process && JSON.stringify(a.config) === JSON.stringify(b.config);
    const want = new Map(next.apps.map((h) => [h.name, h]));
    const result = {
      restarted: [] as string[],
      started: [] as string[],
      stopped: [] as string[],
      unchanged: [] as string[],
    };
    // Stop what goes or changes (reverse start order), then start in order.
    for (const name of [...running.keys()].reverse()) {
      const r = running.get(name)!;
      const w = want.get(name);
      if (w && same(r.hosted, w)) continue;
      running.delete(name);
      await stop(r);
      (w ? result.restarted : result.stopped).push(name);
    }
    const order = new Map<string, Running>();
    for (const h of next.apps) {
      const r = running.get(h.name);
      if (r) {
        order.set(h.name, r);
        result.unchanged.push(h.name);
        continue;
      }
      order.set(h.name, await start(h, next.file));
      if (!result.restarted.includes(h.name)) result.started.push(h.name);
    }
    running.clear();
    for (const [k, v] of order) running.set(k, v);
    current = next;
    log.log('info', 'gateway reloaded', { ...result });
    return result;
  }
  const reloadOnce = (): Promise<ReloadResult> => {
    reloading ??= reload().finally(() => {
      reloading = undefined;
    });
    return reloading;
  };

  bus.append(`${GW}/status`, async (_m, ctx) => {
    await ctx.reply({
      config: current.file,
      app: [...running.values()].map((r) => ({
        name: r.hosted.name,
        process: r.kind,
        pid: r.kind === 'own' ? (r.child.pid ?? 0) : process.pid,
        ...(r.kind === 'own' ? { restarts: r.child.restarts } : r.handle.status()),
      })),
    });
    return STOP;
  });
  bus.append(`${GW}/reload`, async (_m, ctx) => {
    try {
      const r = await reloadOnce();
      await ctx.reply({ ok: true, ...r });
    } catch (e) {
      await ctx.reply({ ok: false, error: e instanceof Error ? e.message : String(e) });
    }
    return STOP;
  });

  return {
    get config() {
      return current;
    },
    apps: () => [...running.keys()],
    reload: reloadOnce,
    get metricsPort() {
      return metrics?.server.port;
    },
    async close() {
      await reloading?.catch(() => {});
      await stopAll();
      await metrics?.server.close();
      metrics = undefined;
      await Promise.all([daemon.close(), daemon.transport.close()]);
      await bus.close(100);
    },
  };
}
