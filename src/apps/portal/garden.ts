import { Resolver } from 'node:dns/promises';
import type { Bus } from '../../core/bus.js';
import { CONTINUE } from '../../core/listener.js';
import type { Message } from '../../core/message.js';
import { follow } from '../follow.js';
import type { PortalConfig } from './config.js';
import { FIREWALL } from './guestbook.js';

/** Whether `name` is one of `domains` or under one (`www.example.org` under `example.org`). */
export function inGarden(name: string, domains: readonly string[]): boolean {
  const n = name.toLowerCase().replace(/\.$/, '');
  return domains.some((d) => n === d || n.endsWith(`.${d}`));
}

/** The element timeout for a DNS TTL: clamped to min..max. */
export function gardenTimeout(ttl: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, Math.floor(ttl)));
}

/**
 * The walled garden by domain name (docs/apps/portal.md, "Walled garden by name"). Two listeners on
 * the DNS forwarder (`forwarder`), both for names under one of `gardenDomains` only:
 *
 * - **`/dns/query`, prepended** (the guest's query waits for it): the portal resolves the name
 *   itself through the forwarder (at the portal's `address`, port 53: its own query passes this
 *   listener at once and fills the forwarder's cache), puts the addresses in the firewall's
 *   `gardendns4/6` sets, and returns CONTINUE: the forwarder answers the guest from its cache, so
 *   the address is open **before** the guest has its answer. Without it the guest's first
 *   connection raced the firewall and lost 8 times in 10 in the lab.
 * - **`/dns/answer`, appended**: every answer's A/AAAA addresses (`address` tuples), for the
 *   answers the first listener did not see through (it timed out, the forwarder restarted).
 *
 * Each address is added for the answer's smallest TTL clamped to gardenTtlMin..gardenTtlMax
 * (`/system/firewall/garden/add`: only ever extended). Other names add nothing and cost one
 * round trip to the portal per query. Without a forwarder nothing is added (use `garden`).
 */
export class DomainGarden {
  private readonly hook: ReturnType<typeof follow>;
  private readonly queryHook: ReturnType<typeof follow>;
  private readonly resolver: Resolver;
  /** Answers for garden names seen, lookups the portal made for guests, and addresses the firewall added. */
  answers = 0;
  lookups = 0;
  added = 0;

  constructor(
    private readonly bus: Bus,
    private readonly config: PortalConfig,
    forwarder: string,
    private readonly report: (mailbox: string, e: unknown) => void,
  ) {
    const domains = config.gardenDomains;
    this.resolver = new Resolver({ timeout: 800, tries: 1 });
    this.resolver.setServers([config.address]);
    const self = config.address;
    this.queryHook = follow(
      bus,
      `${forwarder}:/dns/query`,
      async (m: Message) => {
        const type = m.str('type', '');
        if (m.str('client', '') === self || (type !== 'A' && type !== 'AAAA')) return CONTINUE;
        const name = m.str('name', '');
        if (!inGarden(name, domains) && !inGarden(m.str('rewrite-of', ''), domains)) return CONTINUE;
        await this.lookup(name, type).catch((e: unknown) => report(`${forwarder}:/dns/query`, e));
        return CONTINUE;
      },
      { identity: { app: 'portal', opens: 'garden' }, position: 'prepend' },
    );
    this.hook = follow(
      bus,
      `${forwarder}:/dns/answer`,
      (m: Message) => {
        if (m.str('rcode', '') === 'NOERROR' && m.has('address') && inGarden(m.str('name', ''), domains))
          this.learn(m);
        return CONTINUE;
      },
      { identity: { app: 'portal', follows: 'garden' } },
    );
  }

  /** Resolves once both listeners are in the forwarder's chains. */
  get attached(): Promise<void> {
    return Promise.all([this.hook.attached, this.queryHook.attached]).then(() => undefined);
  }

  /** A guest asks for a garden name: resolve it through the forwarder, open what it gives. */
  private async lookup(name: string, type: 'A' | 'AAAA'): Promise<void> {
    this.lookups++;
    let records: { address: string; ttl: number }[];
    try {
      records =
        type === 'A'
          ? await this.resolver.resolve4(name, { ttl: true })
          : await this.resolver.resolve6(name, { ttl: true });
    } catch {
      return; // NXDOMAIN, no such record, no answer in time: the guest gets what the forwarder says
    }
    if (records.length === 0) return;
    await this.add(
      name,
      records.map((r) => r.address),
      Math.min(...records.map((r) => r.ttl)),
    );
  }

  /** An answer seen on /dns/answer. */
  private learn(m: Message): void {
    this.answers++;
    const ips: string[] = [];
    let ttl = Number.POSITIVE_INFINITY;
    for (const t of m.all('address')) {
      if (t.type !== 'list') continue;
      const a = t.value as Message;
      ips.push(a.str('ip', ''));
      ttl = Math.min(ttl, a.int('ttl', 0));
    }
    if (ips.length > 0)
      this.add(m.str('name', ''), ips, ttl).catch((e: unknown) => this.report(`${FIREWALL}/garden/add`, e));
  }

  private async add(name: string, ips: string[], ttl: number): Promise<void> {
    const timeout = gardenTimeout(ttl, this.config.gardenTtlMin, this.config.gardenTtlMax);
    const r = await this.bus.request(`${FIREWALL}/garden/add`, { ip: ips, timeout });
    if (r.has('error')) throw new Error(r.str('error'));
    if (r.int('added') > 0) {
      this.added += r.int('added');
      this.bus.log.log('debug', 'portal: garden by name', { name, ips, timeout });
    }
  }

  close(): void {
    this.hook.remove();
    this.queryHook.remove();
    this.resolver.cancel();
  }
}
