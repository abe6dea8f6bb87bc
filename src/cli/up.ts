import { performance } from 'node:perf_hooks';
import { ConfigError } from '../apps/app.js';
import { loadGatewayFile } from '../apps/gateway/config.js';
import { startGateway } from '../apps/gateway/host.js';
import { createLogger } from '../core/log.js';

export const DEFAULT_CONFIG = '/etc/metanet/gateway.json';

/**
 * `metanet up`: validate the gateway config (`--check` stops there), host its apps, reload on
 * SIGHUP (or `metanet reload`), stop everything on SIGINT/SIGTERM. Exit 0, 1 bad config, 2 an app
 * failed to start. Prints `gateway ready: <apps> (<ms> ms)` once every app serves.
 */
export async function up(o: { config?: string; check?: boolean; dir?: string }): Promise<number> {
  const t0 = performance.now();
  const file = o.config ?? DEFAULT_CONFIG;
  let config: Awaited<ReturnType<typeof loadGatewayFile>>;
  try {
    config = await loadGatewayFile(file);
  } catch (e) {
    process.stderr.write(`metanet up: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  const names = config.apps.map((a) => (a.process === 'own' ? `${a.name}(own process)` : a.name));
  if (o.check) {
    process.stdout.write(`${file}: ok: ${names.join(', ') || 'no apps'}\n`);
    return 0;
  }
  const log = createLogger({ gateway: true });
  // Listen for the stop signals before starting: one that arrives during start stops cleanly after it.
  const stopped = new Promise<void>((r) => {
    process.once('SIGINT', () => r());
    process.once('SIGTERM', () => r());
  });
  let gw: Awaited<ReturnType<typeof startGateway>>;
  try {
    gw = await startGateway(config, log, o.dir);
  } catch (e) {
    process.stderr.write(`metanet up: ${e instanceof Error ? e.message : String(e)}\n`);
    return e instanceof ConfigError ? 1 : 2;
  }
  process.stdout.write(`gateway ready: ${names.join(' ')} (${Math.round(performance.now() - t0)} ms)\n`);
  process.on('SIGHUP', () => {
    gw.reload().then(
      (r) => process.stdout.write(`gateway reloaded: restarted ${r.restarted.join(' ') || 'none'}\n`),
      (e: unknown) =>
        process.stderr.write(`metanet up: reload refused, running config kept: ${(e as Error).message}\n`),
    );
  });
  await stopped;
  await gw.close();
  process.stdout.write('gateway stopped\n');
  return 0;
}
