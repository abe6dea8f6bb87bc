import type { Socket } from 'node:net';
import type { Bus } from '../core/bus.js';
import { isErrorCode, isMetanetError, MetanetError } from '../core/errors.js';
import {
  CONTINUE,
  type Listener,
  type ListenerHandle,
  type ListenerInfo,
  type ListenerResult,
  type ListenOptions,
  type SendResult,
  STOP,
} from '../core/listener.js';
import type { Logger } from '../core/log.js';
import { Message, type MessageInit, type Tuple } from '../core/message.js';
import { checkPath, pathMatches } from '../core/path.js';
import type { Acl, Operation } from './acl.js';
import {
  handedOver,
  isReplyPath,
  positionFromWire,
  positionToWire,
  RELAY,
  relayTarget,
  resultFromFrame,
  resultToFrame,
} from './frames.js';
import type { PeerCred } from './peercred.js';
import {
  DEFAULT_MAX_FRAME,
  encodeFrame,
  F,
  type Frame,
  FrameReader,
  field,
  frameName,
  fromWire,
  PROTOCOL_VERSION,
  toWire,
} from './wire.js';

/** Default time a daemon waits for a remote listener's verdict (ms). */
export const REMOTE_TIMEOUT = 1000;
/** A peer whose unread output exceeds this is too slow: its connection is closed. */
const MAX_BACKLOG = 64 * 1024 * 1024;

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
  readonly maxFrame?: number;
  /** Whether another live connection already uses this peer name (who, if so). */
  readonly nameTaken?: (name: string) => string | undefined;
  /** Called as soon as the peer's HELLO is read (before any later frame is handled). */
  readonly onHello?: (link: Link) => void;
  readonly onClose: (link: Link) => void;
}

interface Pending {
  /** With `path` (a SEND), resolved with the SendResult the RESULT frame says; else with the frame. */
  resolve(v: Frame | SendResult): void;
  reject(e: Error): void;
  path?: string;
}

/**
 * One connection between two processes. Symmetric: after HELLO either side may send, listen,
 * deliver to the other's listeners and reply. See docs/wire-protocol.md.
 */
export class Link {
  peerName: string | undefined;
  peerPid = 0;
  readonly ready: Promise<void>;
  /** Resolves with the reason when the connection is gone. */
  readonly gone: Promise<Error>;
  private goneResolve!: (e: Error) => void;
  private readyResolve!: () => void;
  private readyReject!: (e: Error) => void;
  private readonly reader: FrameReader;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  /** Server side: proxies standing in the local bus for the peer's listeners, by the peer's lid. */
  private readonly proxies = new Map<number, ListenerHandle>();
  private readonly verdicts = new Map<
    number,
    { resolve(v: ListenerResult): void; reject(e: Error): void; onTimeout: 'continue' | 'stop' }
  >();
  private readonly monitors = new Map<number, () => void>();
  private out: Buffer[] = [];
  private flushing = false;
  private closedWith: Error | undefined;

  constructor(private readonly o: LinkOptions) {
    this.reader = new FrameReader(o.maxFrame ?? DEFAULT_MAX_FRAME);
    this.ready = new Promise((res, rej) => {
      this.readyResolve = res;
      this.readyReject = rej;
    });
    this.ready.catch(() => {});
    this.gone = new Promise((r) => (this.goneResolve = r));
    o.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    o.socket.on('error', (e) => this.shutdown(e));
    o.socket.on('close', () =>
      this.shutdown(new MetanetError('EUNREACHABLE', `connection to ${this.who} closed`)),
    );
    this.write([F.HELLO, PROTOCOL_VERSION, o.localName, process.pid]);
  }

  get who(): string {
    return this.peerName !== undefined ? `${this.peerName}[pid ${this.peerPid}]` : 'peer';
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  // ---- outgoing --------------------------------------------------------------------------

  /** Send to a mailbox of the peer. With `wantResult` false the peer returns nothing (pipelined). */
  send(path: string, m: Message): Promise<SendResult> {
    if (isReplyPath(path)) {
      // A reply is one-way by nature: hand it over without a RESULT round trip (docs/ipc.md).
      try {
        this.post(path, m);
      } catch (e) {
        return Promise.reject(e);
      }
      return Promise.resolve(handedOver(path));
    }
    try {
      this.check();
    } catch (e) {
      return Promise.reject(e);
    }
    // call() and then(resultFromFrame) in one promise: one microtask less per request
    const id = this.nextId++;
    const frame = [F.SEND, id, path, toWire(this.qualify(m))];
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: Frame | SendResult) => void, reject, path });
      this.write(frame);
    });
  }

  post(path: string, m: Message): void {
    this.check();
    this.write([F.SEND, 0, path, toWire(this.qualify(m))]);
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
    const mid = field.int(f, 2, 'monitor id');
    this.eventSinks.set(mid, onEvent);
    return () => {
      this.eventSinks.delete(mid);
      if (!this.closed) this.call([F.UNMONITOR, 0, mid]).catch(() => {});
    };
  }
  private readonly eventSinks = new Map<number, (path: string, m: Message, listened: boolean) => void>();

  close(): void {
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

  private check(): void {
    if (this.closedWith) throw this.closedWith;
  }

  /**
   * A reply-to must make sense on the other side: a bare path names this process
   * (`me:/path`); an address of a third process the peer may not reach is routed through this
   * one (`me:/system/relay/<daemon>/path`, see docs/wire-protocol.md).
   */
  private qualify(m: Message): Message {
    const tuples = m.tuples;
    let at = -1;
    for (let i = 0; i < tuples.length; i++)
      if (tuples[i]!.tag === 'reply-to') {
        at = i;
        break;
      }
    const t = at < 0 ? undefined : tuples[at]!;
    if (t?.type !== 'str') return m;
    const v = t.value;
    let to: string | undefined;
    if (v.charCodeAt(0) === 47) to = `${this.o.localName}:${v}`;
    else {
      const colon = v.indexOf(':');
      const daemon = v.slice(0, colon);
      if (colon > 0 && !daemon.includes('/') && daemon !== this.peerName && daemon !== this.o.localName)
        to = `${this.o.localName}:${RELAY}/${daemon}${v.slice(colon + 1)}`;
    }
    if (to === undefined) return m;
    // the same as m.without('reply-to').with(reply-to=to), in one copy
    const out: Tuple[] = [];
    for (let i = 0; i < tuples.length; i++) if (tuples[i]!.tag !== 'reply-to') out.push(tuples[i]!);
    out.push({ tag: 'reply-to', type: 'str', value: to });
    return new Message(out);
  }

  private write(frame: readonly unknown[]): void {
    if (this.closedWith) return;
    let buf: Buffer;
    try {
      buf = encodeFrame(frame);
    } catch (e) {
      this.o.log.log('error', 'cannot encode frame', { frame: frameName(frame[0]), error: String(e) });
      return;
    }
    this.out.push(buf);
    if (!this.flushing) {
      this.flushing = true;
      queueMicrotask(this.flush);
    }
  }

  /** Frames written in one synchronous run go out in one socket write. */
  private readonly flush = (): void => {
    this.flushing = false;
    const out = this.out;
    this.out = [];
    if (this.closedWith || out.length === 0) return;
    this.o.socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
    if (this.o.socket.writableLength > MAX_BACKLOG) {
      this.o.log.log('warn', 'peer too slow, closing', {
        peer: this.who,
        backlog: this.o.socket.writableLength,
      });
      this.o.socket.destroy();
    }
  };

  // ---- incoming --------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    const frames = this.reader.push(chunk);
    for (const f of frames) {
      try {
        this.handle(f);
      } catch (e) {
        // A frame we cannot make sense of: tell the peer what and keep the connection only when
        // the frame was a request (it had an id); a broken stream is closed.
        const id = typeof f[1] === 'number' ? f[1] : 0;
        if (id > 0 && this.peerName !== undefined && REQUESTS.has(f[0] as number)) this.error(id, e);
        else {
          this.fatal(e);
          return;
        }
      }
    }
    if (this.reader.error) this.fatal(this.reader.error);
    this.o.bus.deliverQueued();
  }

  private handle(f: Frame): void {
    const type = f[0];
    if (this.peerName === undefined && type !== F.HELLO)
      throw new MetanetError('EPROTO', `expected HELLO first, got ${frameName(type)}`);
    const h = this.handlers[type as number];
    if (h === undefined) throw new MetanetError('EPROTO', `unknown frame type ${String(type)}`);
    h.call(this, f);
  }

  private readonly handlers: Record<number, (this: Link, f: Frame) => void> = {
    [F.HELLO]: this.onHello,
    [F.SEND]: this.onSend,
    [F.RESULT]: (f) => this.settle(f, undefined),
    [F.OK]: (f) => this.settle(f, undefined),
    [F.ERROR]: this.onError,
    [F.LISTEN]: this.onListen,
    [F.UNLISTEN]: this.onUnlisten,
    [F.DELIVER]: this.onDeliver,
    [F.VERDICT]: this.onVerdict,
    [F.MONITOR]: this.onMonitor,
    [F.UNMONITOR]: this.onUnmonitor,
    [F.EVENT]: this.onEvent,
    [F.LS]: this.onLs,
  };

  private onHello(f: Frame): void {
    if (this.peerName !== undefined) throw new MetanetError('EPROTO', 'HELLO sent twice');
    const version = field.int(f, 1, 'version');
    if (version !== PROTOCOL_VERSION)
      throw new MetanetError(
        'EPROTO',
        `unsupported protocol version ${version} (this side speaks ${PROTOCOL_VERSION})`,
      );
    const name = field.str(f, 2, 'name');
    const pid = field.int(f, 3, 'pid');
    const holder = this.o.nameTaken?.(name);
    if (holder)
      throw new MetanetError(
        'EEXIST',
        `the name "${name}" is already connected (${holder}): names must be unique`,
      );
    this.peerName = name;
    this.peerPid = pid;
    this.o.onHello?.(this);
    this.readyResolve();
  }

  private allowed(op: Operation, path: string): void {
    this.o.acl?.check(op, path, this.o.cred);
  }

  private onSend(f: Frame): void {
    const id = field.int(f, 1, 'id');
    const path = checkPath(field.str(f, 2, 'path'));
    const m = fromWire(f[3], path);
    this.allowed('send', path);
    const to = relayTarget(path);
    if (id === 0) {
      this.o.bus.post(to, m);
      return;
    }
    if (to === path) this.o.bus.sendLocal(path, m, (r) => this.write(resultToFrame(id, r)));
    else
      this.o.bus.send(to, m).then(
        (r) => this.write(resultToFrame(id, r)),
        (e: unknown) => this.error(id, e),
      );
  }

  private onListen(f: Frame): void {
    const id = field.int(f, 1, 'id');
    const path = checkPath(field.str(f, 2, 'path'));
    const lid = field.int(f, 3, 'lid');
    const identity = fromWire(f[4], 'LISTEN identity');
    const position = positionFromWire(f[5]);
    const timeout = field.int(f, 6, 'timeout') || REMOTE_TIMEOUT;
    const onTimeout = f[7] === 'stop' ? 'stop' : 'continue';
    this.allowed('listen', path);
    this.proxies.get(lid)?.remove();
    const proxy = (m: Message): Promise<ListenerResult> =>
      new Promise((resolve, reject) => {
        const did = this.nextId++;
        this.verdicts.set(did, { resolve, reject, onTimeout });
        this.write([F.DELIVER, did, lid, path, toWire(this.qualify(m))]);
      });
    const fname = field.optStr(f, 8, 'name') ?? `#${lid}`;
    Object.defineProperty(proxy, 'name', { value: fname });
    const h = this.o.bus.listen(path, proxy, { identity, position, timeout, onTimeout, remote: this.who });
    this.proxies.set(lid, h);
    this.write([F.OK, id, h.id]);
  }

  private onUnlisten(f: Frame): void {
    const id = field.int(f, 1, 'id');
    const lid = field.int(f, 2, 'lid');
    this.proxies.get(lid)?.remove();
    this.proxies.delete(lid);
    this.write([F.OK, id, null]);
  }

  private onDeliver(f: Frame): void {
    const did = field.int(f, 1, 'delivery id');
    const lid = field.int(f, 2, 'lid');
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

  private onVerdict(f: Frame): void {
    const did = field.int(f, 1, 'delivery id');
    const v = this.verdicts.get(did);
    if (!v) return; // answered after the daemon stopped waiting: ignored
    this.verdicts.delete(did);
    const err = field.optStr(f, 3, 'error');
    if (err !== undefined) {
      v.reject(new Error(`remote listener in ${this.who}: ${err}`));
      return;
    }
    v.resolve(f[2] === STOP ? STOP : CONTINUE);
  }

  private onMonitor(f: Frame): void {
    const id = field.int(f, 1, 'id');
    const pattern = field.str(f, 2, 'pattern');
    this.allowed('listen', pattern);
    const all = pattern === '/**' || pattern === '**';
    const stop = this.o.bus.tap((path, m, listened) => {
      if (all || pathMatches(pattern, path)) this.write([F.EVENT, id, path, toWire(m), listened]);
    });
    this.monitors.set(id, stop);
    this.write([F.OK, id, id]);
  }

  private onUnmonitor(f: Frame): void {
    const id = field.int(f, 1, 'id');
    const mid = field.int(f, 2, 'monitor id');
    this.monitors.get(mid)?.();
    this.monitors.delete(mid);
    this.write([F.OK, id, null]);
  }

  private onEvent(f: Frame): void {
    const mid = field.int(f, 1, 'monitor id');
    const path = field.str(f, 2, 'path');
    this.eventSinks.get(mid)?.(path, fromWire(f[3], `EVENT ${path}`), f[4] === true);
  }

  private onLs(f: Frame): void {
    const id = field.int(f, 1, 'id');
    const under = field.optStr(f, 2, 'path');
    const boxes = this.o.bus
      .mailboxes()
      .filter((b) => under === undefined || b.path === under || b.path.startsWith(`${under}/`));
    const m = Message.from({
      daemon: this.o.localName,
      pid: process.pid,
      mailbox: boxes.map((b) => ({
        path: b.path,
        tuples: b.tuples,
        serial: b.serial,
        listener: b.listeners.map((l) => ({
          id: l.id,
          name: l.name,
          identity: l.identity,
          remote: l.remote,
          timeout: l.timeout,
          'on-timeout': l.onTimeout,
        })),
      })),
    } as MessageInit);
    this.write([F.OK, id, toWire(m)]);
  }

  private onError(f: Frame): void {
    const id = field.int(f, 1, 'id');
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
    const id = field.int(f, 1, 'id');
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (e) p.reject(e);
    else p.resolve(p.path === undefined ? f : resultFromFrame(p.path, f));
  }

  private error(id: number, e: unknown): void {
    const code = isMetanetError(e) ? e.code : 'EFAIL';
    this.write([F.ERROR, id, code, e instanceof Error ? e.message : String(e)]);
  }

  /** The stream cannot be trusted any more: say why, and close this connection only. */
  private fatal(e: unknown): void {
    this.o.log.log('warn', 'closing connection after a protocol error', { peer: this.who, error: String(e) });
    this.error(0, e);
    this.flush();
    this.o.socket.end();
    this.shutdown(e instanceof Error ? e : new Error(String(e)));
  }

  private shutdown(e: Error): void {
    if (this.closedWith) return;
    this.closedWith = isMetanetError(e) ? e : new MetanetError('EUNREACHABLE', `${this.who}: ${e.message}`);
    this.readyReject(this.closedWith);
    this.goneResolve(this.closedWith);
    for (const p of this.pending.values()) p.reject(this.closedWith);
    this.pending.clear();
    // Listeners of the peer: gone with it. A dispatch waiting on one goes on as its timeout policy says.
    for (const h of this.proxies.values()) h.remove();
    this.proxies.clear();
    for (const v of this.verdicts.values()) v.resolve(v.onTimeout === 'stop' ? STOP : CONTINUE);
    this.verdicts.clear();
    for (const stop of this.monitors.values()) stop();
    this.monitors.clear();
    this.eventSinks.clear();
    if (!this.o.socket.destroyed) this.o.socket.destroy();
    this.o.onClose(this);
  }
}

/** Frames answered by RESULT/OK/ERROR: a bad one gets an ERROR and the connection stays. */
const REQUESTS = new Set<number>([F.SEND, F.LISTEN, F.UNLISTEN, F.MONITOR, F.UNMONITOR, F.LS]);
