import { parseArgs } from 'node:util';
import { Bus } from '../core/bus.js';
import { isMetanetError, MetanetError } from '../core/errors.js';
import { serveDaemon } from '../ipc/daemon.js';
import type { App, AppHandle } from './app.js';
import { readConfigFile } from './configfile.js';

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
 * `main.js --config FILE [--dir SOCKDIR]`. FILE is the app's own config, or a whole gateway config
 * (one with `networks`), from which this app's section is taken. Serves the app's bus as daemon
 * `<name>`, prints `<name> ready` on stdout, stops cleanly on SIGINT/SIGTERM (state on disk first).
 * A bad config exits 1 naming every bad field; a failure to start exits 2.
 */
export async function runApp<C>(app: App<C>, options: RunOptions = {}): Promise<void> {
  const fail = (code: number, e: unknown): never => {
    process.stderr.write(`${app.name}: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(code);
  };
  let file: string;
  let dir: string | undefined;
  try {
    const { values } = parseArgs({
      args: options.argv ? [...options.argv] : process.argv.slice(2),
      options: { config: { type: 'string', short: 'c' }, dir: { type: 'string' } },
      strict: true,
    });
    if (!values.config) throw new Error(`usage: ${app.name} --config FILE [--dir SOCKDIR]`);
    file = values.config;
    dir = values.dir;
  } catch (e) {
    return fail(APP_EXIT.config, e);
  }
  let config: C;
  try {
    config = await loadAppConfig(app, file);
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
