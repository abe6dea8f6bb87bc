import type { DhcpConfig, StaticHost, SubnetConfig } from './config.js';
import { inCidr, intToIp, ipToInt, isIPv4 } from './ip.js';
import type { LeaseStore } from './leases.js';

/** A pool found dry is not scanned again for this long (DISCOVERs reclaim meanwhile). */
const DRY_MEMO_MS = 1000;
/** Reclaimed offers remembered for a late REQUEST (Pool.restore). */
const LOST_MAX = 4096;

/** A held offer given to another client because the pool ran dry. */
export interface Reclaimed {
  readonly ip: string;
  /** Who held it, and since when (ms). */
  readonly from: string;
  readonly heldSince: number;
  readonly to: string;
}

/**
 * Address allocation: which address a client may have, and which one to offer it. Offers are
 * held in memory for `offerTime`; bound leases, declined addresses and static hosts come from the
 * lease store and the config. `propose()` has no side effects unless it is asked to reclaim (the
 * server holds an offer only after it has chosen), so it can run as the stock `/dhcpd/lookup`
 * listener.
 */
export class Pool {
  /** Held offers by address, in the order they were held (oldest first: reclaimed first). */
  private readonly offers = new Map<string, { mac: string; until: number; since: number }>();
  /** The address held for each client (the reverse of `offers`): every per-packet step is O(1). */
  private readonly offerOfMac = new Map<string, string>();
  private readonly staticByMac = new Map<string, StaticHost>();
  private readonly staticByIp = new Map<string, StaticHost>();
  private readonly ours: Set<string>;
  private readonly cursor = new Map<SubnetConfig, number>();
  /**
   * When a scan last found each subnet's pool with nothing free. For DRY_MEMO_MS after, a
   * DISCOVER goes straight to reclaiming (a scan of a /24 costs ~0.2 ms; a storm would pay it per
   * packet). Cleared when an offer is dropped or expires; an address freed otherwise (a release,
   * an expiry) is found by the next scan at the latest.
   */
  private readonly dryAt = new Map<SubnetConfig, number>();

  /**
   * The offer last reclaimed from each client (mac → ip), oldest first, at most LOST_MAX: its
   * REQUEST may still come (it was slow, or queued behind a storm), and gets the address back
   * while nobody has leased it (`restore`).
   */
  private readonly lost = new Map<string, string>();
  /** Called for each held offer reclaimed (counted and logged by the core). */
  onReclaim: ((r: Reclaimed) => void) | undefined;

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

  /**
   * Why `mac` may not have `ip` in `subnet`, or undefined if it may. Pool ranges are not required.
   * `ignoreOffers`: as if no offer were held (to find offers that may be reclaimed).
   */
  refusal(
    ip: string,
    mac: string,
    subnet: SubnetConfig,
    now = this.now(),
    ignoreOffers = false,
  ): string | undefined {
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
    const o = ignoreOffers ? undefined : this.offers.get(ip);
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
   * else the free address that has been free longest; else, with `reclaim` (a DISCOVER), the
   * pool address whose offer to another client has been held longest: that offer is dropped
   * (`onReclaim`), so a storm of DISCOVERs that are never followed by a REQUEST cannot lock the
   * pool for `offerTime`. Undefined when every pool address is leased, declined or reserved.
   */
  propose(mac: string, subnet: SubnetConfig, requested?: string, reclaim = false): string | undefined {
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
    if (!reclaim) return this.firstFree(mac, subnet, now);
    // A storm keeps the pool dry: scan it at most once a second, reclaim meanwhile.
    const dry = this.dryAt.get(subnet);
    if (dry === undefined || now - dry >= DRY_MEMO_MS || now < dry) {
      const ip = this.firstFree(mac, subnet, now);
      if (ip !== undefined) return ip;
      this.dryAt.set(subnet, now);
    }
    return this.reclaimOldest(mac, subnet, now);
  }

  /** Drop the oldest held offer of a pool address in `subnet` that `mac` could have; its address. */
  private reclaimOldest(mac: string, subnet: SubnetConfig, now: number): string | undefined {
    for (const [ip, o] of this.offers) {
      if (o.mac === mac || !this.inRange(ip, subnet)) continue;
      if (this.refusal(ip, mac, subnet, now, true) !== undefined) continue;
      this.offers.delete(ip);
      if (this.offerOfMac.get(o.mac) === ip) this.offerOfMac.delete(o.mac);
      if (o.until <= now) return ip; // expired meanwhile: simply free
      this.lost.delete(o.mac);
      this.lost.set(o.mac, ip);
      if (this.lost.size > LOST_MAX) this.lost.delete(this.lost.keys().next().value!);
      this.onReclaim?.({ ip, from: o.mac, heldSince: o.since, to: mac });
      return ip;
    }
    return undefined;
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
      // The common refusals first, without parsing the address (a dry pool is scanned whole for
      // every DISCOVER of a storm): held for another client, or leased to one.
      const o = this.offers.get(ip);
      if ((o !== undefined && o.mac !== mac && o.until > now) || this.store.heldByOther(ip, mac, now))
        continue;
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

  /** The address whose offer was reclaimed from `mac`, while remembered. */
  lostOffer(mac: string): string | undefined {
    return this.lost.get(mac);
  }

  /**
   * A client REQUESTs (SELECTING) the address whose offer was reclaimed from it: if another
   * client's offer holds it now, that offer goes (an offer binds nobody; the first REQUEST wins)
   * and the address is held for this client again — unless it was leased (or declined) meanwhile:
   * then nothing changes and the REQUEST gets its NAK. True when the offer was restored.
   */
  restore(mac: string, ip: string, subnet: SubnetConfig, seconds: number): boolean {
    if (this.lost.get(mac) !== ip) return false;
    this.lost.delete(mac);
    if (this.refusal(ip, mac, subnet, this.now(), true) !== undefined) return false;
    const o = this.offers.get(ip);
    if (o !== undefined && o.mac !== mac && this.offerOfMac.get(o.mac) === ip) this.offerOfMac.delete(o.mac);
    this.offers.delete(ip);
    this.hold(ip, mac, seconds);
    return true;
  }

  /** Hold `ip` for `mac` (an OFFER was sent). A client holds at most one offer. */
  hold(ip: string, mac: string, seconds: number): void {
    this.dropOffer(mac);
    this.lost.delete(mac);
    const other = this.offers.get(ip);
    if (other !== undefined && this.offerOfMac.get(other.mac) === ip) this.offerOfMac.delete(other.mac);
    const now = this.now();
    this.offers.delete(ip); // set again below: last in the order (held most recently)
    this.offers.set(ip, { mac, until: now + seconds * 1000, since: now });
    this.offerOfMac.set(mac, ip);
  }

  dropOffer(mac: string): void {
    const ip = this.offerOfMac.get(mac);
    if (ip === undefined) return;
    this.offerOfMac.delete(mac);
    if (this.offers.get(ip)?.mac === mac) this.offers.delete(ip);
    this.dryAt.clear(); // an address may be free again
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
        this.dryAt.clear();
      }
  }
}
