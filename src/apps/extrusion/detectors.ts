import { type Cidr, inCidr, intToIp, isIPv4, parseCidr } from '../../services/dhcp/ip.js';

/**
 * The extrusion detectors (docs/apps/extrusion.md): pure, clock injected. Per guest, a sliding
 * window of its new connections (time, destination, protocol/port), bounded per guest and in
 * total, with counts kept incrementally as events enter and leave the window:
 *
 * - `port-scan`: distinct destination ports (protocol and port, over every host) or distinct
 *   destination hosts (not counting connections to `hostsExcept`, the web ports) in the window
 *   reach `ports` / `hosts`;
 * - `smtp-burst`: tcp connections to the SMTP ports (25, 465, 587) reach `count`;
 * - `flood`: new connections of any kind reach `count`;
 * - `blocklist`: connections to a destination in the configured prefixes reach `count` (1: the first).
 *
 * A rule fires for a guest at most once per window (`reported`): the next report of the same rule
 * for the same guest comes no earlier than one window after the last.
 */

export type RuleName = 'port-scan' | 'smtp-burst' | 'flood' | 'blocklist';
export const RULES: readonly RuleName[] = ['port-scan', 'smtp-burst', 'flood', 'blocklist'];

/** One new connection of a guest, as the events reader (or `/extrusion/event`) gives it. */
export interface ConnEvent {
  /** The guest (the flow's original source), IPv4. */
  readonly src: string;
  /** Where it goes (original destination, before any DNAT), IPv4. */
  readonly dst: string;
  /** IP protocol number (6 tcp, 17 udp, 1 icmp…). */
  readonly protonum: number;
  /** Destination port for tcp/udp/sctp/dccp/udplite; undefined for the others. */
  readonly dport: number | undefined;
}

export interface RuleThresholds {
  /** Distinct destination ports in the window (0: not counted). */
  readonly portScanPorts: number;
  /** Distinct destination hosts in the window (0: not counted). */
  readonly portScanHosts: number;
  /** Connections to these ports (tcp or udp) do not count toward distinct hosts (the web ports). */
  readonly hostsExcept?: readonly number[];
  /** tcp connections to `smtpPorts` in the window (0: rule off). */
  readonly smtpCount: number;
  readonly smtpPorts: readonly number[];
  /** New connections in the window (0: rule off). */
  readonly floodCount: number;
  /** Connections to `blocklist` in the window (0: rule off). */
  readonly blocklistCount: number;
  /** IPv4 prefixes (`198.51.100.0/24`, or one address). */
  readonly blocklist: readonly string[];
}

export interface DetectorLimits {
  /** Events kept per guest (the newest; older ones leave the window early). */
  readonly perGuest: number;
  /** Guests tracked at once (the one seen least recently is dropped for a new one). */
  readonly guests: number;
  /** Events kept over all guests (the guest holding the most loses its oldest). */
  readonly events: number;
  /** Destinations in a detection's sample. */
  readonly sample: number;
}

export interface DetectorOptions {
  readonly windowMs: number;
  readonly rules: RuleThresholds;
  readonly limits: DetectorLimits;
  /** Guests watched (subnets in CIDR form): others are ignored. Empty: every source. */
  readonly subnets?: readonly string[];
  /** Sources never watched (the router's own addresses). */
  readonly exclude?: readonly string[];
}

/** What a detection says: the evidence. */
export interface Detection {
  readonly ip: string;
  readonly rule: RuleName;
  /** What reached the threshold: `ports` or `hosts` (port-scan), else `connections`. */
  readonly measure: 'ports' | 'hosts' | 'connections';
  readonly count: number;
  readonly threshold: number;
  readonly windowSeconds: number;
  /** The window's oldest event still counted, and now (clock ms). */
  readonly first: number;
  readonly at: number;
  /** The guest's figures in the window, for context. */
  readonly connections: number;
  readonly ports: number;
  readonly hosts: number;
  /** A few destinations behind the count, newest first: `a.b.c.d:port/proto` or `a.b.c.d/proto`. */
  readonly sample: readonly string[];
}

/** A guest's figures in its window now. */
export interface GuestFigures {
  readonly ip: string;
  readonly connections: number;
  readonly ports: number;
  readonly hosts: number;
  readonly smtp: number;
  readonly blocked: number;
  readonly lastSeen: number;
}

const F_SMTP = 1;
const F_BLOCKED = 2;
/** Not counted toward distinct hosts (a web port). */
const F_NOHOST = 4;
const PORTED = new Set([6, 17, 33, 132, 136]); // tcp udp dccp sctp udplite
const PROTO: Readonly<Record<number, string>> = {
  1: 'icmp',
  6: 'tcp',
  17: 'udp',
  33: 'dccp',
  47: 'gre',
  50: 'esp',
  58: 'icmpv6',
  132: 'sctp',
  136: 'udplite',
};

export function protoName(n: number): string {
  return PROTO[n] ?? String(n);
}

/** Per guest: the window as parallel arrays (from `head`), and the counts of what is in it. */
class Guest {
  ts: number[] = [];
  dst: number[] = [];
  /** protonum << 16 | port; without a port, -1 - protonum. */
  pk: number[] = [];
  fl: number[] = [];
  head = 0;
  readonly ports = new Map<number, number>();
  readonly hosts = new Map<number, number>();
  smtp = 0;
  blocked = 0;
  lastSeen = 0;
  readonly reported = new Map<RuleName, number>();
  constructor(readonly ip: string) {}

  get length(): number {
    return this.ts.length - this.head;
  }

  push(t: number, dst: number, pk: number, fl: number): { newPort: boolean; newHost: boolean } {
    this.ts.push(t);
    this.dst.push(dst);
    this.pk.push(pk);
    this.fl.push(fl);
    if (fl & F_SMTP) this.smtp++;
    if (fl & F_BLOCKED) this.blocked++;
    let newHost = false;
    if (!(fl & F_NOHOST)) {
      const h = this.hosts.get(dst);
      this.hosts.set(dst, (h ?? 0) + 1);
      newHost = h === undefined;
    }
    let newPort = false;
    if (pk >= 0) {
      const p = this.ports.get(pk);
      this.ports.set(pk, (p ?? 0) + 1);
      newPort = p === undefined;
    }
    return { newPort, newHost };
  }

  /** Drop the oldest event. */
  shift(): void {
    const i = this.head++;
    const dst = this.dst[i]!;
    const pk = this.pk[i]!;
    const fl = this.fl[i]!;
    if (fl & F_SMTP) this.smtp--;
    if (fl & F_BLOCKED) this.blocked--;
    if (!(fl & F_NOHOST)) dec(this.hosts, dst);
    if (pk >= 0) dec(this.ports, pk);
    if (this.head > 64 && this.head * 2 > this.ts.length) this.compact();
  }

  /** Drop events at or before `cutoff`. */
  expire(cutoff: number): number {
    let n = 0;
    while (this.head < this.ts.length && this.ts[this.head]! <= cutoff) {
      this.shift();
      n++;
    }
    if (this.length === 0) this.compact();
    return n;
  }

  private compact(): void {
    const h = this.head;
    this.ts = this.ts.slice(h);
    this.dst = this.dst.slice(h);
    this.pk = this.pk.slice(h);
    this.fl = this.fl.slice(h);
    this.head = 0;
  }

  /** Array slots held (what the memory bound counts: compaction keeps it ≤ 2 × length + 64). */
  get slots(): number {
    return this.ts.length;
  }
}

/** A dotted IPv4 address as an unsigned integer, or -1 (no regex: this runs for every event). */
export function ip4(s: string): number {
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return -1;
      n = n * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return -1; // a leading zero
      part = part * 10 + (c - 48);
      if (++digits > 3 || part > 255) return -1;
    } else return -1;
  }
  if (dots !== 3 || digits === 0) return -1;
  return n * 256 + part;
}

function dec(m: Map<number, number>, k: number): void {
  const v = m.get(k)!;
  if (v <= 1) m.delete(k);
  else m.set(k, v - 1);
}

/** A set of IPv4 prefixes, matched with one hash lookup per distinct prefix length. */
export class PrefixSet {
  private readonly byLength = new Map<number, Set<number>>();
  constructor(prefixes: readonly string[]) {
    for (const p of prefixes) {
      const c = parsePrefix(p);
      let s = this.byLength.get(c.mask);
      if (!s) this.byLength.set(c.mask, (s = new Set()));
      s.add(c.network);
    }
  }
  get size(): number {
    let n = 0;
    for (const s of this.byLength.values()) n += s.size;
    return n;
  }
  has(ip: number): boolean {
    for (const [mask, nets] of this.byLength) if (nets.has((ip & mask) >>> 0)) return true;
    return false;
  }
}

/** `a.b.c.d/len` (host bits must be zero) or one address (`/32`). Throws for anything else. */
export function parsePrefix(s: string): Cidr {
  return isIPv4(s) ? parseCidr(`${s}/32`) : parseCidr(s);
}

export class Detectors {
  private readonly guests = new Map<string, Guest>();
  private readonly windowMs: number;
  private readonly rules: RuleThresholds;
  private readonly limits: DetectorLimits;
  private readonly blocklist: PrefixSet;
  private readonly smtpPorts: ReadonlySet<number>;
  private readonly hostsExcept: ReadonlySet<number>;
  private readonly subnets: readonly Cidr[];
  private readonly exclude: ReadonlySet<string>;
  private total = 0;
  /** Events seen, ignored (not a watched guest, not IPv4), evicted early by a cap, guests dropped. */
  readonly counters = { events: 0, ignored: 0, evicted: 0, guestsDropped: 0, detections: 0 };

  constructor(o: DetectorOptions) {
    if (!(o.windowMs > 0)) throw new Error('detectors: windowMs must be > 0');
    const l = o.limits;
    for (const [k, v] of Object.entries(l))
      if (!Number.isInteger(v) || v < 1) throw new Error(`detectors: limits.${k} must be an integer ≥ 1`);
    this.windowMs = o.windowMs;
    this.rules = o.rules;
    this.limits = l;
    this.blocklist = new PrefixSet(o.rules.blocklist);
    this.smtpPorts = new Set(o.rules.smtpPorts);
    this.hostsExcept = new Set(o.rules.hostsExcept ?? []);
    this.subnets = (o.subnets ?? []).map(parsePrefix);
    this.exclude = new Set(o.exclude ?? []);
  }

  get windowSeconds(): number {
    return Math.round(this.windowMs / 1000);
  }

  /** Whether a source address is a watched guest. */
  watches(ip: string): boolean {
    return this.watchesInt(ip, ip4(ip));
  }

  private watchesInt(ip: string, n: number): boolean {
    if (n < 0 || this.exclude.has(ip)) return false;
    if (this.subnets.length === 0) return true;
    for (const c of this.subnets) if (inCidr(c, n) && n !== c.network && n !== c.broadcast) return true;
    return false;
  }

  /** Count one new connection at clock time `now` (ms); the detections it completes. */
  observe(ev: ConnEvent, now: number): Detection[] {
    this.counters.events++;
    const dst = ip4(ev.dst);
    if (dst < 0 || !this.watchesInt(ev.src, ip4(ev.src))) {
      this.counters.ignored++;
      return [];
    }
    let g = this.guests.get(ev.src);
    if (!g) {
      if (this.guests.size >= this.limits.guests) this.dropStalest();
      g = new Guest(ev.src);
      this.guests.set(ev.src, g);
    }
    g.lastSeen = now;
    this.total -= g.expire(now - this.windowMs);
    const ported = ev.dport !== undefined && PORTED.has(ev.protonum);
    const pk = ported ? ((ev.protonum & 0xff) << 16) | (ev.dport! & 0xffff) : -1 - (ev.protonum & 0xff);
    let fl = 0;
    if (ev.protonum === 6 && ported && this.smtpPorts.has(ev.dport!)) fl |= F_SMTP;
    if (this.rules.blocklistCount > 0 && this.blocklist.has(dst)) fl |= F_BLOCKED;
    if (ported && (ev.protonum === 6 || ev.protonum === 17) && this.hostsExcept.has(ev.dport!))
      fl |= F_NOHOST;
    const { newPort, newHost } = g.push(now, dst, pk, fl);
    this.total++;
    if (g.length > this.limits.perGuest) {
      g.shift();
      this.total--;
      this.counters.evicted++;
    }
    if (this.total > this.limits.events) this.trimLargest();

    const out: Detection[] = [];
    const r = this.rules;
    if (newPort || newHost) {
      if (r.portScanPorts > 0 && g.ports.size >= r.portScanPorts)
        this.fire(g, 'port-scan', 'ports', g.ports.size, r.portScanPorts, now, out);
      else if (r.portScanHosts > 0 && g.hosts.size >= r.portScanHosts)
        this.fire(g, 'port-scan', 'hosts', g.hosts.size, r.portScanHosts, now, out);
    }
    if (fl & F_SMTP && r.smtpCount > 0 && g.smtp >= r.smtpCount)
      this.fire(g, 'smtp-burst', 'connections', g.smtp, r.smtpCount, now, out);
    if (r.floodCount > 0 && g.length >= r.floodCount)
      this.fire(g, 'flood', 'connections', g.length, r.floodCount, now, out);
    if (fl & F_BLOCKED && g.blocked >= r.blocklistCount)
      this.fire(g, 'blocklist', 'connections', g.blocked, r.blocklistCount, now, out);
    return out;
  }

  /** Drop expired events of every guest, and guests with nothing left to remember. */
  sweep(now: number): void {
    const cutoff = now - this.windowMs;
    for (const [ip, g] of this.guests) {
      this.total -= g.expire(cutoff);
      if (g.length === 0 && [...g.reported.values()].every((t) => t <= cutoff)) this.guests.delete(ip);
    }
  }

  /** Forget a guest (its window and its reports). */
  forget(ip: string): boolean {
    const g = this.guests.get(ip);
    if (!g) return false;
    this.total -= g.length;
    this.guests.delete(ip);
    return true;
  }

  /** Guests tracked, events held, array slots held (≤ 2 × events + 64 per guest). */
  size(): { guests: number; events: number; slots: number } {
    let slots = 0;
    for (const g of this.guests.values()) slots += g.slots;
    return { guests: this.guests.size, events: this.total, slots };
  }

  /** One guest's figures, or every guest's (busiest first), after expiring at `now`. */
  figures(now: number, ip?: string): GuestFigures[] {
    const cutoff = now - this.windowMs;
    const one = ip === undefined ? undefined : this.guests.get(ip);
    const list = ip === undefined ? [...this.guests.values()] : one ? [one] : [];
    return list
      .map((g) => {
        this.total -= g.expire(cutoff);
        return {
          ip: g.ip,
          connections: g.length,
          ports: g.ports.size,
          hosts: g.hosts.size,
          smtp: g.smtp,
          blocked: g.blocked,
          lastSeen: g.lastSeen,
        };
      })
      .sort((a, b) => b.connections - a.connections);
  }

  /** Internal consistency (tests): every count equals a recount of the window. */
  check(): void {
    let total = 0;
    for (const g of this.guests.values()) {
      total += g.length;
      const ports = new Set<number>();
      const hosts = new Set<number>();
      let smtp = 0;
      let blocked = 0;
      for (let i = g.head; i < g.ts.length; i++) {
        if (g.pk[i]! >= 0) ports.add(g.pk[i]!);
        if (!(g.fl[i]! & F_NOHOST)) hosts.add(g.dst[i]!);
        if (g.fl[i]! & F_SMTP) smtp++;
        if (g.fl[i]! & F_BLOCKED) blocked++;
        if (i > g.head && g.ts[i]! < g.ts[i - 1]!) throw new Error(`${g.ip}: window out of order`);
      }
      if (ports.size !== g.ports.size || hosts.size !== g.hosts.size)
        throw new Error(`${g.ip}: distinct counts drifted`);
      if (smtp !== g.smtp || blocked !== g.blocked) throw new Error(`${g.ip}: counters drifted`);
      if (g.length > this.limits.perGuest) throw new Error(`${g.ip}: over the per-guest cap`);
    }
    if (total !== this.total) throw new Error(`total ${this.total} but ${total} held`);
  }

  private fire(
    g: Guest,
    rule: RuleName,
    measure: Detection['measure'],
    count: number,
    threshold: number,
    now: number,
    out: Detection[],
  ): void {
    const last = g.reported.get(rule);
    if (last !== undefined && now - last < this.windowMs) return;
    g.reported.set(rule, now);
    this.counters.detections++;
    out.push({
      ip: g.ip,
      rule,
      measure,
      count,
      threshold,
      windowSeconds: this.windowSeconds,
      first: g.ts[g.head] ?? now,
      at: now,
      connections: g.length,
      ports: g.ports.size,
      hosts: g.hosts.size,
      sample: this.sample(g, rule, measure),
    });
  }

  /** Up to `limits.sample` destinations behind a count, newest first, distinct by what was counted. */
  private sample(g: Guest, rule: RuleName, measure: Detection['measure']): string[] {
    const out: string[] = [];
    const seen = new Set<number>();
    for (let i = g.ts.length - 1; i >= g.head && out.length < this.limits.sample; i--) {
      const fl = g.fl[i]!;
      if (rule === 'smtp-burst' && !(fl & F_SMTP)) continue;
      if (rule === 'blocklist' && !(fl & F_BLOCKED)) continue;
      const pk = g.pk[i]!;
      const key = measure === 'ports' ? pk : measure === 'hosts' ? g.dst[i]! : i;
      if (measure === 'ports' && pk < 0) continue;
      if (measure === 'hosts' && fl & F_NOHOST) continue;
      if (seen.has(key)) continue;
      seen.add(key);
      const host = intToIp(g.dst[i]!);
      out.push(pk >= 0 ? `${host}:${pk & 0xffff}/${protoName(pk >>> 16)}` : `${host}/${protoName(-1 - pk)}`);
    }
    return out;
  }

  private dropStalest(): void {
    let stalest: Guest | undefined;
    for (const g of this.guests.values()) if (!stalest || g.lastSeen < stalest.lastSeen) stalest = g;
    if (!stalest) return;
    this.total -= stalest.length;
    this.counters.evicted += stalest.length;
    this.counters.guestsDropped++;
    this.guests.delete(stalest.ip);
  }

  /** Over the total cap: the guest holding the most events loses its oldest eighth. */
  private trimLargest(): void {
    let largest: Guest | undefined;
    for (const g of this.guests.values()) if (!largest || g.length > largest.length) largest = g;
    if (!largest) return;
    const n = Math.max(1, this.total - this.limits.events, Math.floor(largest.length / 8));
    for (let i = 0; i < n && largest.length > 0; i++) {
      largest.shift();
      this.total--;
      this.counters.evicted++;
    }
  }
}
