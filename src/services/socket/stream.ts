import net from 'node:net';
import type { Bus } from '../../core/bus.js';
import type { Context } from '../../core/listener.js';
import type { Message } from '../../core/message.js';
import { attachTable } from '../table.js';
import { guarded, report, SocketError } from './fail.js';
import { socketTable } from './table.js';
import { localOf, peerOf, type Where, whereOf } from './where.js';

/**
 * A tcp or unix stream socket object: either a listener (net.Server) or a connection (net.Socket,
 * made by connect or accepted by a listener). Mailboxes: see ./table.ts and docs/services/socket.md.
 */
export class StreamSocket {
  private bound: Where | undefined;
  private server: net.Server | undefined;
  private sock: net.Socket | undefined;
  private full = false;
  private clients = 0;
  private closing = false;
  private closed = false;
  private readonly detach: () => void;
  private settle!: () => void;
  /** Resolves once the socket is closed and its mailboxes detached. */
  readonly done = new Promise<void>((r) => (this.settle = r));

  constructor(
    private readonly bus: Bus,
    readonly name: string,
    private readonly unix: boolean,
    /** Called for each accepted connection, which is an object of its own. */
    private readonly adopt: (client: StreamSocket) => void,
    accepted?: net.Socket,
  ) {
    const g = (fn: (m: Message, ctx: Context) => unknown) => guarded(bus, name, fn);
    this.detach = attachTable(bus, name, socketTable, {
      '/bind': g((m, ctx) => this.bind(m, ctx)),
      '/listen': g((m, ctx) => this.listen(m, ctx)),
      '/connect': g((m, ctx) => this.connect(m, ctx)),
      '/write': g((m, ctx) => this.write(m, ctx)),
      '/close': g(() => {
        void this.close(); // <name>/closed says when it is done
      }),
    });
    if (accepted) this.attach(accepted);
  }

  private idle(what: string): void {
    if (this.server || this.sock)
      throw new SocketError('EISCONN', `${this.name}: cannot ${what}: already in use`);
  }

  private bind(m: Message, ctx: Context): void {
    this.idle('bind');
    this.bound = whereOf(m, this.unix, `${this.name}/bind`);
    if (ctx.replyTo) ctx.reply(this.bound).catch(() => {});
  }

  private async listen(m: Message, ctx: Context): Promise<void> {
    this.idle('listen');
    const at = this.bound;
    if (!at) throw new SocketError('EDESTADDRREQ', `${this.name}: bind before listen`);
    const server = net.createServer((s) => this.accept(s));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.once('close', () => reject(new SocketError('ECANCELED', `${this.name}: closed while binding`)));
      server.listen({ ...at, backlog: m.int('backlog', 511) }, () => {
        server.off('error', reject);
        resolve();
      });
    }).catch((e: unknown) => {
      this.server = undefined; // the object stays usable: bind elsewhere and listen again
      throw e;
    });
    server.on('error', (e) => report(this.bus, this.name, e));
    const local = localOf(server.address());
    this.bus.post(`${this.name}/listening`, local);
    if (ctx.replyTo) ctx.reply(local).catch(() => {});
  }

  private accept(s: net.Socket): void {
    const client = `${this.name}/client/${++this.clients}`;
    const obj = new StreamSocket(this.bus, client, this.unix, this.adopt, s);
    this.adopt(obj);
    this.bus.post(`${this.name}/new_client`, {
      client,
      peerhost: s.remoteAddress,
      peerport: s.remotePort,
    });
  }

  private async connect(m: Message, ctx: Context): Promise<void> {
    this.idle('connect');
    const to = whereOf(m, this.unix, `${this.name}/connect`, true);
    const from = this.bound && 'port' in this.bound ? this.bound : undefined;
    const s =
      'path' in to
        ? net.connect({ path: to.path })
        : net.connect({ host: to.host, port: to.port, localAddress: from?.host, localPort: from?.port });
    this.sock = s;
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.once('close', () => reject(new SocketError('ECANCELED', `${this.name}: closed while connecting`)));
      s.once('connect', () => {
        s.off('error', reject);
        resolve();
      });
    }).catch((e: unknown) => {
      s.destroy();
      this.sock = undefined; // the object stays usable: connect again
      throw e;
    });
    this.attach(s);
    const peer = peerOf(s, to);
    this.bus.post(`${this.name}/connected`, peer);
    if (ctx.replyTo) ctx.reply(peer).catch(() => {});
  }

  private attach(s: net.Socket): void {
    this.sock = s;
    s.on('data', (data) => this.bus.post(`${this.name}/read`, { data }));
    s.on('drain', () => {
      if (!this.full) return;
      this.full = false;
      this.bus.post(`${this.name}/drain`, {});
    });
    s.on('error', (e) => report(this.bus, this.name, e));
    s.on('close', () => this.finish());
  }

  private write(m: Message, ctx: Context): void {
    const s = this.sock;
    if (!s || s.connecting) throw new SocketError('ENOTCONN', `${this.name}: not connected`);
    if (this.closing) throw new SocketError('EPIPE', `${this.name}: closing: no more writes`);
    if (m.has('host') || m.has('port'))
      throw new SocketError('EISCONN', `${this.name}/write: host/port are for udp sockets only`);
    const d = m.get('data');
    const ok = s.write(d?.type === 'str' ? Buffer.from(d.value) : m.bytes('data'));
    if (!ok && !this.full) {
      this.full = true;
      this.bus.post(`${this.name}/full`, { buffered: s.writableLength });
    }
    if (ctx.replyTo) ctx.reply({ full: !ok, buffered: s.writableLength }).catch(() => {});
  }

  /** Close gracefully: a connection sends what is queued first; a listener stops accepting. */
  close(): Promise<void> {
    if (this.closing) return this.done;
    this.closing = true;
    if (this.sock) this.sock.end(() => this.sock?.destroy());
    else this.finish();
    return this.done;
  }

  /** Close at once (service shutdown). */
  destroy(): Promise<void> {
    this.sock?.destroy();
    this.finish();
    return this.done;
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.detach();
    this.server?.close();
    this.bus.post(`${this.name}/closed`, {});
    this.settle();
  }
}
