import dgram from 'node:dgram';
import net from 'node:net';
import type { Logger } from '../../core/log.js';
import type { Client, Forwarder } from './forwarder.js';

/**
 * The sockets: UDP and TCP on every listen address, feeding Forwarder.handle. TCP uses the
 * 2-byte length framing of RFC 1035 §4.2.2: several queries per connection, answered as each is
 * ready (out of order is allowed, RFC 7766 §6.2.1.1), a connection idle for `tcpIdleMs` closed.
 */

export interface ServerOptions {
  readonly listen: readonly string[];
  /** 0: a free port, the same for UDP and TCP on each address. */
  readonly port: number;
  readonly tcpIdleMs: number;
  readonly maxTcpClients: number;
  readonly log: Logger;
}

export interface Listening {
  /** `address:port` of every socket, UDP and TCP alike. */
  readonly addresses: readonly { address: string; port: number }[];
  readonly tcpClients: () => number;
  close(): Promise<void>;
}

/** Queries one TCP connection may have in flight before we stop reading from it. */
const TCP_PIPELINE = 64;

export async function listen(forwarder: Forwarder, o: ServerOptions): Promise<Listening> {
  const udp: dgram.Socket[] = [];
  const tcp: net.Server[] = [];
  const conns = new Set<net.Socket>();
  const addresses: { address: string; port: number }[] = [];
  const close = async (): Promise<void> => {
    for (const c of conns) c.destroy();
    await Promise.all([
      ...udp.map((s) => new Promise<void>((r) => s.close(() => r()))),
      ...tcp.map((s) => new Promise<void>((r) => s.close(() => r()))),
    ]);
  };
  try {
    for (const address of o.listen) {
      const u = await bindUdp(forwarder, address, o.port, o.log);
      udp.push(u);
      const port = u.address().port;
      tcp.push(await bindTcp(forwarder, address, port, o, conns));
      addresses.push({ address, port });
    }
  } catch (e) {
    await close();
    throw e;
  }
  return { addresses, tcpClients: () => conns.size, close };
}

function bindUdp(forwarder: Forwarder, address: string, port: number, log: Logger): Promise<dgram.Socket> {
  const sock = dgram.createSocket({ type: net.isIPv6(address) ? 'udp6' : 'udp4' });
  sock.on('message', (buf, rinfo) => {
    const client: Client = { address: rinfo.address, port: rinfo.port, proto: 'udp' };
    void forwarder.handle(buf, client).then((out) => {
      if (out)
        sock.send(out, rinfo.port, rinfo.address, (e) => {
          if (e) log.log('debug', 'dns: udp send failed', { client: rinfo.address, error: e });
        });
    });
  });
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(port, address, () => {
      sock.off('error', reject);
      sock.on('error', (e) => log.log('warn', 'dns: udp socket error', { address, error: e }));
      resolve(sock);
    });
  });
}

function bindTcp(
  forwarder: Forwarder,
  address: string,
  port: number,
  o: ServerOptions,
  conns: Set<net.Socket>,
): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true }, (sock) =>
    serveConnection(forwarder, sock, o, conns),
  );
  server.maxConnections = o.maxTcpClients;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: address, port, exclusive: true }, () => {
      server.off('error', reject);
      server.on('error', (e) => o.log.log('warn', 'dns: tcp server error', { address, error: e }));
      resolve(server);
    });
  });
}

function serveConnection(
  forwarder: Forwarder,
  sock: net.Socket,
  o: ServerOptions,
  conns: Set<net.Socket>,
): void {
  conns.add(sock);
  const client: Client = { address: sock.remoteAddress ?? '', port: sock.remotePort ?? 0, proto: 'tcp' };
  let buf: Buffer = Buffer.alloc(0);
  let inflight = 0;
  let ended = false;
  // Idle = no byte read and nothing in flight for tcpIdleMs.
  sock.setTimeout(o.tcpIdleMs, () => {
    if (inflight === 0) sock.destroy();
  });
  sock.on('close', () => conns.delete(sock));
  sock.on('error', () => sock.destroy());
  sock.on('end', () => {
    ended = true;
    if (inflight === 0) sock.end();
  });
  sock.on('data', (d: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    while (buf.length >= 2) {
      const n = buf.readUInt16BE(0);
      if (buf.length < 2 + n) break;
      const frame = Buffer.from(buf.subarray(2, 2 + n));
      buf = buf.subarray(2 + n);
      inflight++;
      if (inflight >= TCP_PIPELINE) sock.pause();
      void forwarder.handle(frame, client).then((out) => {
        inflight--;
        if (sock.destroyed) return;
        if (out) {
          const len = Buffer.alloc(2);
          len.writeUInt16BE(out.length);
          sock.write(Buffer.concat([len, out]));
        }
        if (sock.isPaused() && inflight < TCP_PIPELINE) sock.resume();
        if (ended && inflight === 0) sock.end();
      });
    }
  });
}
