import dgram from 'node:dgram';
import net from 'node:net';
import type { Bus } from '../../core/bus.js';
import type { Context } from '../../core/listener.js';
import type { Message } from '../../core/message.js';
import { attachTable } from '../table.js';
import { guarded, report, SocketError } from './fail.js';
import { socketTable } from './table.js';
import { inetOf, localOf } from './where.js';

/** A udp socket object. The node socket is made on first bind, connect or write (its family from the address). */
export class DatagramSocket {
  private sock: dgram.Socket | undefined;
  private connected = false;
  private closing = false;
  private closed = false;
  private readonly detach: () => void;
  private settle!: () => void;
  readonly done = new Promise<void>((r) => (this.settle = r));

  constructor(
    private readonly bus: Bus,
    readonly name: string,
  ) {
    const g = (fn: (m: Message, ctx: Context) => unknown) => guarded(bus, name, fn);
    this.detach = attachTable(bus, name, socketTable, {
      '/bind': g((m, ctx) => this.bind(m, ctx)),
      '/listen': g(() => {
        throw new SocketError('EOPNOTSUPP', `${name}/listen: udp sockets do not listen: bind, then read`);
      }),
      '/connect': g((m, ctx) => this.connect(m, ctx)),
      '/write': g((m, ctx) => this.write(m, ctx)),
      '/close': g(() => {
        void this.close(); // <name>/closed says when it is done
      }),
    });
  }

  private socket(host: string | undefined): dgram.Socket {
    if (this.sock) return this.sock;
    const s = dgram.createSocket(host && net.isIPv6(host) ? 'udp6' : 'udp4');
    s.on('message', (data, r) =>
      this.bus.post(`${this.name}/read`, { data, peerhost: r.address, peerport: r.port }),
    );
    s.on('error', (e) => report(this.bus, this.name, e));
    s.on('close', () => this.finish());
    this.sock = s;
    return s;
  }

  private async bind(m: Message, ctx: Context): Promise<void> {
    if (this.sock) throw new SocketError('EINVAL', `${this.name}/bind: already bound`);
    const at = inetOf(m, `${this.name}/bind`);
    const s = this.socket(at.host);
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind({ address: at.host, port: at.port }, () => {
        s.off('error', reject);
        resolve();
      });
    }).catch((e: unknown) => {
      this.sock = undefined;
      s.removeAllListeners('close');
      s.close();
      throw e;
    });
    const local = localOf(s.address());
    this.bus.post(`${this.name}/listening`, local);
    if (ctx.replyTo) ctx.reply(local).catch(() => {});
  }

  private async connect(m: Message, ctx: Context): Promise<void> {
    if (this.connected) throw new SocketError('EISCONN', `${this.name}/connect: already connected`);
    const to = inetOf(m, `${this.name}/connect`, true);
    const s = this.socket(to.host);
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.connect(to.port, to.host, () => {
        s.off('error', reject);
        resolve();
      });
    });
    this.connected = true;
    const peer = s.remoteAddress();
    const local = s.address();
    const tuples = { host: peer.address, port: peer.port, localhost: local.address, localport: local.port };
    this.bus.post(`${this.name}/connected`, tuples);
    if (ctx.replyTo) ctx.reply(tuples).catch(() => {});
  }

  private async write(m: Message, ctx: Context): Promise<void> {
    const d = m.get('data');
    const data = d?.type === 'str' ? Buffer.from(d.value) : m.bytes('data');
    const to = m.has('host') || m.has('port') ? inetOf(m, `${this.name}/write`, true) : undefined;
    if (!to && !this.connected)
      throw new SocketError('EDESTADDRREQ', `${this.name}/write: not connected: give "host" and "port"`);
    if (to && this.connected)
      throw new SocketError('EISCONN', `${this.name}/write: connected: no "host"/"port" allowed`);
    const s = this.socket(to?.host);
    await new Promise<void>((resolve, reject) => {
      const done = (e: Error | null): void => (e ? reject(e) : resolve());
      if (to) s.send(data, to.port, to.host, done);
      else s.send(data, done);
    });
    if (ctx.replyTo) ctx.reply({ full: false, buffered: s.getSendQueueSize() }).catch(() => {});
  }

  close(): Promise<void> {
    if (this.closing) return this.done;
    this.closing = true;
    if (this.sock) this.sock.close();
    else this.finish();
    return this.done;
  }

  destroy(): Promise<void> {
    return this.close();
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.detach();
    this.bus.post(`${this.name}/closed`, {});
    this.settle();
  }
}
