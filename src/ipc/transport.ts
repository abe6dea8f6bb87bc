import { connect, type Socket } from 'node:net';
import type { Bus } from '../core/bus.js';
import { isMetanetError, MetanetError } from '../core/errors.js';
import type { Listener, ListenOptions, SendResult } from '../core/listener.js';
import { Message } from '../core/message.js';
import type { Address } from '../core/path.js';
import type { RemoteAttachment, SendWaiter, Transport } from '../core/transport.js';
import type { Acl } from './acl.js';
import { socketPath } from './dir.js';
import { CLIENT_LIMITS, type Limits } from './limits.js';
import { type IpcStats, Link, type RemoteListener } from './link.js';
import { routeName } from './names.js';
import type { PeerCred } from './peercred.js';
import { ReusedReads } from './reused.js';

export interface SocketTransportOptions {
  /** The socket directory. */
  readonly dir: string;
  /** This process's name on the wire (its daemon name, or `<prog>-<pid>` for a client). */
  readonly name: string;
  /** What a peer that connects to this process may cost (a daemon's; default: a client's). */
  readonly inbound?: Limits;
  /** What a daemon this process dials may cost (default: a client's, 16 MiB frames). */
  readonly outbound?: Limits;
}

/** A connection a daemon accepted: its access policy and the peer's kernel credentials. */
export interface Accepted {
  readonly acl: Acl;
  readonly cred: PeerCred | undefined;
}

const BACKOFF_MIN = 50;
const BACKOFF_MAX = 1000;

/**
 * Reaches other daemons on this machine through their Unix sockets: one connection per peer,
 * kept open; listeners attached to a peer are re-attached after it comes back (docs/ipc.md).
 * A message sent while a peer is away fails at once with ENODAEMON: there is no queue.
 */
export class SocketTransport implements Transport {
  /** Live links by peer name: ours (outbound) and the daemon server's (inbound). */
  private readonly links = new Map<string, Link>();
  private readonly connecting = new Map<string, Promise<Link>>();
  readonly listeners = new Map<number, RemoteListener>();
  private readonly retry = new Map<string, { timer: NodeJS.Timeout; delay: number }>();
  private nextLid = 1;
  /** For a peer whose pid the kernel did not give (route names `NAME.c.N`). */
  private nextAnon = 1;
  private closed = false;
  /** Every link's frames and errors, counted (docs/metrics.md). */
  readonly stats: IpcStats = { framesIn: 0, framesOut: 0, refused: 0, broken: 0, slow: 0 };

  constructor(
    private readonly bus: Bus,
    readonly o: SocketTransportOptions,
  ) {}

  handles(addr: Address): boolean {
    return addr.host === undefined && addr.daemon !== undefined;
  }

  send(addr: Address, m: Message): Promise<SendResult> {
    const l = this.links.get(addr.daemon!);
    if (l && !l.closed) return l.send(addr.path, m);
    return this.link(addr.daemon!).then((x) => x.send(addr.path, m));
  }

  sendFor(addr: Address, m: Message, w: SendWaiter): void {
    const l = this.links.get(addr.daemon!);
    if (l && !l.closed) l.sendFor(addr.path, m, w);
    else
      this.link(addr.daemon!).then(
        (x) => {
          try {
            x.sendFor(addr.path, m, w);
          } catch (e) {
            w.failed(e instanceof Error ? e : new Error(String(e)));
          }
        },
        (e: unknown) => w.failed(e instanceof Error ? e : new Error(String(e))),
      );
  }

  /** Fire-and-forget: pipelined, no result frame. */
  post(addr: Address, m: Message): Promise<void> | undefined {
    const l = this.links.get(addr.daemon!);
    if (l && !l.closed) {
      l.post(addr.path, m);
      return undefined;
    }
    return this.link(addr.daemon!).then((x) => x.post(addr.path, m));
  }

  listen(addr: Address, fn: Listener, options: ListenOptions): RemoteAttachment {
    const lid = this.nextLid++;
    const rl: RemoteListener = {
      lid,
      daemon: addr.daemon!,
      path: addr.path,
      fn,
      options,
      info: {
        id: lid,
        mailbox: addr.path,
        identity: Message.from(options.identity),
        name: fn.name || 'anonymous',
        timeout: options.timeout,
        onTimeout: options.onTimeout ?? 'continue',
      },
    };
    this.listeners.set(lid, rl);
    const ready = this.link(rl.daemon)
      .then((l) => l.listen(rl))
      .then(() => undefined);
    ready.catch(() => this.listeners.delete(lid));
    return {
      ready,
      remove: () => {
        if (!this.listeners.delete(lid)) return;
        this.links.get(rl.daemon)?.unlisten(lid);
      },
    };
  }

  /** The link to a daemon: an open one (either direction), or a new connection to its socket. */
  link(name: string): Promise<Link> {
    const l = this.links.get(name);
    if (l && !l.closed) return Promise.resolve(l);
    if (this.closed) return Promise.reject(new MetanetError('ECLOSED', 'the transport is closed'));
    let p = this.connecting.get(name);
    if (!p) {
      p = this.dial(name).finally(() => this.connecting.delete(name));
      this.connecting.set(name, p);
    }
    return p;
  }

  private dial(name: string): Promise<Link> {
    const path = socketPath(this.o.dir, name);
    return new Promise<Link>((resolve, reject) => {
      const reads = new ReusedReads();
      const sock: Socket = connect({ path, onread: reads.option });
      const fail = (e: NodeJS.ErrnoException): void => {
        if (e.code === 'EACCES' || e.code === 'EPERM') {
          reject(
            new MetanetError(
              'EDENIED',
              `permission denied: cannot open the socket of daemon "${name}" (${path}: ${e.code}); its mode or owner keeps this user out`,
            ),
          );
          return;
        }
        const why =
          e.code === 'ENOENT'
            ? 'no socket'
            : e.code === 'ECONNREFUSED'
              ? 'socket refuses connections (stale)'
              : e.message;
        reject(
          new MetanetError('ENODAEMON', `daemon "${name}" is not running in ${this.o.dir} (${path}: ${why})`),
        );
      };
      sock.once('error', fail);
      sock.once('connect', () => {
        sock.off('error', fail);
        const link = this.adopt(sock, undefined, undefined, reads);
        link.ready.then(
          () => {
            if (link.peerName !== name) this.links.set(name, link); // the socket's name is what we route by
            resolve(link);
          },
          (e: Error) => reject(isMetanetError(e) ? e : new MetanetError('ENODAEMON', e.message)),
        );
      });
    });
  }

  /**
   * Take a connected socket into a link: one this process dialed (`accepted` undefined), or one
   * its daemon accepted. An accepted peer is routed by a name this process makes (`NAME.PID`,
   * names.ts), never by the name it says: nobody can take a name's replies, nor pose as a daemon.
   */
  adopt(sock: Socket, accepted: Accepted | undefined, onClose?: () => void, reads?: ReusedReads): Link {
    return new Link({
      bus: this.bus,
      localName: this.o.name,
      socket: sock,
      reads,
      log: this.bus.log,
      remoteListeners: this.listeners,
      stats: this.stats,
      limits: (accepted ? this.o.inbound : this.o.outbound) ?? CLIENT_LIMITS,
      acl: accepted?.acl,
      cred: accepted?.cred,
      route: accepted
        ? (peer, l) => {
            const pid = accepted.cred?.pid ?? 0;
            const r = routeName(pid > 0 ? peer : `${peer}.c`, pid > 0 ? pid : this.nextAnon++, (n) =>
              this.links.has(n),
            );
            this.links.set(r, l);
            return r;
          }
        : (peer, l) => {
            this.links.set(peer, l);
            return undefined;
          },
      onClose: (l) => {
        this.dropped(l, accepted !== undefined);
        onClose?.();
      },
    });
  }

  /** The connections open now (after HELLO, either direction) and the bytes queued for them. */
  peers(): { count: number; queuedBytes: number } {
    let count = 0;
    let queuedBytes = 0;
    for (const l of new Set(this.links.values()))
      if (!l.closed) {
        count++;
        queuedBytes += l.queuedBytes;
      }
    return { count, queuedBytes };
  }

  private dropped(l: Link, inbound: boolean): void {
    for (const [k, v] of this.links) if (v === l) this.links.delete(k);
    if (!inbound && l.peerName !== undefined) this.scheduleReattach(l.peerName);
  }

  /** Our listeners on a daemon that went away: reconnect with backoff and put them back. */
  private scheduleReattach(name: string): void {
    if (this.closed || this.retry.has(name)) return;
    if (![...this.listeners.values()].some((r) => r.daemon === name)) return;
    const attempt = (delay: number): void => {
      const timer = setTimeout(() => {
        this.link(name)
          .then(async (l) => {
            this.retry.delete(name);
            for (const rl of this.listeners.values()) if (rl.daemon === name) await l.listen(rl);
            this.bus.log.log('info', 'listeners re-attached', { daemon: name });
          })
          .catch(() => {
            if (this.closed) return;
            attempt(Math.min(delay * 2, BACKOFF_MAX));
          });
      }, delay);
      this.retry.set(name, { timer, delay });
    };
    attempt(BACKOFF_MIN);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const r of this.retry.values()) clearTimeout(r.timer);
    this.retry.clear();
    for (const l of new Set(this.links.values())) l.close();
    this.links.clear();
  }
}
