import type { Bus } from '../../core/bus.js';
import { MetanetError } from '../../core/errors.js';
import { Accounting, readClients } from './accounting.js';
import { attachAuth, Grants } from './auth.js';
import { RadiusClient } from './client.js';
import { parseConfig, type RadiusConfig, type RadiusConfigInput } from './config.js';
import { DaeServer } from './dae.js';
import { attachMacLogin } from './maclogin.js';

export interface AuthStats {
  accepted: number;
  rejected: number;
  unavailable: number;
  /** The last authentication's duration (ms), all tries included. */
  lastMs: number;
  /** Guests logged in by MAC on their lease, without the splash page (`macLogin`). */
  macLogins: number;
}

export interface Radius {
  readonly config: RadiusConfig;
  readonly client: RadiusClient;
  readonly auth: AuthStats;
  readonly accounting: Accounting | undefined;
  readonly dae: DaeServer | undefined;
  /** The DAE server's UDP port (undefined without `dae`). */
  readonly daePort: number | undefined;
  status(): Record<string, string | number | boolean>;
  close(): Promise<void>;
}

/**
 * The RADIUS glue (docs/apps/radius.md): the client, the `/portal/auth` hook, accounting from the
 * portal's announcements and the DAE server. Resolves once the hook is in the portal's chain
 * (waiting, with backoff, for the portal to run) and accounting has compared its sessions with the
 * portal's.
 */
export async function startRadius(bus: Bus, input: RadiusConfigInput): Promise<Radius> {
  const config = parseConfig(input);
  const log = bus.log;
  const client = new RadiusClient({
    servers: config.servers,
    timeoutMs: config.timeoutMs,
    retries: config.retries,
    requireMessageAuthenticator: config.requireMessageAuthenticator,
    log,
  });
  const grants = new Grants();
  const auth: AuthStats = { accepted: 0, rejected: 0, unavailable: 0, lastMs: 0, macLogins: 0 };
  const portal = `${config.target}:${config.portal}`;
  const cleanup: (() => Promise<void> | void)[] = [() => client.close()];
  let accounting: Accounting | undefined;
  let dae: DaeServer | undefined;
  let daePort: number | undefined;
  try {
    if (config.accounting) {
      const a = new Accounting(bus, config, client, grants, log);
      accounting = a;
      cleanup.unshift(() => a.close());
    }
    if (config.dae) {
      const acct = accounting;
      const d = new DaeServer(config.dae, {
        nasIp: config.nasIp,
        nasIdentifier: config.nasIdentifier,
        calledStationId: config.calledStationId ?? config.nasIdentifier,
        async sessions() {
          return (await readClients(bus, config)).map((c) => {
            const s = acct?.store.get(c.ip);
            return s && s.mac === c.mac
              ? { ip: c.ip, mac: c.mac, sessionId: s.sessionId, username: s.username }
              : { ip: c.ip, mac: c.mac };
          });
        },
        async change(ip, limits) {
          const r = await bus.request(`${portal}/limits`, { ip, ...limits }, { timeout: 3000 });
          if (r.has('error')) {
            if (r.str('error').includes('has no session')) return false;
            throw new MetanetError('EFAIL', `${portal}/limits: ${r.str('error')}`);
          }
          return true;
        },
        swap: config.swapInputOutput,
        async logout(ip) {
          const r = await bus.request(`${portal}/logout`, { ip, reason: 'operator' }, { timeout: 3000 });
          if (r.has('error')) throw new MetanetError('EFAIL', `${portal}/logout: ${r.str('error')}`);
          return r.bool('removed', false);
        },
        log,
      });
      daePort = (await d.listen()).port;
      dae = d;
      cleanup.unshift(() => d.close());
    }
    const hook = attachAuth(bus, config, client, grants, auth);
    cleanup.unshift(() => hook.remove());
    await hook.attached;
    if (config.macLogin && config.dhcpd) {
      const macs = attachMacLogin(bus, config, config.dhcpd, client, grants, auth);
      cleanup.unshift(() => macs.remove());
    }
    await accounting?.start();
  } catch (e) {
    for (const c of cleanup) await c();
    throw e;
  }
  return {
    config,
    client,
    auth,
    accounting,
    dae,
    daePort,
    status: () => ({
      target: config.target,
      server: client.active('auth'),
      accepted: auth.accepted,
      rejected: auth.rejected,
      unavailable: auth.unavailable,
      lastAuthMs: Math.round(auth.lastMs),
      ...(accounting
        ? {
            sessions: accounting.store.size,
            queued: accounting.queue.length,
            queueDropped: accounting.queue.dropped,
          }
        : {}),
      ...(daePort === undefined ? {} : { daePort }),
    }),
    async close() {
      for (const c of cleanup) await c();
    },
  };
}
