import type { Bus } from '../../core/bus.js';
import { STOP } from '../../core/listener.js';
import { type FirewallService, installFirewallService } from '../../services/firewall/index.js';
import { installHttpService } from '../../services/http/index.js';
import { shapePortal } from '../../services/shaper/index.js';
import { type PortalConfig, type PortalConfigInput, parseConfig } from './config.js';
import { attachControl } from './control.js';
import { DomainGarden } from './garden.js';
import { Guestbook } from './guestbook.js';
import { DhcpGuests } from './guests.js';
import { defaultLimits, Lifecycle, readCounters } from './lifecycle.js';
import { MacLists } from './maclists.js';
import type { PortalCounts } from './metrics.js';
import { Sessions } from './sessions.js';
import { attachWeb } from './web.js';

export interface CaptivePortal {
  readonly config: PortalConfig;
  /** `http://<portalHost>/` */
  readonly url: string;
  readonly port: number;
  readonly firewall: FirewallService;
  /** What DHCP told the portal (when it follows a dhcpd: config `dhcpd`). */
  readonly guests: DhcpGuests | undefined;
  /** The idle / quota / session-end checks (lifecycle.ts); `check()` runs one now. */
  readonly lifecycle: Lifecycle;
  /** Trusted and blocked MACs (maclists.ts). */
  readonly macs: MacLists;
  /** What the portal counts for its metrics (metrics.ts). */
  readonly counts: PortalCounts;
  /** Live sessions. */
  sessionCount(): number;
  /** Stop serving; the firewall table stays (logged-in clients keep access meanwhile). */
  close(): Promise<void>;
}

/**
 * The captive portal (SPEC §5, paper §9): an HTTP server on the router's LAN address, the firewall
 * redirecting unauthorised tcp/80 to it, the splash page with the usage policy and a CSRF-checked
 * "I accept" form, authentication as the `<name>/auth` mailbox, login through the firewall
 * (address bound to MAC, for `sessionSeconds`), sessions in a state file, guests known from DHCP.
 * This file wires the parts: guestbook.ts (login/logout), web.ts (what guests see), control.ts
 * (operator mailboxes), guests.ts (DHCP). docs/apps/portal.md.
 */
export async function startCaptivePortal(bus: Bus, input: PortalConfigInput): Promise<CaptivePortal> {
  const config = parseConfig(input);
  const { name, address, port, sessionSeconds } = config;
  const book = new Guestbook(bus, config, new Sessions(config.stateFile, Date.now, defaultLimits(config)));
  const log = bus.log;
  const macs = new MacLists(bus, config, book); // reads macFile: a broken one stops the start here

  const firewall = await installFirewallService(bus, {
    lan: config.lan,
    portal: { address, port },
    garden: config.garden,
    dns: config.dns,
    nft: [...config.commandPrefix, 'nft'],
    // The HTTPS pages and API on the router are reachable before login (like the HTTP port).
    routerTcp: config.https ? [config.https.port] : [],
    stateFile: config.firewallStateFile,
    defaultTimeout: sessionSeconds,
  });
  const cleanup: (() => Promise<void> | void)[] = [() => firewall.close()];
  const lifecycle = new Lifecycle(book, {
    checkSeconds: config.idleCheckSeconds,
    counters: () => readCounters(bus),
    mailbox: `${name}/lifecycle`,
  });
  let guests: DhcpGuests | undefined;
  let url = '';
  let garden: DomainGarden | undefined;

  try {
    // Restored sessions: make sure the firewall has them for the time they have left (a table
    // rebuilt without the firewall's own state file would not).
    for (const s of book.sessions.list())
      await book.allow(s.ip, s.mac, Math.max(1, Math.ceil((s.expires - Date.now()) / 1000)));

    // The paper's head start: guests known from DHCP; a lease that ends ends the session.
    if (config.dhcpd) {
      const g = new DhcpGuests(bus, config.dhcpd, ({ ip, mac, reason }) => {
        if (book.sessions.get(ip)?.mac !== mac) return;
        log.log('debug', 'portal: lease ended', { ip, mac, dhcp: reason });
        book.end(ip, 'lease').catch((e: unknown) => book.report(`${name}/logged-out`, e));
      });
      guests = g;
      cleanup.push(() => g.close());
    }

    // Authentication is a mailbox: this stock listener, appended, accepts everyone who accepted.
    if (config.stockAuth) {
      const stock = bus.append(
        `${name}/auth`,
        async (_m, ctx) => {
          await ctx.reply({ ok: true });
          return STOP;
        },
        { app: 'portal', auth: 'accept-policy' },
      );
      cleanup.push(() => stock.remove());
    }

    // MAC lists: the firewall's trusted/blocked sets, and dhcpd's lookup answered for blocked MACs.
    await macs.start();
    cleanup.push(() => macs.close());
    // Walled garden by name: addresses from the DNS forwarder's answers (garden.ts).
    if (config.gardenDomains.length > 0 && config.forwarder) {
      const g = new DomainGarden(bus, config, config.forwarder, (mb, e) => book.report(mb, e));
      garden = g;
      cleanup.push(() => g.close());
    } else if (config.gardenDomains.length > 0)
      log.log(
        'warn',
        'portal: gardenDomains without a DNS forwarder (forwarder): nothing is added; use garden',
      );
    const httpServers = [`${name}/http`, ...(config.https ? [`${name}/https`] : [])];
    cleanup.push(
      attachControl(bus, name, book, () => guests, { config, macs, garden: () => garden, httpServers }),
    );
    // Fair sharing per guest on the captive devices, when the operator gave the uplink's rates.
    if (config.uplinkDown && config.uplinkUp)
      cleanup.unshift(
        await shapePortal(bus, name, {
          devices: config.lan,
          uplinkDown: config.uplinkDown,
          uplinkUp: config.uplinkUp,
          rateUp: config.rateUp,
          rateDown: config.rateDown,
          tc: [...config.commandPrefix, 'tc'],
        }),
      );
    // Every idleCheckSeconds: sample the counters; end idle, over-quota and ended sessions. At
    // close, one last sample (no endings) before the firewall goes, so a restart loses no count.
    const tick = bus.every(config.idleCheckSeconds * 1000, () => void lifecycle.check());
    void lifecycle.check(); // at once: announce sessions that ran out while the portal was down
    cleanup.unshift(async () => {
      tick.cancel();
      await lifecycle.check({ end: false }).catch(() => {});
    });

    const http = installHttpService(bus, {
      host: address,
      maxConnectionsPerPeer: config.maxConnectionsPerClient,
    });
    cleanup.unshift(() => http.close());
    const web = attachWeb(bus, config, book, (mac) => macs.isTrusted(mac));
    cleanup.unshift(() => web.close());
    url = web.url;
    await web.listen(); // the HTTP server, and the HTTPS one when configured
  } catch (e) {
    for (const c of cleanup) await c();
    throw e;
  }

  return {
    config,
    url,
    port,
    firewall,
    lifecycle,
    macs,
    counts: book.counts,
    get guests() {
      return guests;
    },
    sessionCount: () => book.sessions.list().length,
    async close() {
      for (const c of cleanup) await c();
    },
  };
}
