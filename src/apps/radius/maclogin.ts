import type { Bus } from '../../core/bus.js';
import { CONTINUE } from '../../core/listener.js';
import { Message } from '../../core/message.js';
import { follow } from '../follow.js';
import { authenticate, type Grants } from './auth.js';
import type { RadiusClient } from './client.js';
import type { RadiusConfig } from './config.js';

/**
 * MAC authentication without the splash page (uspot's `mac_auth`, CoovaChilli's `macauth`): on
 * every lease dhcpd commits (`<dhcpd>:/dhcpd/lease/committed`, appended, never stopping the chain),
 * a guest with no session is asked for by its MAC alone; an Access-Accept logs it in through
 * `<portal>/authorize` with the answer's limits, before its first web request. A reject does
 * nothing: the guest meets the splash page as usual. Renewals of a guest already online ask
 * nothing. Returns the handle of the listener.
 */
export function attachMacLogin(
  bus: Bus,
  config: RadiusConfig,
  dhcpd: string,
  client: RadiusClient,
  grants: Grants,
  stats: { macLogins: number },
) {
  const portal = `${config.target}:${config.portal}`;
  const inFlight = new Set<string>();
  const macOnly = { ...config, macAuth: true };
  const tryLogin = async (ip: string, mac: string): Promise<void> => {
    const state = await bus.request(`${portal}/client`, { ip }, { timeout: 3000 });
    if (state.str('state', '') !== 'captive') return; // online, trusted, blocked or unknown
    const v = await authenticate(Message.from({ ip, mac }), macOnly, client, grants, bus.log);
    if (!v.ok || v.via !== 'mac') return;
    const r = await bus.request(`${portal}/authorize`, { ip, mac, ...v.limits }, { timeout: 5000 });
    if (r.has('error')) throw new Error(`${portal}/authorize: ${r.str('error')}`);
    stats.macLogins++;
    bus.log.log('info', 'radius: MAC login without the splash page', { ip, mac, ms: Math.round(v.ms) });
  };
  return follow(
    bus,
    `${dhcpd}:/dhcpd/lease/committed`,
    (m) => {
      const ip = m.str('ip');
      const mac = m.str('mac');
      if (inFlight.has(mac)) return CONTINUE;
      inFlight.add(mac);
      tryLogin(ip, mac)
        .catch((e: unknown) => bus.log.log('warn', 'radius: MAC login failed', { ip, mac, error: e }))
        .finally(() => inFlight.delete(mac));
      return CONTINUE;
    },
    { identity: { app: 'radius', follows: 'leases' } },
  );
}
