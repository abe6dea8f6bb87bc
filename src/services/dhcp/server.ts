import { createSocket, type Socket, type SocketOptions } from 'node:dgram';
import { lookup as dnsLookup } from 'node:dns';
import { closeSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import type { Bus } from '../../core/bus.js';
import { STOP } from '../../core/listener.js';
import type { Logger } from '../../core/log.js';
import { attachTable } from '../table.js';
import type { DhcpConfig } from './config.js';
import { type Counters, DhcpCore, type Outbound } from './core.js';
import { openDeviceSocket } from './devsocket.js';
import { Intake, type IntakeOptions, isDiscover } from './intake.js';
import { LeaseStore } from './leases.js';
import { decodePacket } from './packet.js';
import { Pool } from './pool.js';
import { encodeReply } from './reply.js';
import { DHCPD_BASE, DHCPD_TABLE, STATS_REPLY } from './table.js';

/**
 * The DHCPv4 server: sockets around DhcpCore.
 *
 * - `listen` entries with an `interface`: one socket per device, bound to it (SO_BINDTODEVICE,
 *   devsocket.ts) on 0.0.0.0:67. It receives what arrives on that device only (broadcasts, and
 *   unicasts to any of our addresses: renewals, relays); each packet is handed to the core with
 *   the device's name (the subnet is then the device's), and its reply leaves by the same socket,
 *   so by the same device. Nothing is received on an interface no entry names.
 * - entries without one (the old way): one socket bound to 0.0.0.0:67 receives broadcasts from
 *   every interface; one socket per address (reuseAddr, broadcast on) receives unicasts to that
 *   address and sends the replies for that address's subnet (a broadcast sent from the 0.0.0.0
 *   socket fails with ENETUNREACH when there is no default route).
 *
 * The config does not mix the two (config.ts): a 0.0.0.0 socket would also receive every
 * broadcast arriving on the named devices, and answer it twice. See "Sockets, interfaces and their
 * limits" in docs/services/dhcp.md.
 */

/**
 * Asked for each socket's receive buffer (SO_RCVBUF; the kernel doubles it and caps the request at
 * net.core.rmem_max): ~800 datagrams, a stall of the process of 80 ms at 5,000 exchanges/s. Small
 * enough that a packet never waits long there, unseen by the intake (intake.ts) that orders and
 * sheds what waits (a buffer of seconds of packets makes every answer late past saturation).
 */
const RECV_BUFFER_BYTES = 512 << 10;

/**
 * The sockets' resolver: every address they bind or send to is a dotted quad (config `listen`,
 * giaddr, ciaddr, 255.255.255.255), handed back at once. dgram's default (dns.lookup) answers a
 * literal a tick later (a process.nextTick and a closure per reply sent).
 */
const literalLookup = ((
  address: string,
  family: unknown,
  cb: (e: Error | null, a: string, f: number) => void,
) => {
  if (isIPv4(address)) cb(null, address, 4);
  else dnsLookup(address, family as number, cb);
}) as unknown as NonNullable<SocketOptions['lookup']>;

/** The counter behind a field of STATS_REPLY: `bad-option-length` → `badOptionLength`. */
const counterOf = (tag: string): keyof Counters =>
  tag.replace(/-(.)/g, (_, c: string) => c.toUpperCase()) as keyof Counters;

/** The /dhcpd/stats reply: every field of STATS_REPLY, in its order. */
export function statsOf(core: DhcpCore, store: LeaseStore): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of STATS_REPLY)
    out[t.tag] = t.tag === 'leases' ? store.active().length : core.counters[counterOf(t.tag)];
  return out;
}

/** A datagram waiting in the intake. */
interface Datagram {
  readonly buf: Buffer;
  readonly rinfo: { readonly address: string; readonly port: number };
  readonly socket: Socket;
  /** The device the socket is bound to, if it is a device's. */
  readonly device: string | undefined;
}

export interface DhcpServerOptions {
  /** Server port (67). Tests use others. */
  readonly port?: number;
  /** Client port replies go to (68). */
  readonly clientPort?: number;
  /** Port of relays (giaddr) replies go to (67). */
  readonly relayPort?: number;
  /** Bind the receiving wildcard socket (default true; there is none when `listen` names devices). */
  readonly wildcard?: boolean;
  readonly now?: () => number;
  readonly logger?: Logger;
  /** The intake's turn length and shedding bounds (intake.ts; tests use small ones). */
  readonly intake?: IntakeOptions;
}

export interface DhcpServer {
  readonly core: DhcpCore;
  readonly store: LeaseStore;
  /** The port the sockets are bound to. */
  readonly port: number;
  close(): Promise<void>;
}

function bind(s: Socket, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void =>
      reject(new Error(`dhcpd: cannot bind ${address}:${port}: ${e.message}`));
    s.once('error', onError);
    s.bind({ port, address, exclusive: true }, () => {
      s.off('error', onError);
      resolve();
    });
  });
}

/** Adopt a bound descriptor (devsocket.ts); on failure the descriptor is closed with the socket. */
function adopt(s: Socket, fd: number, device: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void =>
      reject(new Error(`dhcpd: cannot bind to device ${device}: ${e.message}`));
    s.once('error', onError);
    try {
      s.bind({ fd }, () => {
        s.off('error', onError);
        resolve();
      });
    } catch (e) {
      closeSync(fd);
      onError(e as Error);
    }
  });
}

export async function startDhcpServer(
  bus: Bus,
  config: DhcpConfig,
  opts: DhcpServerOptions = {},
): Promise<DhcpServer> {
  const log = opts.logger ?? bus.log;
  const store = await LeaseStore.open(config.leaseFile, { log, now: opts.now });
  const pool = new Pool(config, store, opts.now);
  const core = new DhcpCore(bus, config, store, pool, {
    log,
    now: opts.now,
    clientPort: opts.clientPort,
    relayPort: opts.relayPort,
  });
  for (const spec of DHCPD_TABLE)
    if (!bus.has(DHCPD_BASE + spec.suffix))
      bus.create(DHCPD_BASE + spec.suffix, { tuples: { doc: spec.doc, dir: spec.dir } });
  core.attachPool();
  const detach = attachTable(bus, DHCPD_BASE, DHCPD_TABLE, {
    '/leases': async (_m, ctx) => {
      const all = store.all();
      await ctx.reply({
        count: all.length,
        lease: all.map((l) => ({
          mac: l.mac,
          ip: l.ip,
          expires: l.expires,
          state: l.state,
          hostname: l.hostname,
        })),
      });
      return STOP;
    },
    '/stats': async (_m, ctx) => {
      await ctx.reply(statsOf(core, store));
      return STOP;
    },
  });

  const port = opts.port ?? 67;
  const sockets: Socket[] = [];
  const byAddress = new Map<string, Socket>();
  let closed = false;

  /** `from`: the device socket the request arrived on; its reply leaves by it. */
  const send = (out: Outbound, from: Socket | undefined): void => {
    let buf: Buffer;
    try {
      buf = encodeReply(out.packet, out.maxSize);
    } catch (e) {
      log.log('error', 'dhcp: cannot encode a reply', { error: e, to: out.to.address });
      return;
    }
    const s = from ?? (out.via !== undefined ? byAddress.get(out.via) : undefined) ?? sockets[0];
    if (!s || closed) return;
    s.send(buf, out.to.port, out.to.address, sent);
  };
  // One callback for every send (the error names the destination).
  const sent = (e: Error | null): void => {
    if (e) log.log('warn', 'dhcp: send failed', { error: e });
  };

  /** Decode one datagram and hand it to the core; its reply leaves by `s` when it is a device's. */
  const handlePacket = (d: Datagram): void => {
    const { buf, rinfo, socket: s, device } = d;
    let packet: ReturnType<typeof decodePacket>;
    try {
      packet = decodePacket(buf);
    } catch (e) {
      core.malformed({
        from: `${rinfo.address}:${rinfo.port}`,
        interface: device,
        bytes: buf.length,
        error: e,
        field: (e as { field?: string }).field,
        offset: (e as { offset?: number }).offset,
      });
      return;
    }
    const inb = device === undefined ? { packet, from: rinfo } : { packet, from: rinfo, interface: device };
    void core.handle(inb).then((out) => {
      if (out) send(out, device === undefined ? undefined : s);
    });
  };
  // Datagrams are read as they come and handled in bounded turns, REQUESTs first (intake.ts).
  const intake = new Intake<Datagram>(
    handlePacket,
    (d, why, waitedMs) =>
      core.overloaded({
        why,
        waitedMs: Math.round(waitedMs),
        from: `${d.rinfo.address}:${d.rinfo.port}`,
        interface: d.device,
      }),
    opts.intake,
  );

  /** `device`: the socket is bound to this device (its packets are tagged with it). */
  const receiver =
    (s: Socket, device: string | undefined) =>
    (buf: Buffer, rinfo: { address: string; port: number }): void =>
      intake.add({ buf, rinfo, socket: s, device }, isDiscover(buf));

  // A receive buffer for a stall of the process (a GC, a busy machine): RECV_BUFFER_BYTES.
  const socket = (where: string, device: string | undefined): Socket => {
    const s = createSocket({
      type: 'udp4',
      reuseAddr: true,
      recvBufferSize: RECV_BUFFER_BYTES,
      lookup: literalLookup,
    });
    s.on('message', receiver(s, device));
    s.on('error', (e) => log.log('error', 'dhcp: socket error', { socket: where, error: e }));
    sockets.push(s);
    return s;
  };

  const open = async (address: string): Promise<Socket> => {
    const s = socket(address, undefined);
    await bind(s, port, address);
    s.setBroadcast(true);
    return s;
  };

  const openDevice = async (device: string): Promise<void> => {
    const fd = await openDeviceSocket(device, port);
    const s = socket(`${device} 0.0.0.0:${port}`, device);
    await adopt(s, fd, device);
  };

  const devices = new Set(config.listen.flatMap((l) => (l.interface === undefined ? [] : [l.interface])));
  try {
    if (devices.size > 0) for (const d of devices) await openDevice(d);
    else {
      // The per-address sockets first: sockets[0] (the default sender) is the first listen address.
      for (const l of config.listen) byAddress.set(l.address, await open(l.address));
      if (opts.wildcard !== false) await open('0.0.0.0');
    }
  } catch (e) {
    for (const s of sockets) s.close();
    detach();
    core.detach();
    await store.close();
    throw e;
  }

  const failed =
    (what: string) =>
    (e: unknown): void =>
      log.log('error', `dhcp: ${what} failed`, { error: e });
  const expiry = bus.every(config.expiryInterval * 1000, async () => {
    await core.expire().catch(failed('expiry sweep'));
    // Compact early when the journal has grown far past the state it describes.
    if (store.journalLines > Math.max(10_000, 4 * store.all().length))
      await store.compact().catch(failed('compaction'));
  });
  const compaction = bus.every(config.compactInterval * 1000, () =>
    store.compact().catch(failed('compaction')),
  );
  // Summaries of dropped packets (one line per kind per 5 s at most) are written when due.
  const summaries = bus.every(1000, () => core.tick());
  log.log('info', 'dhcpd serving', {
    listen: config.listen.map((l) => `${l.interface ?? '?'}=${l.address}`).join(' '),
    sockets: devices.size > 0 ? `one per device (${[...devices].join(' ')})` : 'wildcard + one per address',
    port,
    subnets: config.subnets.map((s) => s.name).join(' '),
    leases: store.active().length,
    leaseFile: config.leaseFile,
    newClients:
      config.newClients.perSecond > 0
        ? `${config.newClients.perSecond}/s per link, burst ${config.newClients.burst}`
        : 'no limit',
  });

  return {
    core,
    store,
    port,
    async close() {
      if (closed) return;
      closed = true;
      intake.close();
      expiry.cancel();
      compaction.cancel();
      summaries.cancel();
      core.flushLogs();
      await Promise.all(sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
      detach();
      core.detach();
      await store.close();
    },
  };
}
