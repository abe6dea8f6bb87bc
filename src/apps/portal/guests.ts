import type { Bus } from '../../core/bus.js';
import { CONTINUE } from '../../core/listener.js';
import { follow } from '../follow.js';

/** What DHCP told us about one guest, before (or without) any HTTP request. */
export interface DhcpGuest {
  readonly mac: string;
  readonly ip: string;
  readonly hostname: string | undefined;
  /** Lease end, epoch ms. */
  readonly expires: number;
}

/**
 * The paper's "head start": the portal follows dhcpd's lease messages (`<dhcpd>:/dhcpd/lease/
 * committed` and `/released`, appended, never stopping the chain), so it knows each guest's MAC,
 * hostname and lease before the first HTTP request, and learns when a lease ends (`onEnded`:
 * released by the client, expired, or declined).
 */
export class DhcpGuests {
  private readonly byIp = new Map<string, DhcpGuest>();
  private readonly hooks: { remove(): void }[] = [];
  readonly attached: Promise<void>;

  constructor(
    bus: Bus,
    dhcpd: string,
    onEnded: (guest: { ip: string; mac: string; reason: string }) => void,
  ) {
    const committed = follow(
      bus,
      `${dhcpd}:/dhcpd/lease/committed`,
      (m) => {
        const ip = m.str('ip');
        this.byIp.set(ip, {
          mac: m.str('mac'),
          ip,
          hostname: m.has('hostname') ? m.str('hostname') : undefined,
          expires: Number(m.int('expires')),
        });
        return CONTINUE;
      },
      { identity: { app: 'portal', follows: 'leases' } },
    );
    const released = follow(
      bus,
      `${dhcpd}:/dhcpd/lease/released`,
      (m) => {
        const ip = m.str('ip');
        const mac = m.str('mac');
        const g = this.byIp.get(ip);
        if (g && g.mac === mac) this.byIp.delete(ip);
        onEnded({ ip, mac, reason: m.str('reason') });
        return CONTINUE;
      },
      { identity: { app: 'portal', follows: 'leases' } },
    );
    this.hooks.push(committed, released);
    this.attached = Promise.all([committed.attached, released.attached]).then(() => undefined);
  }

  get(ip: string): DhcpGuest | undefined {
    return this.byIp.get(ip);
  }

  /** Guests with a lease (expired ones dropped). */
  list(now = Date.now()): DhcpGuest[] {
    for (const [ip, g] of this.byIp) if (g.expires <= now) this.byIp.delete(ip);
    return [...this.byIp.values()];
  }

  close(): void {
    for (const h of this.hooks) h.remove();
  }
}
