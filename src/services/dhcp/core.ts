import type { Bus } from '../../core/bus.js';
import { STOP } from '../../core/listener.js';
import type { Level, Logger } from '../../core/log.js';
import type { Message, MessageInit } from '../../core/message.js';
import { validate } from '../table.js';
import { type DhcpConfig, type SubnetConfig, subnetOf } from './config.js';
import { intToIp } from './ip.js';
import type { LeaseStore } from './leases.js';
import { badOptionLength, getOption, messageType } from './options.js';
import { toOption } from './optionset.js';
import { type DhcpOption, type DhcpPacket, MessageType, macOf } from './packet.js';
import type { Pool } from './pool.js';
import { NewClientLimiter } from './ratelimit.js';
import { buildReply, type ReplyPlan } from './reply.js';
import { SummaryLog } from './summarylog.js';
import { COMMITTED, DHCPD_BASE, LOOKUP, LOOKUP_REPLY, PACKET, POOL_IDENTITY, RELEASED } from './table.js';

/**
 * The DHCP state machine of RFC 2131 without sockets: a decoded packet in, at most one reply
 * (with where it goes) out. The server (server.ts) puts sockets around it; tests feed it directly.
 */

export interface Inbound {
  readonly packet: DhcpPacket;
  /** Source of the datagram. */
  readonly from: { readonly address: string; readonly port: number };
  /**
   * The device it arrived on, when the server knows it (a socket bound to that device, for a
   * `listen` entry with `interface`): a direct client is then on that entry's subnet.
   */
  readonly interface?: string;
}

export interface Outbound {
  readonly packet: DhcpPacket;
  /** Option 57 of the request (largest datagram the client takes), at least 576. */
  readonly maxSize: number;
  readonly to: { readonly address: string; readonly port: number };
  readonly broadcast: boolean;
  /** Our address in the client's subnet: the socket to send from (undefined: any). */
  readonly via: string | undefined;
}

export interface Counters {
  received: number;
  malformed: number;
  dropped: number;
  badOptionLength: number;
  notRequest: number;
  noMessageType: number;
  noClientMac: number;
  noSubnet: number;
  rateLimited: number;
  noAddress: number;
  shed: number;
  offers: number;
  offersReclaimed: number;
  acks: number;
  naks: number;
  informs: number;
  releases: number;
  declines: number;
  lookupsAnswered: number;
  lookupsRejected: number;
}

const TYPE_NAMES: Record<number, string> = {
  1: 'discover',
  2: 'offer',
  3: 'request',
  4: 'decline',
  5: 'ack',
  6: 'nak',
  7: 'release',
  8: 'inform',
};

const ZERO = '0.0.0.0';
const NONE: readonly DhcpOption[] = Object.freeze([]);

/**
 * Packets dropped by kind: each has its counter (in /dhcpd/stats) and is logged through the
 * SummaryLog (the first at once, then one summary line per interval), never a line per packet.
 */
const DROPS = {
  badOptionLength: { level: 'warn', message: 'dropped a packet with an option of the wrong length' },
  notRequest: { level: 'debug', message: 'dropped: not a BOOTREQUEST' },
  noMessageType: { level: 'debug', message: 'dropped: no message type (option 53): BOOTP is not served' },
  noClientMac: { level: 'debug', message: 'dropped: no client hardware address' },
  noSubnet: {
    level: 'debug',
    message: 'dropped: no subnet served for this packet (giaddr/ciaddr/interface)',
  },
  rateLimited: { level: 'warn', message: 'dropped: a new client over the newClients limit of its link' },
  noAddress: { level: 'warn', message: 'no address to offer' },
} as const satisfies Record<string, { level: Level; message: string }>;
type DropKind = keyof typeof DROPS;

/** What the log of a dropped packet says of it. */
function dropFields(inb: Inbound, mac: string, type: number | undefined): Record<string, unknown> {
  return {
    mac,
    xid: inb.packet.xid,
    type: type === undefined ? undefined : TYPE_NAMES[type],
    from: `${inb.from.address}:${inb.from.port}`,
    interface: inb.interface,
  };
}

/** A decision on the client's address: the lookup chain's answer, validated, or the pool's. */
interface Decision {
  readonly ip: string;
  readonly leaseTime: number | undefined;
  readonly hostname: string | undefined;
  readonly options: readonly DhcpOption[];
  readonly source: string;
}

export interface CoreOptions {
  readonly log: Logger;
  readonly now?: () => number;
  /** Client port for replies (68) and relay port (67); tests change them. */
  readonly clientPort?: number;
  readonly relayPort?: number;
  /** Summary interval of the logs of dropped packets (default 5000 ms). */
  readonly logIntervalMs?: number;
}

export class DhcpCore {
  readonly counters: Counters = {
    received: 0,
    malformed: 0,
    dropped: 0,
    badOptionLength: 0,
    notRequest: 0,
    noMessageType: 0,
    noClientMac: 0,
    noSubnet: 0,
    rateLimited: 0,
    noAddress: 0,
    shed: 0,
    offers: 0,
    offersReclaimed: 0,
    acks: 0,
    naks: 0,
    informs: 0,
    releases: 0,
    declines: 0,
    lookupsAnswered: 0,
    lookupsRejected: 0,
  };
  /** Packets received with a message type, by its name (`discover`, `request`, …, `other`). */
  readonly receivedByType: Record<string, number> = {};
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly ours: Set<string>;
  /** The directly attached subnets, in config order. */
  private readonly direct: readonly SubnetConfig[];
  /** The directly attached subnets of each `listen` interface, in `listen` order. */
  private readonly onInterface = new Map<string, SubnetConfig[]>();
  private readonly clientPort: number;
  private readonly relayPort: number;
  private readonly globalOptions: DhcpOption[];
  private readonly subnetOptions = new Map<SubnetConfig, DhcpOption[]>();
  private readonly hostOptions = new Map<string, DhcpOption[]>();
  private poolHandle: { readonly id: number; remove(): void } | undefined;
  /** Logs of dropped packets and failed lookups: one line per kind per interval at most. */
  private readonly summary: SummaryLog;
  private readonly limiter: NewClientLimiter;

  constructor(
    readonly bus: Bus,
    readonly config: DhcpConfig,
    readonly store: LeaseStore,
    readonly pool: Pool,
    opts: CoreOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.log = opts.log;
    this.clientPort = opts.clientPort ?? 68;
    this.relayPort = opts.relayPort ?? 67;
    this.ours = new Set(config.listen.map((l) => l.address));
    this.summary = new SummaryLog(this.log, this.now, opts.logIntervalMs);
    this.limiter = new NewClientLimiter(config.newClients, this.now);
    pool.onReclaim = (r) => {
      this.counters.offersReclaimed++;
      this.summary.note('offers-reclaimed', 'info', 'pool dry: a held offer was given to another client', {
        ip: r.ip,
        from: r.from,
        heldMs: this.now() - r.heldSince,
        to: r.to,
      });
    };
    this.direct = config.subnets.filter((s) => s.localAddress !== undefined);
    for (const l of config.listen) {
      const s = l.interface === undefined ? undefined : subnetOf(config, l.address);
      if (l.interface === undefined || s === undefined) continue;
      const on = this.onInterface.get(l.interface) ?? [];
      if (!on.includes(s)) on.push(s);
      this.onInterface.set(l.interface, on);
    }
    this.globalOptions = Object.entries(config.options).map(([k, v]) => toOption(k, v));
    for (const s of config.subnets)
      this.subnetOptions.set(
        s,
        Object.entries(s.options).map(([k, v]) => toOption(k, v)),
      );
    for (const h of config.hosts)
      this.hostOptions.set(
        h.mac,
        Object.entries(h.options).map(([k, v]) => toOption(k, v)),
      );
  }

  /** Append the stock pool listener to /dhcpd/lookup. */
  attachPool(): void {
    const pool = this.pool;
    const subnets = this.config.subnets;
    const offerTime = this.config.offerTime;
    this.poolHandle = this.bus.listen(
      DHCPD_BASE + LOOKUP.suffix,
      function poolLookup(m, ctx) {
        const subnet = subnets.find((s) => s.name === m.str('subnet', ''));
        const mac = m.str('mac', '');
        const discover = m.str('type', '') === 'discover';
        const ip = subnet
          ? pool.propose(mac, subnet, m.str('requested', '') || undefined, discover)
          : undefined;
        const st = pool.staticHost(mac);
        // Hold a pool offer at once: concurrent DISCOVERs (lookups are async) must not get the same address.
        if (ip && discover) pool.hold(ip, mac, offerTime);
        if (ctx.replyTo !== undefined)
          void ctx
            .reply(
              ip
                ? {
                    ip,
                    source: st?.ip === ip ? 'static' : 'pool',
                    hostname: st?.ip === ip ? st.hostname : undefined,
                  }
                : { error: subnet ? `no free address in ${subnet.name}` : 'unknown subnet', source: 'pool' },
            )
            .catch(() => {});
        return STOP;
      },
      { identity: POOL_IDENTITY, position: 'append' },
    );
  }

  detach(): void {
    this.poolHandle?.remove();
  }

  /** Count and log (summarised) a datagram that did not decode; `fields` say why and from where. */
  malformed(fields: Record<string, unknown>): void {
    this.counters.received++;
    this.counters.malformed++;
    this.summary.note('malformed', 'warn', 'malformed packet', fields);
  }

  /**
   * Count and log (summarised) a datagram the server's intake dropped without decoding it: the
   * server was behind (a DISCOVER that waited too long, or too many waiting; intake.ts).
   */
  overloaded(fields: Record<string, unknown>): void {
    this.counters.received++;
    this.counters.dropped++;
    this.counters.shed++;
    this.summary.note('shed', 'warn', 'overloaded: dropped a packet that waited too long', fields);
  }

  /** Write the log summaries that are due (the server calls this every second). */
  tick(): void {
    this.summary.tick();
  }

  /** Write every pending log summary (at close). */
  flushLogs(): void {
    this.summary.flush();
  }

  private drop(why: string, fields: Record<string, unknown>): undefined {
    this.counters.dropped++;
    this.log.log('debug', `dhcp: dropped: ${why}`, fields);
    return undefined;
  }

  /** Drop a packet of a counted kind (its own counter and `dropped`), logged in summaries. */
  private dropKind(kind: DropKind, fields: Record<string, unknown>): undefined {
    this.counters.dropped++;
    this.counters[kind]++;
    const d = DROPS[kind];
    this.summary.note(kind, d.level, d.message, fields);
    return undefined;
  }

  /** Handle one decoded packet; resolves with the reply to send, if any. Never throws. */
  async handle(inb: Inbound): Promise<Outbound | undefined> {
    this.counters.received++;
    try {
      return await this.dispatch(inb);
    } catch (e) {
      this.counters.dropped++;
      this.summary.note('failed', 'warn', 'failed to handle a packet', { error: e, from: inb.from.address });
      return undefined;
    }
  }

  private ip(p: DhcpPacket, code: number): string | undefined {
    const d = getOption(p, code);
    return d && d.length === 4 ? intToIp(d.readUInt32BE(0)) : undefined;
  }

  private async dispatch(inb: Inbound): Promise<Outbound | undefined> {
    const p = inb.packet;
    const mac = macOf(p);
    const type = messageType(p);
    if (p.op !== 1) return this.dropKind('notRequest', dropFields(inb, mac, type));
    const bad = badOptionLength(p);
    if (bad)
      return this.dropKind('badOptionLength', {
        ...dropFields(inb, mac, type),
        option: bad.code,
        name: bad.name,
        length: bad.length,
        expected: bad.want,
      });
    if (type === undefined) return this.dropKind('noMessageType', dropFields(inb, mac, type));
    if (p.hlen === 0 || p.chaddr.every((b) => b === 0))
      return this.dropKind('noClientMac', dropFields(inb, mac, type));
    this.announce(inb, mac, type);
    const subnet = this.subnetFor(p, mac, inb.interface);
    if (!subnet) return this.dropKind('noSubnet', dropFields(inb, mac, type));
    if (this.config.newClients.perSecond > 0 && this.limitable(p, type) && !this.known(mac)) {
      const link = `${inb.interface ?? ''}|${subnet.name}`;
      if (this.limiter.admit(link, mac) === 'limited')
        return this.dropKind('rateLimited', { ...dropFields(inb, mac, type), subnet: subnet.name });
    }
    switch (type) {
      case MessageType.DISCOVER:
        return this.discover(p, mac, subnet);
      case MessageType.REQUEST:
        return this.request(p, mac, subnet);
      case MessageType.DECLINE:
        return this.decline(p, mac, subnet);
      case MessageType.RELEASE:
        return this.release(p, mac);
      case MessageType.INFORM:
        return this.inform(p, mac, subnet);
      default:
        return this.drop('not a client message type', dropFields(inb, mac, type));
    }
  }

  /**
   * Whether the newClients limit applies to this packet: a DISCOVER, or a REQUEST that could bind
   * a lease for a client we do not know (SELECTING naming us, RENEWING/REBINDING). Not a REQUEST
   * for another server, nor an INIT-REBOOT (an unknown client gets silence anyway).
   */
  private limitable(p: DhcpPacket, type: number): boolean {
    if (type === MessageType.DISCOVER) return true;
    if (type !== MessageType.REQUEST) return false;
    const serverId = this.ip(p, 54);
    if (serverId !== undefined) return this.ours.has(serverId);
    return p.ciaddr !== ZERO;
  }

  /**
   * A record of this client for INIT-REBOOT: a lease in the store (bound, or free and remembered),
   * a static host entry, or an address for it from a lookup listener other than the pool.
   */
  private hasRecord(mac: string, d: Decision | undefined): boolean {
    return (
      this.store.ofMac(mac) !== undefined ||
      this.pool.staticHost(mac) !== undefined ||
      (d !== undefined && d.source !== 'pool' && d.source !== 'static')
    );
  }

  /**
   * A client the server knows: a lease (bound or free), a held offer (or one reclaimed from it),
   * or a static entry.
   */
  private known(mac: string): boolean {
    return (
      this.store.ofMac(mac) !== undefined ||
      this.pool.staticHost(mac) !== undefined ||
      this.pool.offeredTo(mac) !== undefined ||
      this.pool.lostOffer(mac) !== undefined
    );
  }

  private announce(inb: Inbound, mac: string, type: number): void {
    const name = TYPE_NAMES[type] ?? 'other';
    const byType = this.receivedByType;
    byType[name] = (byType[name] ?? 0) + 1;
    if (!this.bus.has(DHCPD_BASE + PACKET.suffix)) return; // nobody listens: no message to build
    const p = inb.packet;
    const hostname = getOption(p, 12);
    const init: MessageInit = {
      mac,
      type: name,
      xid: p.xid,
      ciaddr: p.ciaddr,
      giaddr: p.giaddr,
      flags: p.flags,
      from: `${inb.from.address}:${inb.from.port}`,
      interface: inb.interface,
      requested: this.ip(p, 50),
      'server-id': this.ip(p, 54),
      hostname: hostname?.length ? hostname.toString('utf8').replace(/\0+$/, '') : undefined,
      'client-id': getOption(p, 61),
      option: p.options.map((o) => ({ code: o.code, data: o.data })),
    };
    this.bus.post(DHCPD_BASE + PACKET.suffix, init);
  }

  /**
   * The subnet a packet belongs to: by giaddr (relayed); else by ciaddr; else the directly
   * attached subnet (the one of a `listen` address) that the requested address or the client's
   * lease points at; else the first directly attached subnet. When the packet arrived on a served
   * device (`iface`), "directly attached" means the subnets of that device's `listen` addresses
   * only, and a ciaddr elsewhere gets that device's subnet (hence a NAK): the device decides,
   * never another interface's subnet. See "Sockets, interfaces and their limits" in
   * docs/services/dhcp.md.
   */
  subnetFor(p: DhcpPacket, mac: string, iface?: string): SubnetConfig | undefined {
    if (p.giaddr !== ZERO) return subnetOf(this.config, p.giaddr);
    const direct = iface === undefined ? this.direct : (this.onInterface.get(iface) ?? []);
    const pick = (ip: string | undefined): SubnetConfig | undefined =>
      ip === undefined || ip === ZERO ? undefined : direct.find((s) => subnetOf(this.config, ip) === s);
    if (p.ciaddr !== ZERO)
      // A ciaddr on no served subnet (or, by device, not on this one): the client moved here; the
      // direct subnet answers (a NAK).
      return (iface === undefined ? subnetOf(this.config, p.ciaddr) : pick(p.ciaddr)) ?? direct[0];
    return pick(this.ip(p, 50)) ?? pick(this.store.ofMac(mac)?.ip) ?? direct[0];
  }

  serverId(subnet: SubnetConfig): string {
    return subnet.localAddress ?? this.config.listen[0]!.address;
  }

  // ---- the lookup hook ---------------------------------------------------------------------

  /**
   * Ask /dhcpd/lookup which address `mac` gets. The chain's first reply wins; an answered
   * address that is outside the client's subnet or taken by another client is logged and the
   * pool decides instead. No reply in time (or nobody listening): the pool decides.
   */
  private async decide(
    p: DhcpPacket,
    mac: string,
    subnet: SubnetConfig,
    type: 'discover' | 'request',
    requested: string | undefined,
  ): Promise<Decision | undefined> {
    if (this.onlyPoolListens()) {
      // Nobody else is in the chain: what the pool listener would answer, without the round trip
      // (a message, a reply mailbox, a waiter, a timer and two turns of the loop per packet).
      const ip = this.pool.propose(mac, subnet, requested, type === 'discover');
      if (ip === undefined) return undefined;
      this.counters.lookupsAnswered++;
      const st = this.pool.staticHost(mac);
      const own = st?.ip === ip;
      return {
        ip,
        leaseTime: undefined,
        hostname: own ? st.hostname : undefined,
        options: [],
        source: own ? 'static' : 'pool',
      };
    }
    const hostname = getOption(p, 12);
    const init: MessageInit = {
      mac,
      type,
      subnet: subnet.name,
      requested,
      giaddr: p.giaddr === ZERO ? undefined : p.giaddr,
      hostname: hostname?.length ? hostname.toString('utf8').replace(/\0+$/, '') : undefined,
      'client-id': getOption(p, 61),
    };
    let answer: Message | undefined;
    try {
      answer = await this.bus.request(DHCPD_BASE + LOOKUP.suffix, init, {
        timeout: this.config.lookupTimeout,
      });
      validate({ ...LOOKUP, suffix: '/lookup reply', tuples: LOOKUP_REPLY }, '/dhcpd/lookup reply', answer);
    } catch (e) {
      this.counters.lookupsRejected++;
      this.summary.note('lookup-failed', 'warn', 'lookup gave no usable answer; the pool decides', {
        mac,
        error: e,
      });
      answer = undefined;
    }
    if (answer?.has('ip')) {
      const ip = answer.str('ip');
      const why = this.pool.refusal(ip, mac, subnet);
      if (why === undefined) {
        let options: DhcpOption[] = [];
        try {
          options = answer.has('options') ? this.messageOptions(answer.list('options')) : [];
        } catch (e) {
          this.log.log('warn', 'dhcp: lookup answer has a bad option; ignoring its options', {
            mac,
            error: e,
          });
        }
        this.counters.lookupsAnswered++;
        return {
          ip,
          leaseTime: answer.has('lease-time') ? answer.int('lease-time') : undefined,
          hostname: answer.str('hostname', '') || undefined,
          options,
          source: answer.str('source', 'lookup'),
        };
      }
      const fromPool = answer.str('source', '') === 'pool';
      if (!fromPool) this.counters.lookupsRejected++;
      // The pool's own answer can only be refused when another client took the address meanwhile.
      this.summary.note(
        fromPool ? 'lookup-raced' : 'lookup-refused',
        fromPool ? 'debug' : 'warn',
        'lookup answered an address the client cannot have; the pool decides',
        { mac, ip, why, source: answer.str('source', '') },
      );
    } else if (answer) {
      return undefined; // the pool (or a listener) said: no address
    }
    const ip = this.pool.propose(mac, subnet, requested, type === 'discover');
    if (ip === undefined) return undefined;
    const st = this.pool.staticHost(mac);
    return {
      ip,
      leaseTime: undefined,
      hostname: st?.ip === ip ? st.hostname : undefined,
      options: [],
      source: 'pool',
    };
  }

  /** The lookup chain is the stock pool listener alone (no local, remote or waiting listener). */
  private onlyPoolListens(): boolean {
    const chain = this.bus.mailbox(DHCPD_BASE + LOOKUP.suffix)?.listeners;
    return chain !== undefined && chain.length === 1 && chain[0]!.id === this.poolHandle?.id;
  }

  private messageOptions(m: Message): DhcpOption[] {
    const out: DhcpOption[] = [];
    for (const t of m) {
      if (t.type === 'list') {
        out.push(
          toOption(
            t.tag,
            t.value.tuples.map((x) => x.value),
          ),
        );
      } else out.push(toOption(t.tag, t.type === 'int' ? Number(t.value) : t.value));
    }
    return out;
  }

  // ---- message types ---------------------------------------------------------------------

  private async discover(p: DhcpPacket, mac: string, subnet: SubnetConfig): Promise<Outbound | undefined> {
    const requested = this.ip(p, 50);
    let d = await this.decide(p, mac, subnet, 'discover', requested);
    if (d && this.pool.refusal(d.ip, mac, subnet)) {
      // Another client took it while the lookup ran: ask the pool again (synchronously).
      const ip = this.pool.propose(mac, subnet, requested, true);
      d = ip ? { ...d, ip, source: 'pool' } : undefined;
    }
    if (!d) return this.dropKind('noAddress', { mac, subnet: subnet.name });
    this.pool.hold(d.ip, mac, this.config.offerTime);
    this.counters.offers++;
    return this.reply(p, subnet, { type: MessageType.OFFER, yiaddr: d.ip, decision: d, mac });
  }

  private async request(p: DhcpPacket, mac: string, subnet: SubnetConfig): Promise<Outbound | undefined> {
    const serverId = this.ip(p, 54);
    const requested = this.ip(p, 50);
    let wanted: string;
    let state: 'selecting' | 'init-reboot' | 'renewing';
    if (serverId !== undefined) {
      if (!this.ours.has(serverId)) {
        this.pool.dropOffer(mac);
        return this.drop('the client chose another server', { mac, serverId });
      }
      state = 'selecting';
      wanted = requested ?? p.ciaddr;
      // Its offer was reclaimed (the pool ran dry) before this REQUEST came: the first to ask wins.
      if (this.pool.restore(mac, wanted, subnet, this.config.offerTime))
        this.log.log('debug', 'dhcp: a reclaimed offer was asked for after all: restored', {
          mac,
          ip: wanted,
        });
    } else if (requested !== undefined && p.ciaddr === ZERO) {
      state = 'init-reboot';
      wanted = requested;
    } else if (p.ciaddr !== ZERO) {
      state = 'renewing'; // RENEWING (unicast) or REBINDING (broadcast): the same answer
      wanted = p.ciaddr;
    } else return this.drop('REQUEST with neither server-id, requested address nor ciaddr', { mac });
    if (wanted === ZERO) return this.drop('REQUEST without an address', { mac });
    const inSubnet = subnetOf(this.config, wanted) === subnet;
    if (!inSubnet) {
      // Wrong network (moved to another link): NAK so the client starts over.
      return this.nak(p, subnet, mac, `${wanted} is not on ${subnet.name}`);
    }
    const d = await this.decide(p, mac, subnet, 'request', wanted);
    // RFC 2131 4.3.2: "If the DHCP server has no record of this client, then it MUST remain
    // silent" (another server may have one). The pool choosing a free address is no record.
    if (state === 'init-reboot' && !this.hasRecord(mac, d))
      return this.drop('INIT-REBOOT from a client we have no record of: silent (RFC 2131 4.3.2)', {
        mac,
        wanted,
      });
    if (!d || d.ip !== wanted || this.pool.refusal(wanted, mac, subnet)) {
      const known = this.store.ofMac(mac) !== undefined || this.pool.staticHost(mac) !== undefined;
      if (state !== 'selecting' && !known && this.pool.refusal(wanted, mac, subnet) === undefined)
        return this.drop('no record of this client: staying silent (RFC 2131 4.3.2)', { mac, wanted });
      return this.nak(
        p,
        subnet,
        mac,
        d ? `${wanted} is not for this client (it gets ${d.ip})` : 'no address',
      );
    }
    const leaseTime = d.leaseTime ?? subnet.leaseTime;
    const expires = this.now() + leaseTime * 1000;
    const hostname = d.hostname ?? (getOption(p, 12)?.toString('utf8').replace(/\0+$/, '') || undefined);
    await this.store.commit({ mac, ip: wanted, expires, hostname });
    this.pool.dropOffer(mac);
    this.counters.acks++;
    this.bus.post(DHCPD_BASE + COMMITTED.suffix, {
      mac,
      ip: wanted,
      expires,
      'lease-time': leaseTime,
      subnet: subnet.name,
      hostname,
    });
    this.log.log('debug', 'dhcp: lease', { mac, ip: wanted, state, source: d.source, leaseTime });
    return this.reply(p, subnet, {
      type: MessageType.ACK,
      yiaddr: wanted,
      decision: { ...d, leaseTime },
      mac,
    });
  }

  private nak(p: DhcpPacket, subnet: SubnetConfig, mac: string, why: string): Outbound {
    this.counters.naks++;
    this.log.log('debug', 'dhcp: NAK', { mac, why });
    return this.reply(p, subnet, {
      type: MessageType.NAK,
      yiaddr: ZERO,
      decision: undefined,
      mac,
      message: why,
    });
  }

  private async decline(p: DhcpPacket, mac: string, subnet: SubnetConfig): Promise<undefined> {
    const serverId = this.ip(p, 54);
    const ip = this.ip(p, 50);
    if (serverId !== undefined && !this.ours.has(serverId))
      return this.drop('DECLINE for another server', { mac });
    if (!ip) return this.drop('DECLINE without a requested address', { mac });
    const held = this.store.ofMac(mac)?.ip === ip || this.pool.offeredTo(mac) === ip;
    if (!held || subnetOf(this.config, ip) !== subnet)
      return this.drop('DECLINE of an address not given to this client', { mac, ip });
    this.counters.declines++;
    this.pool.dropOffer(mac);
    await this.store.decline(ip, this.now() + this.config.declineTime * 1000);
    this.log.log('warn', 'dhcp: address declined (in use by an unknown host): quarantined', {
      mac,
      ip,
      seconds: this.config.declineTime,
    });
    this.bus.post(DHCPD_BASE + RELEASED.suffix, { mac, ip, reason: 'decline' });
    return undefined;
  }

  private async release(p: DhcpPacket, mac: string): Promise<undefined> {
    const serverId = this.ip(p, 54);
    if (serverId !== undefined && !this.ours.has(serverId))
      return this.drop('RELEASE for another server', { mac });
    if (await this.store.free(mac, p.ciaddr, 'release')) {
      this.counters.releases++;
      this.bus.post(DHCPD_BASE + RELEASED.suffix, { mac, ip: p.ciaddr, reason: 'release' });
      this.log.log('debug', 'dhcp: released', { mac, ip: p.ciaddr });
    }
    return undefined;
  }

  private inform(p: DhcpPacket, mac: string, subnet: SubnetConfig): Outbound | undefined {
    if (p.ciaddr === ZERO) return this.drop('INFORM without ciaddr', { mac });
    if (subnetOf(this.config, p.ciaddr) !== subnet)
      return this.drop('INFORM from a subnet we do not serve', { mac });
    this.counters.informs++;
    return this.reply(p, subnet, {
      type: MessageType.ACK,
      yiaddr: ZERO,
      decision: undefined,
      mac,
      inform: true,
    });
  }

  // ---- replies ---------------------------------------------------------------------------

  private reply(
    p: DhcpPacket,
    subnet: SubnetConfig,
    r: Omit<ReplyPlan, 'serverId' | 'subnet' | 'configOptions' | 'decision'> & {
      decision: Decision | undefined;
    },
  ): Outbound {
    const ofSubnet = this.subnetOptions.get(subnet) ?? NONE;
    const ofHost = this.hostOptions.size === 0 ? NONE : (this.hostOptions.get(r.mac) ?? NONE);
    const ofDecision = r.decision?.options ?? NONE;
    const configOptions =
      this.globalOptions.length + ofSubnet.length + ofHost.length + ofDecision.length === 0
        ? NONE
        : [...this.globalOptions, ...ofSubnet, ...ofHost, ...ofDecision];
    // One shape for every plan and every Outbound (object spreads here cost ~5 % of a DORA's CPU).
    const plan: ReplyPlan = {
      type: r.type,
      yiaddr: r.yiaddr,
      mac: r.mac,
      decision: r.decision,
      serverId: this.serverId(subnet),
      subnet,
      configOptions,
      message: r.message,
      inform: r.inform,
    };
    const packet = buildReply(p, plan);
    const max = getOption(p, 57);
    const maxSize = max && max.length === 2 ? Math.max(576, max.readUInt16BE(0)) : 576;
    return this.destination(p, packet, maxSize, r.type, subnet);
  }

  /**
   * RFC 2131 4.1: giaddr set → the relay, port 67 (a NAK gets the broadcast bit); else a NAK →
   * broadcast; else ciaddr set → unicast to ciaddr:68; else broadcast 255.255.255.255:68 (also
   * when the client did not set the broadcast bit: Node cannot send to yiaddr without ARP).
   */
  private destination(
    req: DhcpPacket,
    packet: DhcpPacket,
    maxSize: number,
    type: number,
    subnet: SubnetConfig,
  ): Outbound {
    const via = subnet.localAddress;
    if (req.giaddr !== ZERO) {
      if (type === MessageType.NAK) packet.flags |= 0x8000;
      const to = { address: req.giaddr, port: this.relayPort };
      return { packet, maxSize, to, broadcast: false, via: undefined };
    }
    if (type !== MessageType.NAK && req.ciaddr !== ZERO)
      return { packet, maxSize, to: { address: req.ciaddr, port: this.clientPort }, broadcast: false, via };
    return {
      packet,
      maxSize,
      to: { address: '255.255.255.255', port: this.clientPort },
      broadcast: true,
      via,
    };
  }

  // ---- housekeeping ----------------------------------------------------------------------

  /** Expire leases and offers; announce expired leases. */
  async expire(): Promise<void> {
    this.pool.sweep();
    for (const l of await this.store.expire(this.now())) {
      this.bus.post(DHCPD_BASE + RELEASED.suffix, { mac: l.mac, ip: l.ip, reason: 'expired' });
      this.log.log('debug', 'dhcp: lease expired', { mac: l.mac, ip: l.ip });
    }
  }
}
