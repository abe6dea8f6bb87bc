import { createSocket, type Socket } from 'node:dgram';
import type { Bus } from '../../core/bus.js';
import { STOP } from '../../core/listener.js';
import type { Logger } from '../../core/log.js';
import { attachTable } from '../table.js';
import type { DhcpConfig } from './config.js';
import { DhcpCore, type Outbound } from './core.js';
import { LeaseStore } from './leases.js';
import { decodePacket } from './packet.js';
import { Pool } from './pool.js';
import { encodeReply } from './reply.js';
import { DHCPD_BASE, DHCPD_TABLE } from './table.js';

/**
 * The DHCPv4 server: sockets around DhcpCore. One socket bound to 0.0.0.0:67 receives
 * broadcasts; one socket per `listen` address (reuseAddr, broadcast on) receives unicasts to that
 * address and sends the replies to that address's subnet (a broadcast sent from the 0.0.0.0
 * socket fails with ENETUNREACH when there is no default route). Node cannot bind a socket to a
 * device (SO_BINDTODEVICE): see "Several interfaces" in docs/services/dhcp.md.
 */

/** Asked for each socket's receive buffer (SO_RCVBUF; the kernel caps it at net.core.rmem_max). */
const RECV_BUFFER_BYTES = 4 << 20;

export interface DhcpServerOptions {
  /** Server port (67). Tests use others. */
  readonly port?: number;
  /** Client port replies go to (68). */
  readonly clientPort?: number;
  /** Port of relays (giaddr) replies go to (67). */
  readonly relayPort?: number;
  /** Bind the receiving wildcard socket (default true). */
  readonly wildcard?: boolean;
  readonly now?: () => number;
  readonly logger?: Logger;
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
      const c = core.counters;
      await ctx.reply({
        received: c.received,
        malformed: c.malformed,
        dropped: c.dropped,
        offers: c.offers,
        acks: c.acks,
        naks: c.naks,
        informs: c.informs,
        releases: c.releases,
        declines: c.declines,
        'lookups-answered': c.lookupsAnswered,
        'lookups-rejected': c.lookupsRejected,
        leases: store.active().length,
      });
      return STOP;
    },
  });

  const port = opts.port ?? 67;
  const sockets: Socket[] = [];
  const byAddress = new Map<string, Socket>();
  let closed = false;

  const send = (out: Outbound): void => {
    let buf: Buffer;
    try {
      buf = encodeReply(out.packet, out.maxSize);
    } catch (e) {
      log.log('error', 'dhcp: cannot encode a reply', { error: e, to: out.to.address });
      return;
    }
    const s = (out.via !== undefined ? byAddress.get(out.via) : undefined) ?? sockets[0];
    if (!s || closed) return;
    s.send(buf, out.to.port, out.to.address, (e) => {
      if (e) log.log('warn', 'dhcp: send failed', { error: e, to: `${out.to.address}:${out.to.port}` });
    });
  };

  const onMessage = (buf: Buffer, rinfo: { address: string; port: number }): void => {
    let packet: ReturnType<typeof decodePacket>;
    try {
      packet = decodePacket(buf);
    } catch (e) {
      core.malformed();
      log.log('warn', 'dhcp: malformed packet', {
        from: `${rinfo.address}:${rinfo.port}`,
        bytes: buf.length,
        error: e,
        field: (e as { field?: string }).field,
        offset: (e as { offset?: number }).offset,
      });
      return;
    }
    void core.handle({ packet, from: rinfo }).then((out) => {
      if (out) send(out);
    });
  };

  const open = async (address: string): Promise<Socket> => {
    // A large receive buffer: while the process is off the CPU (a GC, a busy machine) a burst of
    // requests queues in the kernel instead of being dropped (RcvbufErrors). The kernel caps it
    // at net.core.rmem_max.
    const s = createSocket({ type: 'udp4', reuseAddr: true, recvBufferSize: RECV_BUFFER_BYTES });
    s.on('message', onMessage);
    s.on('error', (e) => log.log('error', 'dhcp: socket error', { address, error: e }));
    await bind(s, port, address);
    s.setBroadcast(true);
    sockets.push(s);
    return s;
  };

  try {
    // The per-address sockets first: sockets[0] (the default sender) is the first listen address.
    for (const l of config.listen) byAddress.set(l.address, await open(l.address));
    if (opts.wildcard !== false) await open('0.0.0.0');
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
  log.log('info', 'dhcpd serving', {
    listen: config.listen.map((l) => `${l.interface ?? '?'}=${l.address}`).join(' '),
    port,
    subnets: config.subnets.map((s) => s.name).join(' '),
    leases: store.active().length,
  });

  return {
    core,
    store,
    port,
    async close() {
      if (closed) return;
      closed = true;
      expiry.cancel();
      compaction.cancel();
      await Promise.all(sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
      detach();
      core.detach();
      await store.close();
    },
  };
}
