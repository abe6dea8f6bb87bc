import type { Socket } from 'node:net';
import type { Bus } from '../core/bus.js';
import { isErrorCode, isMetanetError, MetanetError } from '../core/errors.js';
import {
  CONTINUE,
  type Listener,
  type ListenerInfo,
  type ListenOptions,
  type SendResult,
  STOP,
} from '../core/listener.js';
import type { Logger } from '../core/log.js';
import { Message } from '../core/message.js';
import { checkName } from '../core/path.js';
import type { SendWaiter } from '../core/transport.js';
import type { Acl } from './acl.js';
import {
  errorFrame,
  handedOver,
  isReplyPath,
  positionToWire,
  REMOTE_TIMEOUT,
  resultFromFrame,
} from './frames.js';
import { Intake } from './intake.js';
import { CLIENT_LIMITS, LINGER, type Limits } from './limits.js';
import { outboundReplyTo } from './names.js';
import { Outbox } from './outbox.js';
import type { PeerCred } from './peercred.js';
import { ReplyGrants } from './replies.js';
import type { ReusedReads } from './reused.js';
import { Served } from './served.js';
import {
  encodeFrameTo,
  F,
  type Frame,
  field,
  frameName,
  fromWire,
  PROTOCOL_VERSION,
  toWire,
  type Written,
} from './wire.js';

export { REMOTE_TIMEOUT };

/** After a connection error, how long answers to the peer's earlier requests may still take (ms). */
const CLOSE_GRACE = 2000;
const ERRORS = '/system/error';

/** A listener of this process attached to a mailbox of another daemon. */
export interface RemoteListener {
  readonly lid: number;
  readonly daemon: string;
  readonly path: string;
  readonly fn: Listener;
  readonly options: ListenOptions;
  readonly info: ListenerInfo;
}

export interface LinkOptions {
  readonly bus: Bus;
  /** This side's name in HELLO (the daemon's name, or a client's `cli-<pid>`). */
  readonly localName: string;
  readonly socket: Socket;
  readonly log: Logger;
  /** Listeners of this process that the peer may DELIVER to, by lid. */
  readonly remoteListeners: ReadonlyMap<number, RemoteListener>;
  /** Server side: the access policy and the peer's kernel credentials. */
  readonly acl?: Acl;
  readonly cred?: PeerCred;
  /** What the peer may cost (default: a client's limits). */
  readonly limits?: Limits;
  /** Called with the HELLO name, before any later frame: registers the link; a server side returns the name it routes the peer by (names.ts). */
  readonly route?: (peerName: string, link: Link) => string | undefined;
  readonly onClose: (link: Link) => void;
  /** Counted into (increments only; `metanet up` serves them on /metrics). */
  readonly stats?: IpcStats;
  /** The socket reads into the process's reused buffer (it was made with `reads.option`). */
  readonly reads?: ReusedReads;
}

/** Frames and errors of a transport's links, for metrics (docs/metrics.md). */
export interface IpcStats {
  framesIn: number;
  framesOut: number;
  /** Requests refused with an ERROR (or dropped, one-way): the connection stays. */
  refused: number;
  /** Connections closed after a protocol error or a stalled peer. */
  broken: number;
  /** Connections cut because the peer stopped reading (backlog over the bound). */
  slow: number;
}

interface Pending {
  /** With `path` (a SEND), resolved with the SendResult the RESULT frame says; else with the frame. */
  resolve(v: Frame | SendResult): void;
  reject(e: Error): void;
  path?: string;
}

/** A SEND waiting for its RESULT with callbacks (`sendFor`): told what the RESULT says. */
class WaitingSend implements Pending {
  constructor(
    readonly path: string,
    private readonly w: SendWaiter,
  ) {}
  resolve(v: Frame | SendResult): void {
    this.w.sent(v as SendResult);
  }
  reject(e: Error): void {
    this.w.failed(e);
  }
}

/**
 * One connection between two processes. Symmetric: after HELLO either side may send, listen,
 * deliver to the other's listeners and reply. See docs/wire-protocol.md. Reading (with bounded
 * work per turn) is `Intake`'s, writing (with the bounded backlog) `Outbox`'s.
 */
export class Link {
  peerName: string | undefined;
  peerPid = 0;
  /** Server side: the name this process routes the peer by (`NAME.PID`, names.ts). */
  routeName: string | undefined;
  readonly ready: Promise<void>;
  /** Resolves with the reason when the connection is gone. */
  readonly gone: Promise<Error>;
  private goneResolve!: (e: Error) => void;
  private readyResolve!: () => void;
  private readyReject!: (e: Error) => void;
  private readonly intake: Intake;
  private readonly outbox: Outbox;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  /** What the peer asks of this process: its requests, listeners and monitors here. */
  private readonly served: Served;
  /** The reply paths of this process the peer was given, the only ones it may send to (replies.ts). */
  private readonly grants: ReplyGrants;
  /** Frame handlers by type: the peer's requests (served) and the answers and deliveries that concern us. */
  private readonly handlers: ((f: Frame) => void)[] = [];
  private readonly eventSinks = new Map<number, (path: string, m: Message, listened: boolean) => void>();
  private closedWith: Error | undefined;
  /** A connection error was found: nothing more is read; answers to earlier requests still go out. */
  private closing: Error | undefined;
  private grace: NodeJS.Timeout | undefined;
  private readonly stats: IpcStats;

  constructor(private readonly o: LinkOptions) {
    this.stats = o.stats ?? { framesIn: 0, framesOut: 0, refused: 0, broken: 0, slow: 0 };
    const limits = o.limits ?? CLIENT_LIMITS;
    this.ready = new Promise((res, rej) => {
      this.readyResolve = res;
      this.readyReject = rej;
    });
    this.ready.catch(() => {});
    this.gone = new Promise((r) => (this.goneResolve = r));
    this.outbox = new Outbox(o.socket, limits.maxBacklog, (backlog) => this.tooSlow(backlog));
    const link = this;
    this.grants = new ReplyGrants(o.bus);
    this.served = new Served({
      bus: o.bus,
      localName: o.localName,
      acl: o.acl,
      cred: o.cred,
      get who() {
        return link.who;
      },
      get peerName() {
        return link.peerName;
      },
      get routeName() {
        return link.routeName;
      },
      write: (f) => this.write(f),
      qualify: (m) => this.qualify(m),
      mayReply: (path) => this.grants.allows(path),
      answered: () => {
        if (this.closing && this.served.answering === 0) this.finishClosing();
      },
    });
    // an array by frame type, not an object: an indexed load per frame
    const byType: Record<number, (f: Frame) => void> = {
      ...this.served.handlers,
      [F.HELLO]: (f) => this.onHello(f),
      [F.RESULT]: (f) => this.settle(f, undefined),
      [F.OK]: (f) => this.settle(f, undefined),
      [F.ERROR]: (f) => this.onError(f),
      [F.DELIVER]: (f) => this.onDeliver(f),
      [F.EVENT]: (f) => this.onEvent(f),
    };
    for (const [type, fn] of Object.entries(byType)) this.handlers[Number(type)] = fn;
    this.intake = new Intake(
      o.socket,
      limits,
      {
        get open() {
          return link.closing === undefined && link.closedWith === undefined;
        },
        get greeted() {
          return link.peerName !== undefined;
        },
        frame: (f) => this.onFrame(f),
        turnStart: () => this.o.bus.holdDelivery(),
        turnEnd: () => this.o.bus.releaseDelivery(),
        broken: (e) => this.fatal(e),
        stalled: (e) => this.fatal(e),
      },
      o.reads,
    );
    o.socket.on('error', (e) => this.shutdown(e));
    o.socket.on('close', () =>
      this.shutdown(new MetanetError('EUNREACHABLE', `connection to ${this.who} closed`)),
    );
    this.write([F.HELLO, PROTOCOL_VERSION, o.localName, process.pid]);
  }

  get who(): string {
    return this.peerName !== undefined ? `${this.peerName}[pid ${this.peerPid}]` : 'peer';
  }

  /** Gone. (A link closing after a connection error still takes one-way frames, e.g. replies to the peer's last requests.) */
  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Bytes written to the socket and not yet handed to the kernel. */
  get queuedBytes(): number {
    return this.o.socket.writableLength;
  }

  // ---- outgoing --------------------------------------------------------------------------

  /** Send to a mailbox of the peer; resolves with what the peer's RESULT says. */
  send(path: string, m: Message): Promise<SendResult> {
    if (isReplyPath(path)) {
      // settled at once (a listener's reply, the daemon's hottest send): no waiter, no executor
      const e = this.handOver(path, m);
      return e === undefined ? Promise.resolve(handedOver(path)) : Promise.reject(e);
    }
    return new Promise((resolve, reject) => this.sendFor(path, m, { sent: resolve, failed: reject }));
  }

  /** `send()` answered through `w`, without a promise (a request's send). */
  sendFor(path: string, m: Message, w: SendWaiter): void {
    if (isReplyPath(path)) {
      const e = this.handOver(path, m);
      if (e === undefined) w.sent(handedOver(path));
      else w.failed(e);
      return;
    }
    try {
      this.check();
    } catch (e) {
      w.failed(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    const id = this.nextId++;
    const frame = [F.SEND, id, path, this.qualify(m)];
    this.pending.set(id, new WaitingSend(path, w));
    this.write(frame);
  }

  /** A reply is one-way by nature: handed over without a RESULT round trip (docs/ipc.md); the error, if it cannot be. */
  private handOver(path: string, m: Message): Error | undefined {
    try {
      this.post(path, m);
      return undefined;
    } catch (e) {
      return e instanceof Error ? e : new Error(String(e));
    }
  }

  post(path: string, m: Message): void {
    if (this.closedWith) throw this.closedWith;
    this.write([F.SEND, 0, path, this.qualify(m)]);
  }

  /** Put one of this process's listeners into the peer's chain; resolves with the peer's listener id. */
  async listen(rl: RemoteListener): Promise<number> {
    const o = rl.options;
    const f = await this.call([
      F.LISTEN,
      0,
      rl.path,
      rl.lid,
      toWire(Message.from(o.identity)),
      positionToWire(o.position),
      o.timeout ?? 0,
      o.onTimeout ?? 'continue',
      rl.info.name,
    ]);
    return typeof f[2] === 'number' ? f[2] : 0;
  }

  unlisten(lid: number): void {
    if (!this.closed) this.call([F.UNLISTEN, 0, lid]).catch(() => {});
  }

  /** Introspection of the peer: its mailboxes under `path` (all when absent). */
  async ls(path?: string): Promise<Message> {
    const f = await this.call([F.LS, 0, path ?? null]);
    return fromWire(f[2], 'LS reply');
  }

  /** Watch the peer's traffic on mailboxes matching `pattern`. Resolves with a function that stops. */
  async monitor(
    pattern: string,
    onEvent: (path: string, m: Message, listened: boolean) => void,
  ): Promise<() => void> {
    const f = await this.call([F.MONITOR, 0, pattern]);
    const mid = field.uint(f, 2, 'monitor id');
    this.eventSinks.set(mid, onEvent);
    return () => {
      this.eventSinks.delete(mid);
      if (!this.closed) this.call([F.UNMONITOR, 0, mid]).catch(() => {});
    };
  }

  close(): void {
    this.outbox.flush();
    this.o.socket.end();
    this.shutdown(new MetanetError('ECLOSED', `connection to ${this.who} closed by this side`));
  }

  private call(frame: unknown[]): Promise<Frame> {
    try {
      this.check();
    } catch (e) {
      return Promise.reject(e);
    }
    const id = this.nextId++;
    frame[1] = id;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: Frame | SendResult) => void, reject });
      this.write(frame);
    });
  }

  /** Whether a request (which needs the peer's answer) may go out. */
  private check(): void {
    if (this.closedWith) throw this.closedWith;
    if (this.closing)
      throw new MetanetError('EUNREACHABLE', `connection to ${this.who} is closing: ${this.closing.message}`);
  }

  private qualify(m: Message): Message {
    return outboundReplyTo(m, this.o.localName, this.peerName, this.routeName, this.grant);
  }

  private readonly grant = (path: string): void => this.grants.grant(path);

  private write(frame: readonly unknown[]): void {
    if (this.closedWith) return;
    let w: Readonly<Written>;
    try {
      w = encodeFrameTo(frame);
    } catch (e) {
      this.o.log.log('error', 'cannot encode frame', { frame: frameName(frame[0]), error: String(e) });
      return;
    }
    if (this.outbox.push(w.buf, w.start, w.end)) this.stats.framesOut++;
  }

  /** The peer let its backlog pass the bound: cut it now, whatever else it asked for. */
  private tooSlow(backlog: number): void {
    this.stats.slow++;
    this.o.log.log('warn', 'peer too slow, closing', { peer: this.who, backlog });
    this.intake.stop();
    this.o.socket.destroy();
    this.shutdown(
      new MetanetError(
        'EUNREACHABLE',
        `${this.who} stopped reading: ${backlog} bytes would be queued for it`,
      ),
    );
  }

  // ---- incoming --------------------------------------------------------------------------

  private onFrame(f: Frame): void {
    this.stats.framesIn++;
    try {
      const type = f[0];
      if (this.peerName === undefined && type !== F.HELLO)
        throw new MetanetError('EPROTO', `expected HELLO first, got ${frameName(type)}`);
      const h = typeof type === 'number' ? this.handlers[type] : undefined;
      if (h === undefined) throw new MetanetError('EPROTO', `unknown frame type ${String(type)}`);
      h(f);
    } catch (e) {
      this.refused(f, e);
    }
  }

  /**
   * A frame we cannot carry out. A request with a usable id keeps the connection: id > 0 gets
   * an ERROR, id 0 (one-way) gets nothing and the error goes to this process's `/system/error`.
   * Anything else means the stream cannot be trusted: a connection error.
   */
  private refused(f: Frame, e: unknown): void {
    const id = f[1];
    const usable = typeof id === 'number' && Number.isSafeInteger(id) && id >= 0;
    if (this.peerName === undefined || !REQUESTS.has(f[0] as number) || !usable) {
      this.fatal(e);
      return;
    }
    this.stats.refused++;
    if (id > 0) {
      this.error(id, e);
      return;
    }
    const code = isMetanetError(e) ? e.code : 'EFAIL';
    const text = e instanceof Error ? e.message : String(e);
    const mailbox = typeof f[2] === 'string' ? f[2] : '';
    this.o.log.log('warn', 'one-way request refused', {
      peer: this.who,
      frame: frameName(f[0]),
      code,
      error: text,
    });
    if (!this.o.bus.isClosed && this.o.bus.mailbox(ERRORS)?.listeners.length)
      this.o.bus.post(ERRORS, { mailbox, peer: this.who, frame: frameName(f[0]), code, error: text });
  }

  private onHello(f: Frame): void {
    if (this.peerName !== undefined) throw new MetanetError('EPROTO', 'HELLO sent twice');
    const version = field.int(f, 1, 'version');
    if (version !== PROTOCOL_VERSION)
      throw new MetanetError(
        'EPROTO',
        `unsupported protocol version ${version} (this side speaks ${PROTOCOL_VERSION})`,
      );
    const name = field.str(f, 2, 'name');
    try {
      checkName(name, 'name');
    } catch (e) {
      throw new MetanetError('EPROTO', `HELLO frame: ${(e as Error).message}`);
    }
    const pid = field.int(f, 3, 'pid');
    this.peerName = name;
    this.peerPid = this.o.cred?.pid ?? pid;
    this.routeName = this.o.route?.(name, this);
    this.readyResolve();
  }

  private onDeliver(f: Frame): void {
    const did = field.uint(f, 1, 'delivery id');
    const lid = field.uint(f, 2, 'lid');
    const path = field.str(f, 3, 'path');
    const m = fromWire(f[4], path);
    const rl = this.o.remoteListeners.get(lid);
    if (!rl) {
      this.write([F.VERDICT, did, CONTINUE, `no listener ${lid} in ${this.o.localName}`]);
      return;
    }
    this.o.bus.invoke(path, m, rl.fn, rl.info).then(
      (v) => {
        if (v !== undefined && v !== STOP && v !== CONTINUE)
          this.write([F.VERDICT, did, CONTINUE, `listener returned ${String(v)}, not a verdict`]);
        else this.write([F.VERDICT, did, v === STOP ? STOP : CONTINUE, null]);
      },
      (e: unknown) => this.write([F.VERDICT, did, CONTINUE, e instanceof Error ? e.message : String(e)]),
    );
  }

  private onEvent(f: Frame): void {
    const mid = field.uint(f, 1, 'monitor id');
    const path = field.str(f, 2, 'path');
    this.eventSinks.get(mid)?.(path, fromWire(f[3], `EVENT ${path}`), f[4] === true);
  }

  private onError(f: Frame): void {
    const id = field.uint(f, 1, 'id');
    const code = field.str(f, 2, 'code');
    const text = field.str(f, 3, 'message');
    const e = new MetanetError(isErrorCode(code) ? code : 'EPROTO', `${this.peerName ?? 'peer'}: ${text}`);
    if (id === 0) {
      this.o.log.log('warn', 'peer reported a protocol error', { peer: this.who, code, error: text });
      this.shutdown(e);
      return;
    }
    this.settle(f, e);
  }

  private settle(f: Frame, e: Error | undefined): void {
    const id = field.uint(f, 1, 'id');
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (e) p.reject(e);
    else p.resolve(p.path === undefined ? f : resultFromFrame(p.path, f));
  }

  private error(id: number, e: unknown): void {
    this.write(errorFrame(id, e));
  }

  /**
   * The stream cannot be trusted any more (or the peer stalled): read nothing more, let the
   * requests it made before go on and answer them, then say why (`ERROR` id 0) and close this
   * connection only.
   */
  private fatal(e: unknown): void {
    if (this.closing || this.closedWith) return;
    this.stats.broken++;
    const err = isMetanetError(e)
      ? e
      : new MetanetError('EPROTO', e instanceof Error ? e.message : String(e));
    this.o.log.log('warn', 'closing connection after a protocol error', {
      peer: this.who,
      error: String(err),
    });
    this.closing = err;
    this.intake.stop();
    this.dropPeer(err);
    this.o.bus.deliverQueued();
    if (this.served.answering === 0) this.finishClosing();
    else if (!this.closedWith) {
      this.grace = setTimeout(() => this.finishClosing(), CLOSE_GRACE);
      this.grace.unref();
    }
  }

  private finishClosing(): void {
    if (this.closedWith || !this.closing) return;
    this.error(0, this.closing);
    this.outbox.flush();
    this.o.socket.end();
    this.shutdown(this.closing, true);
  }

  /** What the peer had here goes with it (served.drop), and our requests to it fail. */
  private dropPeer(why: Error): void {
    for (const p of this.pending.values()) p.reject(why);
    this.pending.clear();
    this.served.drop();
    this.eventSinks.clear();
    this.grants.clear();
  }

  /** Gone: with `linger`, the socket (ended by this side) stays until the peer closes its end, up to LINGER ms, so the peer reads the last frames. */
  private shutdown(e: Error, linger = false): void {
    if (this.closedWith) return;
    this.closedWith = isMetanetError(e) ? e : new MetanetError('EUNREACHABLE', `${this.who}: ${e.message}`);
    if (this.grace) clearTimeout(this.grace);
    this.intake.stop();
    this.outbox.close();
    this.readyReject(this.closedWith);
    this.goneResolve(this.closedWith);
    this.dropPeer(this.closedWith);
    if (linger) setTimeout(() => this.o.socket.destroy(), LINGER).unref();
    else if (!this.o.socket.destroyed) this.o.socket.destroy();
    this.o.onClose(this);
  }
}

/** Frames answered by RESULT/OK/ERROR: a bad one gets an ERROR and the connection stays. */
const REQUESTS = new Set<number>([F.SEND, F.LISTEN, F.UNLISTEN, F.MONITOR, F.UNMONITOR, F.LS]);
