import type { DhcpConfig, StaticHost, SubnetConfig } from './config.js';
import { inCidr, intToIp, ipToInt, isIPv4 } from './ip.js';
import type { LeaseStore } from './leases.js';

/**
 * Address allocation: which address a client may have, and which one to offer it. Offers are
 * held in memory for `offerTime`; bound leases, declined addresses and static hosts come from the
 * lease store and the config. `propose()` has no side effects (the server holds an offer only
 * after it has chosen), so it can run as the stock `/dhcpd/lookup` listener.
 */
export class Pool {
  private readonly offers = new Map<string, { mac: string; until: number }>();
  /** The address held for each client (the reverse of `offers`): every per-packet step is O(1). */
  private readonly offerOfMac = new Map<string, string>();
  private readonly staticByMac = new Map<string, StaticHost>();
  private readonly staticByIp = new Map<string, StaticHost>();
  private readonly ours: Set<string>;
  private readonly cursor = new Map<SubnetConfig, number>();

  constructor(
    readonly config: DhcpConfig,
    readonly store: LeaseStore,
    private readonly now: () => number = Date.now,
  ) {
    for (const h of config.hosts) {
      this.staticByMac.set(h.mac, h);
      this.staticByIp.set(h.ip, h);
    }
    this.ours = new Set(config.listen.map((l) => l.address));
  }

  staticHost(mac: string): StaticHost | undefined {
    return this.staticByMac.get(mac);
  }

  /** Why `mac` may not have `ip` in `subnet`, or undefined if it may. Pool ranges are not required. */
  refusal(ip: string, mac: string, subnet: SubnetConfig, now = this.now()): string | undefined {
    if (!isIPv4(ip)) return `${JSON.stringify(ip)} is not an IPv4 address`;
    const n = ipToInt(ip);
    if (!inCidr(subnet.cidr, n)) return `${ip} is outside the subnet ${subnet.name}`;
    if (subnet.cidr.prefix < 31 && (n === subnet.cidr.network || n === subnet.cidr.broadcast))
      return `${ip} is the network or broadcast address of ${subnet.name}`;
    if (this.ours.has(ip) || subnet.router.includes(ip))
      return `${ip} is the server's or the router's address`;
    const st = this.staticByIp.get(ip);
    if (st && st.mac !== mac) return `${ip} is reserved for the static host ${st.mac}`;
    if (this.store.heldByOther(ip, mac, now)) return `${ip} is leased to ${this.store.get(ip)?.mac}`;
    const o = this.offers.get(ip);
    if (o && o.mac !== mac && o.until > now) return `${ip} is offered to ${o.mac}`;
    if (this.store.declinedUntil(ip, now)) return `${ip} was declined (in use by an unknown host)`;
    return undefined;
  }

  inRange(ip: string, subnet: SubnetConfig): boolean {
    if (!isIPv4(ip)) return false;
    const n = ipToInt(ip);
    return subnet.ranges.some((r) => n >= r.start && n <= r.end);
  }

  /**
   * The address to offer `mac` in `subnet`: its static address; else its current or previous
   * one; else the requested one if in a pool range and free; else a never-used free address;
   * else the free address that has been free longest. Undefined when the pool is exhausted.
   */
  propose(mac: string, subnet: SubnetConfig, requested?: string): string | undefined {
    const now = this.now();
    const st = this.staticByMac.get(mac);
    // A static host gets its address only; while another client still holds it (the config
    // changed under a lease), none — that client is NAKed at its next renewal.
    if (st && inCidr(subnet.cidr, ipToInt(st.ip)))
      return this.refusal(st.ip, mac, subnet, now) ? undefined : st.ip;
    const offered = this.offeredTo(mac, now);
    if (offered && this.inSubnet(offered, subnet) && !this.refusal(offered, mac, subnet, now)) return offered;
    const prev = this.store.ofMac(mac);
    if (prev && this.inSubnet(prev.ip, subnet) && !this.refusal(prev.ip, mac, subnet, now)) return prev.ip;
    if (requested && this.inRange(requested, subnet) && !this.refusal(requested, mac, subnet, now))
      return requested;
    return this.firstFree(mac, subnet, now);
  }

  private inSubnet(ip: string, subnet: SubnetConfig): boolean {
    return isIPv4(ip) && inCidr(subnet.cidr, ipToInt(ip));
  }

  private firstFree(mac: string, subnet: SubnetConfig, now: number): string | undefined {
    const size = subnet.ranges.reduce((a, r) => a + (r.end - r.start + 1), 0);
    const start = this.cursor.get(subnet) ?? 0;
    let oldest: { ip: string; at: number } | undefined;
    for (let k = 0; k < size; k++) {
      const i = (start + k) % size;
      const ip = intToIp(this.nth(subnet, i));
      if (this.refusal(ip, mac, subnet, now)) continue;
      const rec = this.store.get(ip);
      if (rec === undefined) {
        this.cursor.set(subnet, i); // the next search starts here (skipping it once it is held)
        return ip;
      }
      if (!oldest || rec.expires < oldest.at) oldest = { ip, at: rec.expires };
    }
    return oldest?.ip;
  }

  private nth(subnet: SubnetConfig, i: number): number {
    for (const r of subnet.ranges) {
      const n = r.end - r.start + 1;
      if (i < n) return r.start + i;
      i -= n;
    }
    throw new Error('pool index out of range');
  }

  /** Hold `ip` for `mac` (an OFFER was sent). A client holds at most one offer. */
  hold(ip: string, mac: string, seconds: number): void {
    this.dropOffer(mac);
    const other = this.offers.get(ip);
    if (other !== undefined && this.offerOfMac.get(other.mac) === ip) this.offerOfMac.delete(other.mac);
    this.offers.set(ip, { mac, until: this.now() + seconds * 1000 });
    this.offerOfMac.set(mac, ip);
  }

  dropOffer(mac: string): void {
    const ip = this.offerOfMac.get(mac);
    if (ip === undefined) return;
    this.offerOfMac.delete(mac);
    if (this.offers.get(ip)?.mac === mac) this.offers.delete(ip);
  }

  offeredTo(mac: string, now = this.now()): string | undefined {
    const ip = this.offerOfMac.get(mac);
    if (ip === undefined) return undefined;
    const o = this.offers.get(ip);
    return o !== undefined && o.mac === mac && o.until > now ? ip : undefined;
  }

  /** Forget expired offers. */
  sweep(): void {
    const now = this.now();
    for (const [ip, o] of this.offers)
      if (o.until <= now) {
        this.offers.delete(ip);
        if (this.offerOfMac.get(o.mac) === ip) this.offerOfMac.delete(o.mac);
      }
  }
}
